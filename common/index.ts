/** Small pieces every part uses: deadlines that work on Node 20. */
export { type Deadline, deadlineSignal } from "./deadline.js";
