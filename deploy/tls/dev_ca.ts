/**
 * Development PKI for hotpatch's mTLS: a CA, server-only certificates for agents (SAN 127.0.0.1,
 * localhost and the node name) and client-only certificates for operators, controllers and viewers, made with
 * the `openssl` command (Debian package `openssl`; scripts/setup.sh installs it). Not for production:
 * keys are written unencrypted.
 *
 * CLI:  npx tsx deploy/tls/dev_ca.ts --dir certs --node node-a --node node-b --client operator
 */
import { execFile } from "node:child_process";
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const run = promisify(execFile);

/** A certificate and its private key, as PEM file paths. */
export interface CertFiles {
  /** Certificate (PEM). */
  cert: string;
  /** Private key (PEM, unencrypted). */
  key: string;
}

/** Everything makeDevCerts wrote. */
export interface DevCerts {
  /** The CA; `cert` is what servers and clients trust. */
  ca: CertFiles;
  /** Server certificate per node name. */
  servers: Record<string, CertFiles>;
  /** Client certificate per client name (its CN is the audit identity). */
  clients: Record<string, CertFiles>;
}

const days = "825";

async function openssl(args: string[]): Promise<void> {
  try {
    await run("openssl", args);
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === "ENOENT")
      throw new Error("the openssl command is missing: install it (apt-get install openssl) or run scripts/setup.sh", {
        cause: err,
      });
    throw new Error(`openssl ${args[0]} failed: ${e.stderr ?? e.message}`, { cause: err });
  }
}

function checkName(name: string): void {
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(name))
    throw new Error(`bad certificate name "${name}": use letters, digits, '.', '-', '_'`);
}

/** Makes a self-signed CA in `dir` (ca.crt, ca.key). */
export async function makeDevCa(dir: string, commonName = "hotpatch dev CA"): Promise<CertFiles> {
  await mkdir(dir, { recursive: true });
  const files = { cert: path.join(dir, "ca.crt"), key: path.join(dir, "ca.key") };
  await openssl([
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    files.key,
    "-out",
    files.cert,
    "-days",
    days,
    "-subj",
    `/CN=${commonName}`,
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
  ]);
  return files;
}

async function signLeaf(dir: string, ca: CertFiles, name: string, ext: string): Promise<CertFiles> {
  checkName(name);
  await mkdir(dir, { recursive: true });
  const files = { cert: path.join(dir, `${name}.crt`), key: path.join(dir, `${name}.key`) };
  const csr = path.join(dir, `${name}.csr`);
  const extFile = path.join(dir, `${name}.ext`);
  await openssl([
    "req",
    "-new",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    files.key,
    "-out",
    csr,
    "-subj",
    `/CN=${name}`,
  ]);
  await writeFile(extFile, ext);
  await openssl([
    "x509",
    "-req",
    "-in",
    csr,
    "-CA",
    ca.cert,
    "-CAkey",
    ca.key,
    "-CAcreateserial",
    "-out",
    files.cert,
    "-days",
    days,
    "-extfile",
    extFile,
  ]);
  return files;
}

/**
 * A server certificate for an agent (or the NATS server): SAN localhost, 127.0.0.1, ::1, the node
 * name and `extraSans` (DNS names or IPs). Extended key usage serverAuth only: it can never act as a
 * client (the TLS handshake refuses it, and agents refuse any certificate that says serverAuth).
 */
export function makeServerCert(dir: string, ca: CertFiles, node: string, extraSans: string[] = []): Promise<CertFiles> {
  const sans = [
    "DNS:localhost",
    "IP:127.0.0.1",
    "IP:::1",
    `DNS:${node}`,
    ...extraSans.map((s) => (/^[\d.:]+$/.test(s) ? `IP:${s}` : `DNS:${s}`)),
  ];
  return signLeaf(
    dir,
    ca,
    node,
    `basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=${sans.join(",")}\n`,
  );
}

/** A client certificate (extended key usage clientAuth only); its CN (`name`) is who the agent's audit log names and what `grpc.roles` maps to a role. */
export function makeClientCert(dir: string, ca: CertFiles, name: string): Promise<CertFiles> {
  return signLeaf(
    dir,
    ca,
    name,
    "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n",
  );
}

/** Makes a CA plus one server certificate per node and one client certificate per client, all in `dir`. */
export async function makeDevCerts(dir: string, nodes: string[], clients: string[]): Promise<DevCerts> {
  const ca = await makeDevCa(dir);
  const out: DevCerts = { ca, servers: {}, clients: {} };
  for (const n of nodes) out.servers[n] = await makeServerCert(dir, ca, n);
  for (const c of clients) out.clients[c] = await makeClientCert(dir, ca, c);
  return out;
}

async function main(argv: string[]): Promise<void> {
  let dir = "certs";
  const nodes: string[] = [];
  const clients: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const [flag, value] = [argv[i], argv[i + 1]];
    if (flag === "--dir" && value) dir = value;
    else if (flag === "--node" && value) nodes.push(value);
    else if (flag === "--client" && value) clients.push(value);
    else throw new Error(`usage: dev_ca.ts [--dir DIR] [--node NAME]... [--client NAME]... (bad argument ${flag})`);
    i++;
  }
  const made = await makeDevCerts(dir, nodes.length ? nodes : ["localhost"], clients.length ? clients : ["operator"]);
  process.stdout.write(`${JSON.stringify(made, null, 2)}\n`);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).catch((err: Error) => {
    process.stderr.write(`dev_ca: ${err.message}\n`);
    process.exit(1);
  });
}
