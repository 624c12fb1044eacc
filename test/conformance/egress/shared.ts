import {execFile} from 'node:child_process'
import {mkdir, readFile, writeFile} from 'node:fs/promises'
import {networkInterfaces} from 'node:os'
import {join} from 'node:path'
import {promisify} from 'node:util'

import type {BackendName} from '../../../src/config/schema.js'
import {recompilePolicy} from '../../../src/policy/compile.js'
import type {CompiledPolicy} from '../../../src/policy/schema.js'
import type {RuleInput} from '../../egress/fixtures.js'

const run = promisify(execFile)

/** The other host's ports: HTTP, and a DNS server on TCP and UDP 53. */
export const OTHER_HTTP = 8080
export const DNS = 53

/** The whole suite runs in well under this; a hung attempt fails the test instead of the run. */
export const SUITE_BUDGET_MS = 60_000

export function policyOf(allow: RuleInput[], deny: RuleInput[] = []): CompiledPolicy {
  return recompilePolicy({version: 1, network_default: 'deny', allow, deny})
}

/** The host's own addresses, as the proxy sees them (link-local ones without their zone), each once. */
export function hostAddresses(): string[] {
  return [...new Set(Object.values(networkInterfaces()).flatMap((infos) => (infos ?? []).map((info) => info.address.split('%')[0]!)))]
}

export const isLinkLocal = (address: string): boolean => /^fe[89ab]/i.test(address)
export const isLoopback = (address: string): boolean => address === '::1' || address.startsWith('127.')
/**
 * What the sandbox's kernel answers for an address outside it: there is no route. Linux
 * says so with ENETUNREACH, gVisor's network stack with EHOSTUNREACH (errno 113, not 101).
 */
export const NO_ROUTE = {
  'linux-ns': {code: 'ENETUNREACH', errno: '101', linkLocal: 'EINVAL'},
  gvisor: {code: 'EHOSTUNREACH', errno: '113', linkLocal: 'ENETUNREACH'},
} as const

/** The answer for an address outside the sandbox (Linux cannot dial a link-local one without a zone at all: EINVAL). */
export const unroutable = (backend: BackendName, address: string): string => (isLinkLocal(address) ? NO_ROUTE[backend].linkLocal : NO_ROUTE[backend].code)

/** A DNS query (A record) with the two-byte length prefix of DNS over TCP, as latin1 text for the probe. */
export function dnsOverTcpQuery(name: string): string {
  const header = Buffer.from([0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0])
  const labels = name.split('.').map((label) => Buffer.concat([Buffer.from([label.length]), Buffer.from(label)]))
  const message = Buffer.concat([header, ...labels, Buffer.from([0, 0, 1, 0, 1])])
  const length = Buffer.from([message.length >> 8, message.length & 0xff])
  return Buffer.concat([length, message]).toString('latin1')
}

/** A self-signed certificate for `allowed.test` (also the CA the sandbox's git trusts). */
export async function selfSignedCertificate(dir: string): Promise<{key: string; cert: string}> {
  const key = join(dir, 'key.pem')
  const cert = join(dir, 'cert.pem')
  await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2', '-subj', '/CN=allowed.test',
    '-addext', 'subjectAltName=DNS:allowed.test', '-keyout', key, '-out', cert]).catch((error: unknown) => {
    throw new Error(`openssl could not make the test's TLS certificate (the suite needs openssl on the host): ${String(error)}`)
  })
  return {key: await readFile(key, 'utf8'), cert: await readFile(cert, 'utf8')}
}

/** A bare repository served as files (dumb HTTP): one commit with README. */
export async function bareRepository(dir: string): Promise<string> {
  const work = join(dir, 'work')
  const git = (cwd: string, ...args: string[]) => run('git', ['-c', 'user.name=t', '-c', 'user.email=t@t', '-c', 'init.defaultBranch=main', ...args], {cwd})
  await mkdir(work, {recursive: true})
  await git(work, 'init', '-q')
  await writeFile(join(work, 'README'), 'cloned through the egress proxy\n')
  await git(work, 'add', 'README')
  await git(work, 'commit', '-q', '-m', 'first')
  const root = join(dir, 'served')
  await mkdir(root)
  await git(dir, 'clone', '-q', '--bare', work, join(root, 'repo.git'))
  await git(join(root, 'repo.git'), 'update-server-info')
  return root
}
