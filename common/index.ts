/** Small pieces every part uses: deadlines that work on Node 20, the coded-error base, the field validator of YAML documents, files by device and inode. */
export { afterPendingIo, type Deadline, deadlineSignal } from "./deadline.js";
export { CodedError, codeOf } from "./errors.js";
export { type FieldIssue, FieldReader, fieldPath, type Mapping, type TlsFiles } from "./fields.js";
export {
  executableId,
  type FileId,
  isFileAt,
  mapsDevice,
  pathMeansOurs,
  sharesOurMounts,
} from "./file_identity.js";
