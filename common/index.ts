/** Small pieces every part uses: deadlines that work on Node 20. */
export { afterPendingIo, type Deadline, deadlineSignal } from "./deadline.js";
