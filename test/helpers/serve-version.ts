// `cleanroom serve` claiming another version, as a daemon left running from before an upgrade is:
// node --import tsx test/helpers/serve-version.ts <version>, with the per-user paths in the environment.
import {socketPathOf} from '../../src/client/connect.js'
import {DEFAULT_RUNTIME_CONFIG} from '../../src/config/schema.js'
import {serveInForeground} from '../../src/daemon/foreground.js'
import {stateDir} from '../../src/paths.js'

await serveInForeground({socketPath: socketPathOf(undefined), stateDir: stateDir(), config: DEFAULT_RUNTIME_CONFIG, version: process.argv[2] ?? '0.0.0', shutdownSandboxes: false})
