import type {Socket} from 'node:net'

/**
 * Takes over CONNECT (and SOCKS5) tunnels to chosen destinations once the
 * policy has allowed them, instead of the proxy splicing them to the
 * destination: how TLS interception plugs into a sandbox's egress.
 */
export interface ConnectInterceptor {
  /** Whether the tunnel to `host` (normalised) on `port` is this interceptor's to serve. */
  intercepts(host: string, port: number): boolean
  /** Serves the tunnel; the proxy has answered it. `head` holds bytes the client sent past its request. */
  take(client: Socket, host: string, port: number, head: Buffer): void
}

/**
 * Something a sandbox's egress serves besides its proxy: its own listener on
 * the sandbox's loopback, tunnels it takes over, and the variables every
 * process in the sandbox is given so that programs find it.
 */
export interface EgressService {
  /** A port on the sandbox's loopback for this service's listener. */
  readonly port?: number
  /** Serves one connection accepted on `port`. */
  handle?(socket: Socket): void
  readonly interceptor?: ConnectInterceptor
  /** Variables for every process started in the sandbox from now on. */
  env(): Record<string, string>
  close(): Promise<void>
}
