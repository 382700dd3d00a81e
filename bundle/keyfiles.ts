/** Writing a new key pair to disk for `hotpatch keygen`: PREFIX.key (mode 0600) and PREFIX.pub. */
import { rm, writeFile } from "node:fs/promises";
import { BundleError } from "./errors.js";
import { generateKeyPair } from "./signature.js";

/** Where a key pair was written. */
export interface WrittenKeyPair {
  /** The private key file (PKCS#8 PEM, mode 0600): give it to `hotpatch build --sign`. */
  privateKeyPath: string;
  /** The public key file (SPKI PEM): give it to verifiers as a trusted key. */
  publicKeyPath: string;
  /** The key id that signatures made with it carry. */
  keyId: string;
}

/** Makes an ed25519 key pair and writes it; refuses to overwrite either file (EOUT_EXISTS). */
export async function writeKeyPair(prefix: string): Promise<WrittenKeyPair> {
  const pair = await generateKeyPair();
  const privateKeyPath = `${prefix}.key`;
  const publicKeyPath = `${prefix}.pub`;
  const write = async (file: string, text: string, mode: number) => {
    try {
      await writeFile(file, text, { mode, flag: "wx" });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code === "EEXIST" ? "EOUT_EXISTS" : "EIO";
      const why = code === "EOUT_EXISTS" ? "already exists; keygen never overwrites a key" : (err as Error).message;
      throw new BundleError(code, `${file} ${why}`, { path: file }, { cause: err });
    }
  };
  await write(privateKeyPath, pair.privateKey, 0o600);
  try {
    await write(publicKeyPath, pair.publicKey, 0o644);
  } catch (err) {
    await rm(privateKeyPath, { force: true });
    throw err;
  }
  return { privateKeyPath, publicKeyPath, keyId: pair.keyId };
}
