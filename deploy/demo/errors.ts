import { CodedError } from "../../common/index.js";

/** Stable codes of the demo's failures. Scripts match on these, never on messages. */
export type DemoErrorCode =
  /** An option of the load generator or the service launcher is missing or out of range. */
  | "EBAD_ARGUMENT"
  /** An endpoint is not a loopback address: the demo tools never send traffic off the machine. */
  | "ENOT_LOOPBACK"
  /** The demo service did not compile. */
  | "EBUILD_FAILED"
  /** The demo service exited or stayed silent instead of printing its `ready` line. */
  | "ESERVICE_START";

/** What a demo error was about. */
export interface DemoErrorContext {
  /** The option or endpoint at fault, as given. */
  option?: string;
  /** The value given for it. */
  value?: string;
  /** File involved (binary or source). */
  path?: string;
  /** Output of the failed command, last part only. */
  output?: string;
}

/** A failure of the demo tools, with a stable code and what it was working on. */
export class DemoError extends CodedError<DemoErrorCode, DemoErrorContext> {
  override readonly name: string = "DemoError";
}

/** A bad option of the load generator or service launcher. */
export class DemoOptionError extends DemoError {
  override readonly name = "DemoOptionError";
}

/** The demo service could not be built or started. */
export class DemoServiceError extends DemoError {
  override readonly name = "DemoServiceError";
}
