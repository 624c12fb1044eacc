import {resourcesSetting} from '../../../config/parse-resources.js'
import {programSetting} from '../../../config/settings.js'
import type {BackendDescriptor} from '../descriptor.js'

export const LINUX_NS_SETTINGS = {
  bwrap_path: programSetting('bwrap', 'bwrap binary: a name looked up on PATH or an absolute path.'),
  resources: resourcesSetting(),
}

export const LINUX_NS = {
  summary: 'Linux namespaces through bubblewrap (Debian package: bubblewrap).',
  settings: LINUX_NS_SETTINGS,
  capabilities: {
    'network.default_deny': true,
    'network.allowlist_egress': true,
    'sandbox.persistent': true,
    'exec.tty': true,
    'files.copy': true,
    'dns_control_or_equivalent': true,
    // An image's root filesystem from the cache under a per-sandbox upper layer (docs/images.md).
    'images.oci': true,
    // Set while cgroups can be used here (a root daemon): LinuxNsBackend.capabilities().
    'resources.cpu': false,
    'resources.memory': false,
    'resources.disk': false,
    'services.docker': false,
    'policy.stages': false,
    'policy.run_before': false,
    'repository.checkout': false,
    'expose.https': false,
  },
} satisfies BackendDescriptor<typeof LINUX_NS_SETTINGS>
