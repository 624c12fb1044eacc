import {randomBytes, timingSafeEqual} from 'node:crypto'

/**
 * Phantom tokens: what a sandbox holds instead of a real credential. The
 * random part is 256 bits (43 base64url characters), made per sandbox, and
 * means nothing outside that sandbox's gateway.
 */

/** A new random part. */
export function phantomSecret(): string {
  return randomBytes(32).toString('base64url')
}

/** The phantom as the agent sees it: `format` with `{}` standing for the random part. */
export function formatPhantom(secret: string, format = '{}'): string {
  return format.replace('{}', secret)
}

const JWT = /^([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)$/

export function isJwt(token: string): boolean {
  return JWT.test(token)
}

/**
 * A JWT-shaped phantom of a real JWT: the same header and claims (agents read
 * the expiry, the account and the plan from them), the signature replaced by
 * the random part, so it verifies nowhere and the gateway can find it.
 */
export function jwtPhantom(real: string, secret: string): string {
  const match = JWT.exec(real)
  return match ? `${match[1]}.${match[2]}.${secret}` : secret
}

/** The claims of a JWT, or undefined when it is not one. */
export function jwtClaims(token: string): Record<string, unknown> | undefined {
  const payload = JWT.exec(token)?.[2]
  if (payload === undefined) return undefined
  try {
    const claims: unknown = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'))
    return typeof claims === 'object' && claims !== null && !Array.isArray(claims) ? (claims as Record<string, unknown>) : undefined
  } catch {
    return undefined
  }
}

/** Constant-time comparison of two token strings. */
export function sameToken(a: string, b: string): boolean {
  const left = Buffer.from(a)
  const right = Buffer.from(b)
  return left.length === right.length && timingSafeEqual(left, right)
}

/** The random part inside a presented token: the whole token with its format's affixes removed, or a JWT's signature. */
export function secretIn(token: string, format = '{}'): string | undefined {
  const jwt = JWT.exec(token)
  if (jwt) return jwt[3]
  const [prefix = '', suffix = ''] = format.split('{}')
  if (!token.startsWith(prefix) || !token.endsWith(suffix) || token.length <= prefix.length + suffix.length) return undefined
  return token.slice(prefix.length, token.length - suffix.length)
}
