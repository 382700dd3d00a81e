/** Small pieces every part uses: deadlines that work on Node 20, the coded-error base, the field validator of YAML documents. */
export { afterPendingIo, type Deadline, deadlineSignal } from "./deadline.js";
export { CodedError, codeOf } from "./errors.js";
export { type FieldIssue, FieldReader, fieldPath, type Mapping, type TlsFiles } from "./fields.js";
