/**
 * ed25519 signatures over the exact manifest.json bytes, with node's own crypto. manifest.sig is a
 * small JSON document naming the key id, so the verifier picks the right trusted key.
 */
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPair as genKeyPair,
  type KeyObject,
  sign,
  verify,
} from "node:crypto";
import { readFile } from "node:fs/promises";
import { promisify } from "node:util";
import { BundleError } from "./errors.js";

/** Largest manifest.sig accepted, in bytes. */
export const MAX_SIGNATURE_BYTES = 4096;
const KEY_ID = /^[0-9a-f]{32}$/;
const BASE64_SIG = /^[A-Za-z0-9+/]{86}==$/;

/** The contents of manifest.sig. */
export interface SignatureFile {
  /** Format version; 1. */
  schema: 1;
  /** Always ed25519. */
  alg: "ed25519";
  /** Id of the signing key (see `keyIdOf`). */
  keyId: string;
  /** The 64-byte signature, base64. */
  signature: string;
}

/** A freshly made key pair, PEM-encoded (SPKI public, PKCS#8 private). */
export interface KeyPairPem {
  /** Public key, to give to verifiers. */
  publicKey: string;
  /** Private key, to keep secret. */
  privateKey: string;
  /** Id of the key pair (see `keyIdOf`). */
  keyId: string;
}

/** A key's id: the first 16 bytes of the sha256 of its public key's SPKI DER, in hex. */
export function keyIdOf(key: KeyObject): string {
  const pub = key.type === "private" ? createPublicKey(key) : key;
  return createHash("sha256")
    .update(pub.export({ type: "spki", format: "der" }))
    .digest("hex")
    .slice(0, 32);
}

/** Makes a new ed25519 key pair. */
export async function generateKeyPair(): Promise<KeyPairPem> {
  const { publicKey, privateKey } = await promisify(genKeyPair)("ed25519");
  return {
    publicKey: publicKey.export({ type: "spki", format: "pem" }).toString(),
    privateKey: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
    keyId: keyIdOf(publicKey),
  };
}

async function pemOf(keyOrPath: string): Promise<{ pem: string; path?: string }> {
  if (keyOrPath.includes("-----BEGIN")) return { pem: keyOrPath };
  try {
    const text = await readFile(keyOrPath, "utf8");
    if (text.length > 16 * 1024)
      throw new BundleError("EBAD_KEY", `${keyOrPath} is too large to be a PEM key`, { path: keyOrPath });
    return { pem: text, path: keyOrPath };
  } catch (err) {
    if (err instanceof BundleError) throw err;
    throw new BundleError(
      "EBAD_KEY",
      `cannot read key file ${keyOrPath}: ${(err as Error).message}`,
      { path: keyOrPath },
      { cause: err },
    );
  }
}

/** Loads an ed25519 public key from PEM text or a PEM file (a private key's public half is accepted too). */
export async function loadPublicKey(keyOrPath: string): Promise<KeyObject> {
  const { pem, path } = await pemOf(keyOrPath);
  const where = path ?? "the given key";
  let key: KeyObject;
  try {
    key = createPublicKey(pem);
  } catch (err) {
    throw new BundleError("EBAD_KEY", `${where} is not a PEM public key`, path ? { path } : {}, { cause: err });
  }
  if (key.asymmetricKeyType !== "ed25519") {
    throw new BundleError(
      "EBAD_KEY",
      `${where} is a ${key.asymmetricKeyType} key; hotpatch uses ed25519 (make one with hotpatch keygen)`,
      path ? { path } : {},
    );
  }
  return key;
}

/** Loads an ed25519 private key from PEM text or a PEM file. */
export async function loadPrivateKey(keyOrPath: string): Promise<KeyObject> {
  const { pem, path } = await pemOf(keyOrPath);
  const where = path ?? "the given key";
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch (err) {
    throw new BundleError(
      "EBAD_KEY",
      `${where} is not a PEM private key (sign with the .key file keygen wrote)`,
      path ? { path } : {},
      { cause: err },
    );
  }
  if (key.asymmetricKeyType !== "ed25519") {
    throw new BundleError(
      "EBAD_KEY",
      `${where} is a ${key.asymmetricKeyType} key; hotpatch uses ed25519`,
      path ? { path } : {},
    );
  }
  return key;
}

/** Signs manifest bytes; returns the bytes of manifest.sig. */
export async function signManifest(manifestBytes: Uint8Array, privateKey: string | KeyObject): Promise<Buffer> {
  const key = typeof privateKey === "string" ? await loadPrivateKey(privateKey) : privateKey;
  const file: SignatureFile = {
    schema: 1,
    alg: "ed25519",
    keyId: keyIdOf(key),
    signature: sign(null, manifestBytes, key).toString("base64"),
  };
  return Buffer.from(`${JSON.stringify(file, null, 2)}\n`, "utf8");
}

function badSig(message: string): BundleError {
  return new BundleError("EBUNDLE_SIGNATURE", `manifest.sig: ${message}`, { field: "manifest.sig" });
}

/** Parses manifest.sig strictly. Throws EBUNDLE_SIGNATURE when it is malformed. */
export function parseSignatureFile(bytes: Uint8Array): SignatureFile {
  if (bytes.length > MAX_SIGNATURE_BYTES) throw badSig(`is ${bytes.length} bytes, more than ${MAX_SIGNATURE_BYTES}`);
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch {
    throw badSig("is not UTF-8 JSON");
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw badSig("must be a JSON object");
  const keys = Object.keys(value);
  const o = value as Record<string, unknown>;
  if (keys.length !== 4 || !["schema", "alg", "keyId", "signature"].every((k) => Object.hasOwn(o, k))) {
    throw badSig("must hold exactly schema, alg, keyId and signature");
  }
  if (o.schema !== 1) throw badSig("schema must be 1");
  if (o.alg !== "ed25519") throw badSig("alg must be ed25519");
  if (typeof o.keyId !== "string" || !KEY_ID.test(o.keyId)) throw badSig("keyId must be 32 lowercase hex digits");
  if (typeof o.signature !== "string" || !BASE64_SIG.test(o.signature))
    throw badSig("signature must be 64 bytes in base64");
  return { schema: 1, alg: "ed25519", keyId: o.keyId, signature: o.signature };
}

/**
 * Verifies manifest.sig over the manifest bytes with the trusted key of the same id.
 * Returns that key id; throws EBUNDLE_SIGNATURE when no trusted key has that id or it does not verify.
 */
export function verifyManifestSignature(manifestBytes: Uint8Array, sig: SignatureFile, trusted: KeyObject[]): string {
  const key = trusted.find((k) => keyIdOf(k) === sig.keyId);
  if (!key) {
    throw new BundleError(
      "EBUNDLE_SIGNATURE",
      `manifest.sig: signed by key ${sig.keyId}, which is not among the ${trusted.length} trusted key(s)`,
      { field: "manifest.sig" },
    );
  }
  if (!verify(null, manifestBytes, key, Buffer.from(sig.signature, "base64"))) {
    throw new BundleError(
      "EBUNDLE_SIGNATURE",
      `manifest.sig: the signature of key ${sig.keyId} does not verify over manifest.json (the manifest or the signature was changed)`,
      { field: "manifest.sig" },
    );
  }
  return sig.keyId;
}
