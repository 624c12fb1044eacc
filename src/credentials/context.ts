import type {AuditSink} from '../egress/audit.js'
import type {SecretResolver} from './secrets.js'
import type {LoginState, SandboxCredentialState, TokenSet} from './state.js'
import type {UpstreamPool} from './upstream.js'
import type {TokenStore} from './logins.js'

/** What the gateway's request handlers need of their sandbox's gateway. */
export interface GatewayContext {
  readonly sandboxId: string
  readonly audit: AuditSink
  readonly pool: UpstreamPool
  readonly secrets: SecretResolver
  state(): SandboxCredentialState
  /** Where a login's real tokens are: the host's lineage, or the sandbox's own after a login inside it. */
  tokenStore(login: LoginState): TokenStore
  /** The access token last handed to this sandbox for a login (to tell whether someone else refreshed since). */
  delivered(login: LoginState): string | undefined
  setDelivered(login: LoginState, tokens: TokenSet): void
  /** Why no request may be sent on now (its audit line could not be written, and the runtime config refuses that), or undefined. */
  auditRefusal(): Promise<string | undefined>
  /** Keeps the state on disk after a change (a login made inside the sandbox). */
  save(): Promise<void>
}
