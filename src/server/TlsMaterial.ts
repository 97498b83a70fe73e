/**
 * The TLS material a server starts with, checked before it listens, so that a server never starts unable
 * to serve a single client (OpenSSL itself accepts an empty or garbage CA bundle, and an expired
 * certificate, and the server would then refuse every client in silence):
 * - the certificate file holds PEM certificates (the server's own first, then its chain), each parses
 *   and each is valid now: an expired one is refused, and so is a not-yet-valid one unless
 *   `allowNotYetValid` (then it is a warning: clients with a right clock refuse it until then);
 * - the key file holds a PEM private key, not encrypted (there is no passphrase option), that matches the
 *   first certificate;
 * - the CA bundle (mTLS) holds PEM certificates, each parses, and at least one is valid now.
 *
 * Reasons never repeat a file's content. Validity is read against the wall clock (what peers check it
 * against), not Effect's `Clock`.
 *
 * @since 0.2.0
 */
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import { createPrivateKey, type KeyObject, X509Certificate } from "node:crypto"

/**
 * PEM material for TLS. With `ca`, clients must present a certificate it signed (mTLS).
 *
 * @since 0.1.0
 * @category models
 */
export interface ServerTls {
  /** The server's certificate, then its chain (PEM). */
  readonly cert: Buffer
  /** The private key of the first certificate (PEM, not encrypted). */
  readonly key: Buffer
  /** The CA bundle client certificates must chain to (PEM); enables mTLS. */
  readonly ca?: Buffer
  /** Start with a certificate that is not valid yet (a warning instead of a refusal; default false). */
  readonly allowNotYetValid?: boolean
}

/**
 * Which file of the material is at fault.
 *
 * @since 0.2.0
 * @category models
 */
export const TlsPart = Schema.Literal("cert", "key", "ca")

/**
 * @since 0.2.0
 * @category models
 */
export type TlsPart = typeof TlsPart.Type

/**
 * What is wrong: unusable (empty, not PEM, unparsable, encrypted), expired, not valid yet, or a key that
 * does not match the certificate.
 *
 * @since 0.2.0
 * @category models
 */
export const TlsProblem = Schema.Literal("unusable", "expired", "notYetValid", "mismatch")

/**
 * @since 0.2.0
 * @category models
 */
export type TlsProblem = typeof TlsProblem.Type

const partNames: Record<TlsPart, string> = { cert: "certificate", key: "private key", ca: "CA bundle" }

/**
 * The TLS material cannot serve clients: which file, what is wrong, and why (never the content).
 *
 * @since 0.2.0
 * @category errors
 */
export class TlsMaterialError extends Schema.TaggedError<TlsMaterialError>()("TlsMaterialError", {
  part: TlsPart,
  problem: TlsProblem,
  reason: Schema.String
}) {
  override get message(): string {
    return `bad TLS ${partNames[this.part]}: ${this.reason}`
  }
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g

/** A parsed certificate with its validity window in epoch ms. */
interface Parsed {
  readonly from: number
  readonly to: number
  readonly certificate: X509Certificate
}

const iso = (ms: number): string => new Date(ms).toISOString()

/** Every PEM certificate in `pem`, parsed, or why not. */
const certificatesOf = (pem: Buffer, part: TlsPart): Either.Either<ReadonlyArray<Parsed>, TlsMaterialError> => {
  const blocks = pem.toString("latin1").match(PEM_CERTIFICATE) ?? []
  if (blocks.length === 0) {
    return Either.left(
      new TlsMaterialError({ part, problem: "unusable", reason: "holds no PEM certificate (empty, or not PEM)" })
    )
  }
  const parsed: Array<Parsed> = []
  for (let i = 0; i < blocks.length; i++) {
    const which = blocks.length === 1 ? "its certificate" : `certificate ${i + 1} of ${blocks.length}`
    const unusable = new TlsMaterialError({ part, problem: "unusable", reason: `${which} cannot be parsed` })
    try {
      const certificate = new X509Certificate(blocks[i]!)
      const from = Date.parse(certificate.validFrom)
      const to = Date.parse(certificate.validTo)
      if (Number.isNaN(from) || Number.isNaN(to)) return Either.left(unusable)
      parsed.push({ from, to, certificate })
    } catch {
      return Either.left(unusable)
    }
  }
  return Either.right(parsed)
}

/** The private key in `pem`, or why not. */
const privateKeyOf = (pem: Buffer): Either.Either<KeyObject, TlsMaterialError> => {
  try {
    return Either.right(createPrivateKey({ key: pem, format: "pem" }))
  } catch (error) {
    const encrypted = typeof error === "object" && error !== null && "code" in error &&
      error.code === "ERR_MISSING_PASSPHRASE"
    return Either.left(
      new TlsMaterialError({
        part: "key",
        problem: "unusable",
        reason: encrypted
          ? "holds an encrypted private key (there is no passphrase option: give the key unencrypted)"
          : "holds no usable PEM private key (empty, not PEM, or damaged)"
      })
    )
  }
}

/**
 * Checks `tls` at `now` (epoch ms): the warnings to print (a not-yet-valid certificate that
 * `allowNotYetValid` lets through), or the first problem.
 *
 * @since 0.2.0
 * @category validation
 */
export const check = (tls: ServerTls, now: number): Either.Either<ReadonlyArray<string>, TlsMaterialError> =>
  Either.gen(function*() {
    const warnings: Array<string> = []
    const chain = yield* certificatesOf(tls.cert, "cert")
    for (let i = 0; i < chain.length; i++) {
      const { from, to } = chain[i]!
      const which = i === 0 ? "the certificate" : `certificate ${i + 1} of the chain`
      if (now > to) {
        return yield* Either.left(
          new TlsMaterialError({ part: "cert", problem: "expired", reason: `${which} expired on ${iso(to)}` })
        )
      }
      if (now < from) {
        const reason = `${which} is not valid until ${iso(from)} (the clock says ${iso(now)})`
        if (tls.allowNotYetValid !== true) {
          return yield* Either.left(new TlsMaterialError({ part: "cert", problem: "notYetValid", reason }))
        }
        warnings.push(`TLS ${reason}: clients with a right clock refuse it until then`)
      }
    }
    const key = yield* privateKeyOf(tls.key)
    let matches = false
    try {
      matches = chain[0]!.certificate.checkPrivateKey(key)
    } catch {
      matches = false
    }
    if (!matches) {
      return yield* Either.left(
        new TlsMaterialError({
          part: "key",
          problem: "mismatch",
          reason: "does not match the certificate (it is the key of another certificate)"
        })
      )
    }
    if (tls.ca !== undefined) {
      const authorities = yield* certificatesOf(tls.ca, "ca")
      const usable = authorities.some(({ from, to }) => now <= to && (now >= from || tls.allowNotYetValid === true))
      if (!usable) {
        return yield* Either.left(
          new TlsMaterialError({
            part: "ca",
            problem: "expired",
            reason: `no certificate in it is valid now (${iso(now)}): client certificates could never be verified`
          })
        )
      }
    }
    return warnings
  })
