import {access, constants, mkdir, readFile} from 'node:fs/promises'
import {homedir, release} from 'node:os'
import {dirname, resolve} from 'node:path'

import {socketPathOf} from '../client/connect.js'
import {DaemonClient} from '../client/client.js'
import type {AgentRegistry} from '../agents/registry.js'
import {requireTrustedDirectory, requireTrustedSocket} from '../client/socket-trust.js'
import {loadRuntimeConfig} from '../config/load.js'
import {defaultConfigPath} from '../config/paths.js'
import type {RuntimeConfig} from '../config/schema.js'
import {configCommand} from '../config/suggest.js'
import {checkAgentCredentials} from '../credentials/doctor.js'
import {isCleanroomError, messageOf} from '../errors/index.js'
import {loadPolicy} from '../policy/load.js'
import type {CompiledPolicy} from '../policy/schema.js'
import {createBackends} from '../sandbox/backends/index.js'
import {probeCgroups} from '../sandbox/backends/linux-ns/cgroup-host.js'
import {defaultLimits, describeResources} from '../sandbox/resources.js'
import {capabilityFixes, capabilityMismatch, missingCapabilities, neededCapabilities} from '../sandbox/capabilities.js'
import {pasteable} from '../util/pasteable.js'
import {checkIgnoredFiles} from './ignored.js'

export type CheckStatus = 'pass' | 'warn' | 'fail'

export interface Check {
  name: string
  status: CheckStatus
  detail: string
  /** What to do about a warn or fail. */
  fix?: string
}

export interface DoctorReport {
  ok: boolean
  checks: Check[]
  capabilities: Record<string, Record<string, boolean>>
}

const NAMESPACES = ['user', 'mnt', 'pid', 'net', 'ipc', 'uts', 'cgroup']

/** Everything cleanroom needs from this machine, checked without changing anything. */
export async function runDoctor(options: {dir: string; host?: string; version?: string; agents?: AgentRegistry}): Promise<DoctorReport> {
  const checks: Check[] = []
  checks.push(await checkOs(), checkNode(), await checkNamespaces(), await checkOverlay())

  let config
  let configPath = defaultConfigPath()
  try {
    const loaded = await loadRuntimeConfig()
    config = loaded.config
    configPath = loaded.path
    checks.push({name: 'runtime config', status: 'pass', detail: loaded.exists ? `valid: ${loaded.path}` : `none at ${loaded.path}: defaults in use`})
  } catch (error) {
    checks.push({name: 'runtime config', status: 'fail', detail: messageOf(error), fix: `Fix the file, then: ${configCommand('config validate', configPath)}`})
  }

  let policy: CompiledPolicy | undefined
  try {
    const loaded = await loadPolicy(options.dir)
    policy = loaded.policy
    const {source} = loaded
    checks.push({name: 'policy', status: 'pass', detail: source ? `valid: ${source} (hash ${policy.hash.slice(0, 12)})` : 'no cleanroom.yaml: the default policy applies (no egress)'})
  } catch (error) {
    const validate = resolve(options.dir) === process.cwd() ? 'cleanroom policy validate' : pasteable(['cleanroom', 'policy', 'validate', '-c', options.dir])
    checks.push({name: 'policy', status: 'fail', detail: messageOf(error), fix: `Fix cleanroom.yaml, then: ${validate}`})
  }

  const capabilities: DoctorReport['capabilities'] = {}
  if (config) {
    const backends = createBackends(config)
    for (const backend of backends.values()) {
      const availability = await backend.availability()
      capabilities[backend.name] = {...backend.capabilities()}
      const isDefault = backend.name === config.default_backend
      checks.push({
        name: `backend ${backend.name}${isDefault ? ' (default)' : ''}`,
        status: availability.ok ? 'pass' : isDefault ? 'fail' : 'warn',
        detail: availability.ok ? (availability.version ?? 'available') : (availability.problem ?? 'unavailable'),
        ...(availability.fix ? {fix: availability.fix} : {}),
      })
      const missing = isDefault && policy ? missingCapabilities(policy, backend.capabilities()) : []
      if (missing.length > 0) {
        checks.push({
          name: 'policy vs backend',
          status: 'fail',
          detail: `${capabilityMismatch(backend.name, missing, policy ? neededCapabilities(policy) : [])}: sandboxes would be refused`,
          fix: capabilityFixes(missing).join('; '),
        })
      }
    }
  }

  if (config) checks.push(checkResourceLimits(config))
  checks.push(await checkSocket(options.host, options.version))
  const sandboxes = await new DaemonClient(socketPathOf(options.host)).listSandboxes(false).catch(() => [])
  checks.push(await checkIgnoredFiles(options.dir, sandboxes))
  if (config && options.agents) {
    for (const agent of options.agents.agents.values()) {
      const trusted = agent.sources.every((source) => source.kind !== 'plugin')
      checks.push(await checkAgentCredentials(agent.spec, {settings: config.credentials, env: process.env, hostHome: homedir(), trusted}))
    }
  }
  return {ok: checks.every((check) => check.status !== 'fail'), checks, capabilities}
}

async function checkOs(): Promise<Check> {
  if (process.platform !== 'linux') {
    return {name: 'os', status: 'fail', detail: `${process.platform} is not supported`, fix: 'Run cleanroom on Linux'}
  }
  const osRelease = await readFile('/etc/os-release', 'utf8').catch(() => '')
  const pretty = /^PRETTY_NAME="?([^"\n]*)"?$/m.exec(osRelease)?.[1] ?? 'Linux'
  return {name: 'os', status: 'pass', detail: `${pretty}, kernel ${release()}`}
}

