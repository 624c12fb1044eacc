/** What bench/egress.ts and its peer process agree on. */
export const DOWNLOAD_BYTES = 256 * 2 ** 20

export interface PeerRequest {
  path: '/' | '/big'
  /** The proxy to tunnel through, or null for a direct connection. */
  proxyPort: number | null
}
