/** Small pieces every part uses: deadlines that work on Node 20. */
export { afterPendingIo, type Deadline, deadlineSignal } from "./deadline.js";
export {
  executableId,
  type FileId,
  isFileAt,
  mapsDevice,
  pathMeansOurs,
  sharesOurMounts,
} from "./file_identity.js";