function checkNode(): Check {
  const [major = 0, minor = 0] = process.versions.node.split('.').map(Number)
  const ok = major > 20 || (major === 20 && minor >= 19)
  return ok
    ? {name: 'node', status: 'pass', detail: `v${process.versions.node}`}
    : {name: 'node', status: 'fail', detail: `v${process.versions.node} is too old`, fix: 'Install Node.js 20.19 or newer'}
}

async function checkNamespaces(): Promise<Check> {
  const missing: string[] = []
  for (const ns of NAMESPACES) {
    if (!(await exists(`/proc/self/ns/${ns}`))) missing.push(ns)
  }
  if (missing.length > 0) {
    return {name: 'namespaces', status: 'fail', detail: `the kernel lacks ${missing.join(', ')} namespaces`, fix: 'Use a kernel built with user, mount, pid, net, ipc, uts and cgroup namespaces'}
  }
  const max = Number((await readFile('/proc/sys/user/max_user_namespaces', 'utf8').catch(() => '0')).trim())
  if (max <= 0) {
    return {name: 'namespaces', status: 'fail', detail: 'user namespaces are disabled (user.max_user_namespaces = 0)', fix: 'sysctl -w user.max_user_namespaces=15000'}
  }
  const clone = (await readFile('/proc/sys/kernel/unprivileged_userns_clone', 'utf8').catch(() => '1')).trim()
  if (clone === '0') {
    return {name: 'namespaces', status: 'fail', detail: 'unprivileged user namespaces are disabled', fix: 'sysctl -w kernel.unprivileged_userns_clone=1'}
  }
  return {name: 'namespaces', status: 'pass', detail: `${NAMESPACES.join(', ')}; user namespaces allowed (max ${max})`}
}

async function checkOverlay(): Promise<Check> {
  const filesystems = await readFile('/proc/filesystems', 'utf8').catch(() => '')
  return /\boverlay\b/.test(filesystems)
    ? {name: 'overlayfs', status: 'pass', detail: 'available'}
    : {name: 'overlayfs', status: 'fail', detail: 'the kernel has no overlay filesystem', fix: 'modprobe overlay (or use a kernel with CONFIG_OVERLAY_FS)'}
}

/** Whether a daemon run like this command can set linux-ns sandboxes' limits (cgroups). */
function checkResourceLimits(config: RuntimeConfig): Check {
  const name = 'resource limits (linux-ns)'
  const probe = probeCgroups()
  if (!probe.ok) {
    return {
      name,
      status: 'warn',
      detail: `off: ${probe.problem}. Sandboxes run without pids, memory, CPU and disk limits, and a policy with sandbox.resources is refused`,
      fix: 'Run the daemon as root on a machine with cgroups (v2 offering pids, memory and cpu, or v1 with pids, memory, cpu and freezer)',
    }
  }
  const limits = describeResources({cgroup: `v${probe.host.version}`, ...defaultLimits(config.backends['linux-ns'].resources)})
  return {name, status: 'pass', detail: `every sandbox gets ${limits}`}
}

async function checkSocket(host: string | undefined, version: string | undefined): Promise<Check> {
  const socketPath = socketPathOf(host)
  try {
    requireTrustedSocket(socketPath)
    requireTrustedDirectory(dirname(socketPath))
  } catch (error) {
    return {name: 'daemon', status: 'fail', detail: messageOf(error), ...(isCleanroomError(error) ? {fix: error.suggestions.join('; ')} : {})}
  }
  try {
    // A hung daemon accepts connections and never answers: doctor must still finish.
    const daemon = await new DaemonClient(socketPath, {timeoutMs: 5000}).ping()
    if (version !== undefined && daemon.version !== version) {
      return {
        name: 'daemon',
        status: 'fail',
        detail: `version ${daemon.version} (pid ${daemon.pid}) answers at ${socketPath}, and this cleanroom is ${version}: it refuses this CLI's requests`,
        fix: `cleanroom serve stop${host === undefined ? '' : ` --host ${host}`} (sandboxes keep running; the next command starts a daemon of this version, which takes them over)`,
      }
    }
    return {name: 'daemon', status: 'pass', detail: `version ${daemon.version} (pid ${daemon.pid}) answering at ${socketPath}`}
  } catch (error) {
    if ((error as {cause?: {code?: string}}).cause?.code === 'ETIMEDOUT') {
      return {name: 'daemon', status: 'fail', detail: `a daemon accepts connections at ${socketPath} but does not answer`, fix: `cleanroom serve stop${host === undefined ? '' : ` --host ${host}`} (it is killed if it does not stop; sandboxes keep running)`}
    }
    // Not running is fine (it starts on demand) as long as its socket could be created.
  }
  try {
    await mkdir(dirname(socketPath), {recursive: true, mode: 0o700})
    await access(dirname(socketPath), constants.W_OK)
    return {name: 'daemon', status: 'pass', detail: `not running; starts on demand at ${socketPath}`}
  } catch (error) {
    return {name: 'daemon', status: 'fail', detail: `cannot create ${dirname(socketPath)}: ${messageOf(error)}`, fix: 'Set XDG_RUNTIME_DIR to a directory you own, or pass --host unix:///path'}
  }
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  )
}
