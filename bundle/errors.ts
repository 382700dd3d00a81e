import { CodedError } from "../common/index.js";

/** Stable codes of bundle failures. Operators and scripts match on these, never on messages. */
export type BundleErrorCode =
  /** The bundle is malformed: a missing or extra file, a manifest that breaks the schema (the message names the field). */
  | "EBAD_BUNDLE"
  /** patch.so does not hash to the manifest's `sha256` (tampered or truncated). */
  | "EBUNDLE_HASH"
  /** manifest.sig is malformed, made by an untrusted key, or does not verify over manifest.json. */
  | "EBUNDLE_SIGNATURE"
  /** The bundle carries no signature but one is required (trusted keys are configured). */
  | "EBUNDLE_UNSIGNED"
  /** A key file is unreadable or not an ed25519 key of the expected kind. */
  | "EBAD_KEY"
  /** The bundle's target build-id does not match the ELF file it is meant for. */
  | "EBUILDID"
  /** The target is not an x86-64 ELF with a build-id, or cannot be read. */
  | "EBAD_TARGET"
  /** A symbol is missing: a replaced function in the target, a replacement in patch.so, or an undefined symbol of patch.so. */
  | "ENOSYMBOL"
  /** An unqualified static name matches several functions of the target; qualify it as `file.c:name`. */
  | "EAMBIGUOUS_SYMBOL"
  /** A symbol to replace exists but is not a plain function (data, an ifunc resolver, ...). */
  | "ENOT_FUNCTION"
  /** A function is shorter than the 5-byte jump written over its entry. */
  | "EFUNC_TOO_SHORT"
  /** The compiler failed (its message is included) or could not be run. */
  | "ECOMPILE"
  /** The diff is malformed or does not apply to the source tree (the message names the hunk). */
  | "EDIFF"
  /** The diff changes no compiled code (functions changed only in `__LINE__` values are listed). */
  | "ENOCHANGE"
  /** The diff adds or changes data (a variable, its size or initial value) that a live patch cannot carry. */
  | "EDATA_CHANGED"
  /** A `--source` fix file defines a variable the target already has (the patch would use a fresh copy of state). */
  | "EDATA_DUPLICATE"
  /** The source tree, rebuilt without the diff, is not the running binary (the message names the function and instruction). */
  | "EBUILD_MISMATCH"
  /** The program's build command could not be run or compiled nothing hotpatch could see. */
  | "EBUILD_COMMAND"
  /** The patch code needs a relocation or feature hotpatch cannot link into a running program. */
  | "ELINK"
  /** The build was asked for something invalid (bad `--function`, `--id`, source type, ...). */
  | "EBAD_ARGUMENT"
  /** The output path already exists and is not an empty directory. */
  | "EOUT_EXISTS"
  /** The operation was cancelled through its AbortSignal. */
  | "ECANCELLED"
  /** A file could not be read or written for a reason the message gives. */
  | "EIO";

/** Context attached to a bundle error: what was being worked on. */
export interface BundleErrorContext {
  /** The bundle, tar, key, source or target file involved. */
  path?: string;
  /** The manifest field at fault, as a path such as `functions[2].symbol`. */
  field?: string;
  /** The symbol at fault. */
  symbol?: string;
  /** The build-id expected by the bundle. */
  expected?: string;
  /** The build-id found in the file. */
  actual?: string;
}

/** A failure to build, read, verify or match a patch bundle, with a stable code. */
export class BundleError extends CodedError<BundleErrorCode, BundleErrorContext> {
  override readonly name = "BundleError";
}

/** Throws ECANCELLED when the signal has fired. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted)
    throw new BundleError("ECANCELLED", "the bundle operation was cancelled", {}, { cause: signal.reason });
}
