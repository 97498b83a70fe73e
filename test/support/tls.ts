/**
 * Certificates for TLS tests, generated at test time with `openssl` into a temporary directory that is
 * removed with the scope: a CA, a server certificate for `localhost` / 127.0.0.1 / ::1 signed by it, a
 * client certificate signed by it, and a client certificate signed by an unrelated ("rogue") CA.
 * Keys are P-256 (fast to make). Nothing is checked in.
 */
import { Data, Effect, type Scope } from "effect"
import { spawnSync } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import * as path from "node:path"

/** One certificate: the paths of its PEM files and their bytes. */
export interface Pem {
  readonly certPath: string
  readonly keyPath: string
  readonly cert: Buffer
  readonly key: Buffer
}

/** The generated material. */
export interface Certificates {
  readonly dir: string
  /** The CA every good certificate is signed by (`--tls-ca`, and what clients trust). */
  readonly ca: Pem
  /** The server's certificate (SAN: DNS localhost, IP 127.0.0.1, IP ::1). */
  readonly server: Pem
  /** A client certificate signed by `ca`. */
  readonly client: Pem
  /** A CA the server does not know, and a client certificate it signed. */
  readonly rogueCa: Pem
  readonly rogueClient: Pem
}

/** `openssl` failed or is missing. */
export class TlsSetupError extends Data.TaggedError("TlsSetupError")<{ readonly reason: string }> {
  override get message(): string {
    return this.reason
  }
}

const openssl = (dir: string, args: ReadonlyArray<string>): void => {
  const result = spawnSync("openssl", args, { cwd: dir, encoding: "utf8" })
  if (result.error !== undefined) {
    throw new TlsSetupError({
      reason: `cannot run openssl (install it: apt-get install -y openssl): ${result.error.message}`
    })
  }
  if (result.status !== 0) {
    throw new TlsSetupError({ reason: `openssl ${args[0]} failed: ${result.stderr.trim()}` })
  }
}

const EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

const read = (dir: string, name: string): Pem => {
  const certPath = path.join(dir, `${name}.pem`)
  const keyPath = path.join(dir, `${name}.key`)
  return { certPath, keyPath, cert: readFileSync(certPath), key: readFileSync(keyPath) }
}

/** A self-signed CA named `name`. */
const makeCa = (dir: string, name: string): Pem => {
  openssl(dir, [
    "req",
    "-x509",
    ...EC_KEY,
    "-keyout",
    `${name}.key`,
    "-out",
    `${name}.pem`,
    "-days",
    "2",
    "-subj",
    `/CN=throttlekit-effect test ${name}`,
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign"
  ])
  return read(dir, name)
}

/** A leaf certificate named `name`, signed by `ca`, with the given extensions. */
const makeLeaf = (dir: string, name: string, ca: string, extensions: string): Pem => {
  writeFileSync(path.join(dir, `${name}.ext`), extensions)
  openssl(dir, ["req", ...EC_KEY, "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", `/CN=${name}`])
  openssl(dir, [
    "x509",
    "-req",
    "-in",
    `${name}.csr`,
    "-CA",
    `${ca}.pem`,
    "-CAkey",
    `${ca}.key`,
    "-CAcreateserial",
    "-out",
    `${name}.pem`,
    "-days",
    "2",
    "-extfile",
    `${name}.ext`
  ])
  return read(dir, name)
}

const generate = (): Certificates => {
  const dir = mkdtempSync(path.join(tmpdir(), "tk-tls-"))
  try {
    const ca = makeCa(dir, "ca")
    const server = makeLeaf(
      dir,
      "server",
      "ca",
      "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n" +
        "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\n"
    )
    const clientExtensions = "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n"
    const client = makeLeaf(dir, "client", "ca", clientExtensions)
    const rogueCa = makeCa(dir, "rogue-ca")
    const rogueClient = makeLeaf(dir, "rogue-client", "rogue-ca", clientExtensions)
    return { dir, ca, server, client, rogueCa, rogueClient }
  } catch (error) {
    rmSync(dir, { recursive: true, force: true })
    throw error
  }
}

const setupError = (error: unknown): TlsSetupError =>
  error instanceof TlsSetupError
    ? error
    : new TlsSetupError({ reason: error instanceof Error ? error.message : String(error) })

const CA_CONFIG = `[ ca ]
default_ca = tk
[ tk ]
database = index.txt
new_certs_dir = .
serial = serial
default_md = sha256
policy = any
unique_subject = no
[ any ]
commonName = supplied
[ server ]
basicConstraints = CA:FALSE
keyUsage = digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost,IP:127.0.0.1,IP:::1
`

/**
 * A server certificate for localhost named `name`, signed by `certs.ca`, valid from `start` to `end`
 * (`YYYYMMDDHHMMSSZ`, e.g. in the past for an expired one): `openssl ca` sets both dates, which
 * `openssl x509 -days` cannot.
 */
export const datedServerCertificate = (certs: Certificates, name: string, start: string, end: string) =>
  Effect.try({
    try: (): Pem => {
      const dir = certs.dir
      writeFileSync(path.join(dir, "ca.cnf"), CA_CONFIG)
      writeFileSync(path.join(dir, "index.txt"), "")
      writeFileSync(path.join(dir, "serial"), "1000\n")
      openssl(dir, ["req", ...EC_KEY, "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", "/CN=localhost"])
      openssl(dir, [
        "ca",
        "-batch",
        "-config",
        "ca.cnf",
        "-extensions",
        "server",
        "-cert",
        "ca.pem",
        "-keyfile",
        "ca.key",
        "-in",
        `${name}.csr`,
        "-out",
        `${name}.pem`,
        "-startdate",
        start,
        "-enddate",
        end,
        "-notext"
      ])
      return read(dir, name)
    },
    catch: setupError
  })

/** Generates the certificates for the life of the scope. */
export const certificates: Effect.Effect<Certificates, TlsSetupError, Scope.Scope> = Effect.acquireRelease(
  Effect.try({ try: generate, catch: setupError }),
  (certs) => Effect.sync(() => rmSync(certs.dir, { recursive: true, force: true }))
)
