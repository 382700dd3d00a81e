/** Small pieces every part uses: deadlines that work on Node 20, and the coded-error base. */
export { afterPendingIo, type Deadline, deadlineSignal } from "./deadline.js";
export { CodedError, codeOf } from "./errors.js";
