import {expect} from 'chai'
import {execFile} from 'node:child_process'
import {generateKeyPairSync, X509Certificate} from 'node:crypto'
import {writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {promisify} from 'node:util'

import {SandboxCa} from '../../src/credentials/ca.js'
import {issueCertificate, keyIdentifier} from '../../src/credentials/x509.js'
import {tempDirs} from '../helpers/tmp.js'

const run = promisify(execFile)

describe('per-sandbox CA certificates (X.509 written by cleanroom)', () => {
  const dirs = tempDirs('cleanroom-x509-')
  after(() => dirs.cleanup())

  const issue = (hosts: string[], leafHosts: string[]) => {
    const ca = generateKeyPairSync('ec', {namedCurve: 'prime256v1'})
    const leaf = generateKeyPairSync('ec', {namedCurve: 'prime256v1'})
    const issuer = {name: 'test CA', privateKey: ca.privateKey, keyId: keyIdentifier(ca.publicKey)}
    const now = Date.now()
    const caPem = issueCertificate({subject: 'test CA', publicKey: ca.publicKey, issuer, notBefore: new Date(now - 60_000), notAfter: new Date(now + 86_400_000), hosts, ca: true})
    const leafPem = issueCertificate({subject: leafHosts[0]!, publicKey: leaf.publicKey, issuer, notBefore: new Date(now - 60_000), notAfter: new Date(now + 86_400_000), hosts: leafHosts, ca: false})
    return {caPem, leafPem}
  }

  it('passes OpenSSL\'s strict verification (the checks Python 3.13 and curl make), for names and addresses', async () => {
    const dir = await dirs.make()
    const {caPem, leafPem} = issue(['auth.openai.com', 'chatgpt.com', '10.1.2.3', '2001:db8::1'], ['auth.openai.com'])
    await writeFile(join(dir, 'ca.pem'), caPem)
    await writeFile(join(dir, 'leaf.pem'), leafPem)
    const {stdout} = await run('openssl', ['verify', '-x509_strict', '-purpose', 'sslserver', '-verify_hostname', 'auth.openai.com', '-CAfile', join(dir, 'ca.pem'), join(dir, 'leaf.pem')])
    expect(stdout.trim()).to.equal(`${join(dir, 'leaf.pem')}: OK`)
    const text = (await run('openssl', ['x509', '-in', join(dir, 'ca.pem'), '-noout', '-text'])).stdout
    expect(text).to.contain('CA:TRUE, pathlen:0').and.contain('Certificate Sign, CRL Sign').and.contain('DNS:chatgpt.com').and.contain('IP:10.1.2.3/255.255.255.255')
    const leaf = new X509Certificate(leafPem)
    expect(leaf.checkHost('auth.openai.com')).to.equal('auth.openai.com')
    expect(leaf.checkIssued(new X509Certificate(caPem))).to.equal(true)
  })

  it('cannot vouch for a host outside its name constraints', async () => {
    const dir = await dirs.make()
    const {caPem, leafPem} = issue(['auth.openai.com'], ['evil.example'])
    await writeFile(join(dir, 'ca.pem'), caPem)
    await writeFile(join(dir, 'leaf.pem'), leafPem)
    const error = await run('openssl', ['verify', '-CAfile', join(dir, 'ca.pem'), join(dir, 'leaf.pem')]).catch((failure: {stdout: string; stderr: string}) => failure)
    expect(`${(error as {stdout: string}).stdout}${(error as {stderr: string}).stderr}`).to.contain('permitted subtree violation')
  })

  it('is kept in the sandbox\'s state (mode 0600) and made again only when it must cover more hosts', async () => {
    const dir = await dirs.make()
    const path = join(dir, 'ca.json')
    const first = await SandboxCa.load(path, ['chatgpt.com'])
    const again = await SandboxCa.load(path, ['chatgpt.com'])
    expect(first.renewed).to.equal(true)
    expect(again.renewed).to.equal(false)
    expect(again.ca.certificate).to.equal(first.ca.certificate)
    const {stat} = await import('node:fs/promises')
    expect((await stat(path)).mode & 0o777).to.equal(0o600)
    const wider = await SandboxCa.load(path, ['auth.openai.com'])
    expect(wider.renewed).to.equal(true)
    expect(wider.ca.hosts).to.deep.equal(['auth.openai.com', 'chatgpt.com'])
    const validTo = Date.parse(new X509Certificate(wider.ca.certificate).validTo)
    expect(validTo - Date.now()).to.be.within(29 * 86_400_000, 31 * 86_400_000)
  })
})
