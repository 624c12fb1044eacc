import {expect} from 'chai'
import {setTimeout as sleep} from 'node:timers/promises'

import type {BackendName} from '../../../src/config/schema.js'
import {mapResolver} from '../../egress/fixtures.js'
import type {TestDaemon} from '../../helpers/daemon.js'
import type {OtherHost} from '../other-host.js'
import type {SandboxUnderTest} from '../sandbox.js'
import {AbstractSocketTarget, RecordingTarget, UdpTarget} from '../targets.js'

/** The ports of the host targets: allowed, denied, unlisted, on every host address, git over TLS. */
export interface TargetPorts {A: number; D: number; U: number; P: number; T: number}

/**
 * What the egress suite sets up for its sections, filled in by its `before`: the daemon, the
 * host targets, the other host and the four sandboxes. A section reads it inside its tests only.
 */
export class EgressSuite {
  dir = ''
  sandboxesBefore = new Set<number>()
  /** The proxies' DNS: names the test controls (filled in once the other host has its address). */
  readonly names: Record<string, string[]> = {}
  readonly resolver = mapResolver(this.names)
  /** The host targets, closed by the suite's `after`. */
  readonly targets: Array<{close(): Promise<void>}> = []
  test!: TestDaemon
  other!: OtherHost
  /** How many events the other host had recorded when the current test began. */
  otherMark = 0

  // Host targets: the allowed web server, one never allowed, one on a port no rule lists,
  // one on every host address (`::`), the git HTTPS server, a UDP listener, an abstract socket.
  allowedWeb!: RecordingTarget
  deniedWeb!: RecordingTarget
  unlistedWeb!: RecordingTarget
  everyAddress!: RecordingTarget
  gitTls!: RecordingTarget
  udp!: UdpTarget
  abstract!: AbstractSocketTarget

  /** Main policy: named, wildcard, CIDR and broad rules, and deny rules. */
  main!: SandboxUnderTest
  /** A second sandbox, whose proxy and audit log `main` must not reach. */
  peer!: SandboxUnderTest
  /** --dangerously-allow-all, with deny rules. */
  open!: SandboxUnderTest
  /** Name rules only, no IP rule. */
  nameOnly!: SandboxUnderTest

  constructor(readonly backend: BackendName) {}

  readonly client = (): TestDaemon['client'] => this.test.client

  ports(): TargetPorts {
    return {A: this.allowedWeb.port, D: this.deniedWeb.port, U: this.unlistedWeb.port, P: this.everyAddress.port, T: this.gitTls.port}
  }

  /** Asserts no target got a connection, a datagram or a request since the test began. */
  async expectUntouched(...which: Array<RecordingTarget | UdpTarget | AbstractSocketTarget | OtherHost>): Promise<void> {
    // A proxy that dialled despite answering a refusal would do it right away: give it that moment.
    await sleep(100)
    for (const target of which) {
      if (target instanceof RecordingTarget) expect(target.connections, `connections that reached ${target.name}`).to.deep.equal([])
      else if (target instanceof UdpTarget) expect(target.datagrams, 'datagrams that reached the host').to.deep.equal([])
      else if (target instanceof AbstractSocketTarget) expect(target.connections, 'connections to the abstract socket').to.equal(0)
      else expect(target.since(this.otherMark), 'what reached the other host').to.deep.equal([])
    }
  }
}
