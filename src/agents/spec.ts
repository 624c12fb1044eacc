import type {CredentialMode, GatewaySpec} from '../credentials/spec.js'
import type {PathSegment} from '../util/yaml-file.js'

/** Where a credential file goes: copied from `source` on the host to `target` in the sandbox home. */
export interface CredentialMapping {
  /** Host path; `~` is the host user's home. */
  source: string
  /** Sandbox path; `~` is the sandbox user's home. Must stay inside that home. */
  target: string
  /** A rewrite applied to the file's bytes while packing (see credentials.ts). */
  transform?: CredentialTransform
  /**
   * False for a file that holds no secret (settings, account state): it is
   * copied in gateway mode too. Every other file is copied only in copy mode.
   */
  secret?: boolean
  /** Top-level keys of a JSON file left out of the copy (a key a settings file may hold). */
  omit?: string[]
}

/** `none` says so on purpose: a later source's mapping of the same target otherwise keeps the earlier one's transform. */
export const CREDENTIAL_TRANSFORMS = ['codex-trust', 'none'] as const
export type CredentialTransform = (typeof CREDENTIAL_TRANSFORMS)[number]

/** A destination the agent must reach, added to the policy of sandboxes it runs in. */
export interface NetworkNeed {
  host: string
  ports: number[]
  reason?: string
}

/** A complete agent: what `cleanroom agent <name>` runs and what it needs. */
export interface AgentSpec {
  name: string
  description?: string
  /** Shell text run after `exec`; the user's arguments follow it, each single-quoted. */
  command: string
  /** Shell condition that succeeds when the agent is present. */
  test: string
  /** Shell snippet run when `test` fails. */
  install?: string
  /**
   * The npm package that provides the command: when the command's first word is
   * not on the sandbox's PATH, it runs from this package through `npm exec`
   * (@latest checked at most once a day; see npmLauncher in script.ts).
   */
  package?: string
  /**
   * The release of `package` to run: an exact version (fetched once, never
   * checked again) or a dist-tag; default `latest`, checked once a day.
   */
  version?: string
  credentials: CredentialMapping[]
  network: NetworkNeed[]
  env: Record<string, string>
  /** Routes and logins the credential gateway serves for the agent (docs/credentials.md). */
  gateway?: GatewaySpec
  /** How credentials reach the agent; default: gateway when it declares one, else copy. */
  credential_mode?: CredentialMode
}

/** An agent as one source declares it: any field may be left to an earlier source. */
export type AgentSpecInput = Partial<Omit<AgentSpec, 'name'>>

export const AGENT_NAME_PATTERN = /^[a-z][a-z0-9-]*$/

/** Names taken by subcommands of `cleanroom agent`. */
export const RESERVED_AGENT_NAMES: readonly string[] = ['list', 'help']

export const AGENT_SPEC_KEYS = ['name', 'description', 'command', 'test', 'install', 'package', 'version', 'credentials', 'network', 'env', 'gateway'] as const

/**
 * How much one agent declaration may hold (docs/agents.md, "Limits"). A
 * plugin's package.json is read by every command that lists agents, so a
 * hostile one must cost little and fail with a message naming the field.
 */
export const AGENT_SPEC_LIMITS = {
  /** command, test, install, description, and each env value. */
  maxText: 16_384,
  /** credential sources and targets. */
  maxPath: 4096,
  maxCredentials: 64,
  maxNetwork: 256,
  maxPorts: 64,
  maxEnv: 256,
  /** npm's own limit on a package name. */
  maxPackage: 214,
} as const

/** An npm package name, unscoped or scoped, without a version: what `package` accepts. */
export const NPM_PACKAGE_PATTERN = /^(?:@[a-z0-9][a-z0-9._-]*\/)?[a-z0-9][a-z0-9._-]*$/

/** Called for each problem found; `at: 'key'` marks an unknown or misplaced key. */
export type ReportIssue = (path: PathSegment[], message: string, at?: 'key' | 'value') => void
