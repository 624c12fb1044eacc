/** What bench/gateway.ts and its peer process agree on. */
export const STREAM_BYTES = 256 * 2 ** 20

export interface GatewayPeerRequest {
  /** `first-byte`: a streamed completion, answered when its first byte arrives; `stream`: 256 MiB of events, to the end. */
  kind: 'first-byte' | 'stream'
  /** The gateway route's URL and phantom, or null to ask the fake upstream directly. */
  gateway: {url: string; phantom: string} | null
}
