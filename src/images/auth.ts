/** How to reach one registry: transport and credentials (docs/images.md#registries). */
export interface RegistryAccess {
  /** Plain HTTP. Loopback registries get it always; others only when the runtime config marks them insecure. */
  insecure?: boolean
  username?: string
  password?: string
  /** A registry token sent as `Authorization: Bearer` from the first request on. */
  token?: string
}

export interface AuthChallenge {
  scheme: string
  params: Record<string, string>
}

/** Parses `WWW-Authenticate: Bearer realm="…",service="…",scope="…"` (quoted values may hold commas). */
export function parseChallenge(header: string): AuthChallenge | undefined {
  const match = /^\s*([A-Za-z]+)\s*(.*)$/s.exec(header)
  if (!match) return undefined
  const params: Record<string, string> = {}
  const pattern = /([A-Za-z_]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))\s*,?\s*/gy
  const rest = match[2] ?? ''
  for (let found = pattern.exec(rest); found; found = pattern.exec(rest)) {
    params[found[1]!.toLowerCase()] = found[2] === undefined ? (found[3] ?? '') : found[2].replace(/\\(.)/g, '$1')
  }
  return {scheme: match[1]!.toLowerCase(), params}
}

export function basicAuthorization(username: string, password: string): string {
  return `Basic ${Buffer.from(`${username}:${password}`, 'utf8').toString('base64')}`
}

/** Secrets never reach a log line or an error: the words stay, the values go. */
export function redact(text: string, access: RegistryAccess): string {
  let out = text
  for (const secret of [access.password, access.token]) if (secret) out = out.split(secret).join('***')
  return out
}
