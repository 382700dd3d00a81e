/** Pure types of patch bundles: the manifest (schema 1), an opened bundle, build options and results. */

/** How the engine brings patch.so into the target. */
export type LoaderKind = "mmap" | "dlopen" | "auto";

/** What the engine must prove before it rewrites a function's entry (see DESIGN, "Safety check"). */
export type Consistency = "strict" | "entry";

/** What kind of ELF file the bundle patches. */
export type TargetKind = "executable" | "library";

/** The ELF file a bundle is made for. */
export interface BundleTarget {
  /** Path of the target when the bundle was built; informational only, build-ids decide. */
  path?: string;
  /** GNU build-id of the target, lowercase hex; the bundle applies only to a file with this build-id. */
  buildId: string;
  /** An executable (PIE or not) or a shared library. */
  kind: TargetKind;
}

/** One function the bundle replaces. */
export interface BundleFunction {
  /** Function in the target, a plain name or qualified by source file as `file.c:name` for a static. */
  symbol: string;
  /** Exported function in patch.so that new calls reach instead. */
  replacement: string;
  /** Safety level for this function; the engine uses `strict` when absent. */
  consistency?: Consistency;
}

/** Where the patch came from (written by `hotpatch build`). */
export interface BundleSource {
  /** File name of the source (no directories). */
  file: string;
  /** sha256 of the source file, lowercase hex. */
  sha256: string;
  /** The compiler's first `--version` line. */
  compiler: string;
  /** The compiler flags used, in order. */
  flags: string[];
}

/** The contents of manifest.json, schema 1. Every field is validated; unknown fields are refused. */
export interface BundleManifest {
  /** Manifest schema version; this code reads 1. */
  schema: 1;
  /** Name of the patch: a slug (letters, digits, `.`, `_`, `-`; at most 64) that becomes a file name. */
  id: string;
  /** The ELF file this bundle patches. */
  target: BundleTarget;
  /** The functions replaced, 1 to 256 of them, each target symbol at most once. */
  functions: BundleFunction[];
  /** How the engine loads patch.so. */
  loader: LoaderKind;
  /** sha256 of patch.so, lowercase hex. */
  sha256: string;
  /** When the bundle was built, ISO 8601 UTC. */
  createdAt?: string;
  /** What the patch was built from. */
  source?: BundleSource;
}

/** A signature that verified against one of the trusted keys. */
export interface VerifiedSignature {
  /** Id of the trusted key that verified it (first 16 bytes of the sha256 of its SPKI DER, hex). */
  keyId: string;
}

/** A bundle that was read, hash-checked and (when asked) signature-checked. */
export interface Bundle {
  /** Private directory holding the verified copies of manifest.json, patch.so and manifest.sig. */
  dir: string;
  /** Where the bundle was opened from (a directory or a .tar). */
  origin: string;
  /** The validated manifest. */
  manifest: BundleManifest;
  /** The exact manifest bytes the hash and signature were checked over. */
  manifestBytes: Buffer;
  /** Path of the verified patch.so inside `dir`. */
  soPath: string;
  /** The verified signature, or null when none was checked (no trusted keys given, or no manifest.sig). */
  signature: VerifiedSignature | null;
  /** Key id named by manifest.sig, verified or not; null when the bundle is unsigned. */
  signedBy: string | null;
  /** Removes `dir`. Safe to call twice. */
  dispose(): Promise<void>;
}

/** Options of `openBundle`. */
export interface OpenOptions {
  /** Public keys (PEM text or paths of PEM files) whose signatures are trusted; giving any makes a signature required. */
  trustedKeys?: string[];
  /** Refuse an unsigned bundle even without trusted keys (then a signed one cannot verify: EBUNDLE_SIGNATURE). */
  requireSignature?: boolean;
  /** Cancels the opening. */
  signal?: AbortSignal;
}

/** A function to replace, as given to `buildBundle`. */
export interface FunctionSpec {
  /** Function in the target, `name` or `file.c:name`. */
  symbol: string;
  /** Function in the source that replaces it; defaults to the name part of `symbol`. */
  replacement?: string;
  /** Safety level for this function. */
  consistency?: Consistency;
}

/** Options of `buildBundle` (and `hotpatch build`). */
export interface BuildOptions {
  /** The executable or library to patch. */
  target: string;
  /** The C (`.c`) or C++ (`.cc`, `.cpp`, `.cxx`) source of the replacements. */
  source: string;
  /** The functions to replace, as objects or as `OLD[=NEW]` strings; at least one. */
  functions: (FunctionSpec | string)[];
  /** Extra compiler flags, after `-shared -fPIC -O2`. */
  cflags?: string[];
  /** Patch id; defaults to the source file name plus a short hash of patch.so. */
  id?: string;
  /** Loader; `auto` (default) picks `dlopen` for C++ code with exception tables, else `mmap`. */
  loader?: LoaderKind;
  /** Consistency written for every function that does not set its own. */
  consistency?: Consistency;
  /** Private key (PEM text or path) to sign the manifest with. */
  signKey?: string;
  /** Output: a directory that must not exist (or be empty), or with `tar` a .tar file. */
  out: string;
  /** Write a single .tar file at `out` instead of a directory. */
  tar?: boolean;
  /** Compiler to use instead of gcc / g++. */
  compiler?: string;
  /** Longest the compiler may run, in ms (default 120000). */
  compileTimeoutMs?: number;
  /** Cancels the build; nothing is left at `out`. */
  signal?: AbortSignal;
}

/** What `buildBundle` made. */
export interface BuildResult {
  /** The bundle directory, or null when a .tar was written. */
  dir: string | null;
  /** The .tar written, or null when a directory was written. */
  tar: string | null;
  /** The manifest written. */
  manifest: BundleManifest;
  /** Things that work but deserve a look (short functions, ambiguous statics, ...). */
  warnings: string[];
  /** Key id the manifest was signed with, or null. */
  signedBy: string | null;
}
