import {Document, isMap} from 'yaml'

import {commentKey} from '../util/yaml-file.js'

/**
 * The commented `cleanroom.yaml` that `cleanroom policy init` writes: a valid
 * policy that allows nothing, with every field explained and example rules
 * commented out so that deleting the `# ` of a line gives valid YAML.
 */
export function renderPolicyTemplate(): string {
  const doc = new Document({version: 1, sandbox: {network: {default: 'deny', allow: null, deny: null}}}, {version: '1.2'})
  doc.commentBefore = [
    ' cleanroom policy: what sandboxes of this repository may reach over the network.',
    ' Every connection is refused unless an allow rule below matches it.',
    ' Check this file with: cleanroom policy validate',
  ].join('\n')

  commentKey(doc, ['version'], ' Format version; 1 is the only one.')
  commentKey(doc,
    ['sandbox', 'network'],
    [
      ' The root filesystem of sandboxes: an OCI image pinned by digest.',
      ' Without sandbox.image, sandboxes use the host\'s root filesystem.',
      ' image:',
      '   ref: ghcr.io/acme/devbox@sha256:<64 lowercase hex digits>',
    ].join('\n'),
  )
  commentKey(doc, ['sandbox', 'network', 'default'], ' What happens to a connection no rule matches: always deny.')
  commentKey(doc,
    ['sandbox', 'network', 'allow'],
    [
      ' Destinations sandboxes may connect to: {host, ports, reason} or "host:port".',
      ' host is a name (api.github.com), a wildcard (*.github.com: subdomains, not',
      ' github.com itself), an IP address (10.1.2.3, "[2001:db8::1]:443") or a CIDR (10.0.0.0/8).',
    ].join('\n'),
  )
  commentKey(doc,
    ['sandbox', 'network', 'deny'],
    [
      '   - host: api.github.com',
      '     ports: [443]',
      '     reason: git over https',
      '   - registry.npmjs.org:443',
      ' Destinations refused even when an allow rule matches; without ports, every port.',
    ].join('\n'),
  )
  const network = doc.getIn(['sandbox', 'network'], true)
  if (isMap(network)) network.comment = ['   - host: 169.254.169.254', '     reason: cloud metadata'].join('\n')
  return doc.toString({lineWidth: 0, nullStr: ''})
}

