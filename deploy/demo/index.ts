/** Public face of the demo: the whole-story run, the demo service launcher and the load generator. */
export { formatEndpoint, isLoopback, parseEndpoint } from "./endpoints.js";
export { DemoError, type DemoErrorCode, type DemoErrorContext, DemoOptionError, DemoServiceError } from "./errors.js";
export { sendLine } from "./line_client.js";
export { formatSummary, judgeAnswer, planLoad, runLoadgen, startLoadgen } from "./loadgen.js";
export { type NamespacedNode, spawnNamespacedNode } from "./node_namespace.js";
export { correctPrice, MAX_QUANTITY, UNIT_CENTS, VAT_PERCENT } from "./price.js";
export { DEMO_INTERRUPTED, runDemo } from "./run_demo.js";
export {
  buildDemoService,
  DEMO_FIX_SOURCE,
  DEMO_SERVICE_CFLAGS,
  DEMO_SERVICE_SOURCE,
  type DemoService,
  type DemoServiceOptions,
  roleFileHook,
  startDemoService,
  writeRoleFile,
} from "./service.js";
export type * from "./types.js";
