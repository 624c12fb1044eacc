import {execServerAttacks} from './boundary/exec-server.js'
import {comingOut} from './boundary/out.js'
import {agentPlugins} from './boundary/plugins.js'
import {reachingIn} from './boundary/reach-in.js'
import {BACKENDS, requireBackend} from './backends.js'

/**
 * The boundary conformance suite: everything that crosses a sandbox's boundary
 * other than the network, attacked as a hostile workload (or plugin) would,
 * each case asserting the host saw nothing. Sections live in ./boundary/.
 */
for (const backend of BACKENDS) {
  describe(`boundary conformance (${backend})`, function () {
    this.timeout(60_000)
    before(() => requireBackend(backend))
    comingOut(backend)
    reachingIn(backend)
    // Only gVisor sandboxes run an exec server inside (linux-ns execs enter from the host).
    if (backend === 'gvisor') execServerAttacks()
  })
}

agentPlugins()
