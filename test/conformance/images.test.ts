import {expect} from 'chai'
import {execFileSync} from 'node:child_process'
import {createHash} from 'node:crypto'
import {existsSync} from 'node:fs'
import {lstat, readdir, readFile, readlink, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import {DaemonClient} from '../../src/client/client.js'
import {socketPathOf} from '../../src/client/connect.js'
import {DEFAULT_POLICY, withImage} from '../../src/policy/compile.js'
import {cliRepoSuite} from '../helpers/cli-repo.js'
import {mountsMentioning, sandboxesOf} from '../helpers/daemon.js'
import {busyboxLayer, ociImage, pushImage, tarOf} from '../images/images.js'
import {startRegistry, type TestRegistry} from '../images/registry.js'
import {BACKENDS, requireBackend} from './backends.js'
import {sharedGuestBinProblems, VANDALIZE_GUEST_BIN} from './boundary-fixtures.js'

/** A digest of every name, type, mode, owner and content under `root`: what "never modified" is checked against. */
async function treeDigest(root: string): Promise<string> {
  const hash = createHash('sha256')
  const walk = async (relative: string): Promise<void> => {
    const path = join(root, relative)
    const stats = await lstat(path)
    hash.update(`${relative}\0${stats.mode}\0${stats.uid}:${stats.gid}\0${stats.size}\0`)
    if (stats.isSymbolicLink()) hash.update(await readlink(path))
    else if (stats.isFile()) hash.update(await readFile(path))
    else if (stats.isDirectory()) for (const name of (await readdir(path)).sort()) await walk(join(relative, name))
  }
  await walk('.')
  return hash.digest('hex')
}

const policy = (ref: string): string => `version: 1\nsandbox:\n  image:\n    ref: "${ref}"\n  network:\n    default: deny\n`

/** What a sandbox on an image is, the same on every backend: each command names the backend (`--backend`). */
for (const backend of BACKENDS) describe(`sandboxes on an image (${backend}; CLI, daemon, real registry)`, function () {
  this.timeout(180_000)
  before(() => requireBackend(backend))
  let registry: TestRegistry
  let appDigest: string
  let rootDigest: string
  let bareDigest: string
  after(async () => registry?.stop())
  const context = cliRepoSuite(`cleanroom-image-sandbox-${backend}-`, async ({home, repo}) => {
    registry = await startRegistry(join(home, 'registry'))
    const busybox = await busyboxLayer()
    const accounts = await tarOf([
      {name: 'etc/passwd', content: 'root:x:0:0:root:/root:/bin/sh\napp:x:4321:4321:app:/home/app:/bin/sh\n'},
      {name: 'etc/group', content: 'root:x:0:\napp:x:4321:\n'},
      {name: 'app/', type: 'directory'},
      // What copying files in and out runs (an agent's files are copied in), as a busybox image links them.
      ...['mkdir', 'stat', 'tar'].map((name) => ({name: `bin/${name}`, type: 'symlink' as const, linkname: 'busybox'})),
    ])
    const config = {Env: ['PATH=/bin', 'GREETING=from the image', 'HOME=/nowhere'], WorkingDir: '/app', User: 'app', Cmd: ['/bin/sh']}
    appDigest = await pushImage(registry, 'test/app', 'v1', ociImage([{tar: busybox}, {tar: accounts}], {config}))
    rootDigest = await pushImage(registry, 'test/root', 'v1', ociImage([{tar: busybox}], {config: {Env: ['PATH=/bin'], User: '0'}}))
    // Only the program: no shell, no tools, no /etc.
    const bare = await tarOf([{name: 'bin/', type: 'directory'}, {name: 'bin/busybox', content: await readFile('/bin/busybox'), mode: 0o755}])
    bareDigest = await pushImage(registry, 'test/bare', 'v1', ociImage([{tar: bare}], {config: {Env: ['PATH=/bin']}}))
    await writeFile(join(repo, 'hello.txt'), 'from the repository\n')
  })
  const ref = (name: string, digest: string) => `${registry.host}/test/${name}@${digest}`
  const usePolicy = (ref_: string) => writeFile(join(context.repo, 'cleanroom.yaml'), policy(ref_))

  it("runs a policy's image, pulled on first use: its root filesystem, Env and User; the repository at /workspace", async () => {
    await usePolicy(ref('app', appDigest))
    const script = 'cat /etc/os-release; id -u; id -g; whoami; echo "$GREETING"; echo "$HOME"; pwd; cat hello.txt; grep -c . /etc/resolv.conf; grep ^app: /etc/passwd'
    const ran = await context.cli(['exec', '--backend', backend, '--', 'sh', '-c', script])
    expect(ran.exitCode, ran.stderr).to.equal(0)
    expect(ran.stderr).to.contain(`pulling image ${ref('app', appDigest)}`)
    expect(ran.stdout.split('\n')).to.deep.equal(['NAME=cleanroom-test', '4321', '4321', 'app', 'from the image', '/home/cleanroom', '/workspace', 'from the repository', '1', 'app:x:4321:4321:app:/home/app:/bin/sh'])

    // Cached now: no second pull; the generated /etc cannot be changed, even through the image's layer.
    const again = await context.cli(['exec', '--backend', backend, '--', 'sh', '-c', 'echo 1.2.3.4 evil >> /etc/hosts; echo x > /etc/os-release; cat /etc/hosts'])
    expect(again.stderr).not.to.contain('pulling image')
    expect(again.exitCode).to.equal(0)
    expect(again.stdout).not.to.contain('evil')

    // With no workspace (an API client's choice), commands start in the image's WorkingDir.
    const client = new DaemonClient(socketPathOf(undefined, context.env))
    const bare = await client.createSandbox({backend, policy: withImage(DEFAULT_POLICY, ref('app', appDigest)), workspace_source: null})
    try {
      expect(await client.run(bare.sandbox_id, {argv: ['sh', '-c', 'pwd'], env: {}})).to.deep.include({exit_code: 0, stdout: '/app\n'})
    } finally {
      await client.removeSandbox(bare.sandbox_id)
    }
  })

  it('refuses a tag-only image in a policy, and takes a tag with --image, resolved and shown', async () => {
    await usePolicy(`${registry.host}/test/app:v1`)
    const refused = await context.cli(['exec', '--backend', backend, '--', 'true'])
    expect(refused.exitCode).to.equal(2)
    expect(refused.stderr).to.match(/not digest-pinned/)

    await usePolicy(ref('app', appDigest))
    const ran = await context.cli(['exec', '--backend', backend, '--image', `${registry.host}/test/root:v1`, '--', 'sh', '-c', 'id -u; whoami; cat /etc/os-release'])
    expect(ran.exitCode, ran.stderr).to.equal(0)
    expect(ran.stderr).to.contain(`image ${registry.host}/test/root:v1 is ${ref('root', rootDigest)}`)
    expect(ran.stdout).to.equal('0\nroot\nNAME=cleanroom-test')
    const withId = await context.cli(['exec', '--image', `${registry.host}/test/root:v1`, '--sandbox-id', 'sb-none', '--', 'true'])
    expect(withId.exitCode).to.equal(2)
    expect(withId.stderr).to.contain('--image cannot be used with --sandbox-id')
  })

  it('sandbox inspect shows the image; image rm is refused while a sandbox uses it', async () => {
    await usePolicy(ref('app', appDigest))
    const created = await context.cli(['sandbox', 'create', '--backend', backend, '--image', `${registry.host}/test/root:v1`])
    expect(created.exitCode, created.stderr).to.equal(0)
    const id = created.stdout.trim()
    const inspected = JSON.parse((await context.cli(['sandbox', 'inspect', id, '--json'])).stdout) as {backend: string; image_ref: string; image_digest: string; image_id: string}
    expect(inspected.backend).to.equal(backend)
    expect(inspected.image_ref).to.equal(ref('root', rootDigest))
    expect(inspected.image_digest).to.equal(rootDigest)
    expect(inspected.image_id).to.match(/^sha256:[a-f0-9]{64}$/)
    expect((await context.cli(['sandbox', 'inspect', id])).stdout).to.contain(`image:     ${ref('root', rootDigest)}`)

    // Root inside is an unprivileged uid of the sandbox's own on the host.
    const processes = await sandboxesOf(new Set(), context.home)
    expect(processes).to.have.length.of.at.least(1)
    for (const pid of processes) {
      const uids = /^Uid:\s+(.*)$/m.exec(await readFile(`/proc/${pid}/status`, 'utf8'))![1]!.split(/\s+/)
      expect(uids.map(Number).every((uid) => uid > 0), `uids of ${pid}: ${uids.join(' ')}`).to.equal(true)
    }
    const refused = await context.cli(['image', 'rm', ref('root', rootDigest)])
    expect(refused.exitCode).to.equal(1)
    expect(refused.stderr).to.contain(id)
    const stateDir = execFileSync('find', [context.home, '-maxdepth', '6', '-type', 'd', '-name', id], {encoding: 'utf8'}).trim()
    expect(existsSync(join(stateDir, 'rootfs-upper')), 'the sandbox writes to its own upper layer').to.equal(true)
    expect((await context.cli(['sandbox', 'rm', id])).exitCode).to.equal(0)
    expect(existsSync(stateDir)).to.equal(false)
    expect(await mountsMentioning(id)).to.deep.equal([])
    expect((await context.cli(['image', 'rm', ref('root', rootDigest)])).exitCode).to.equal(0)
  })

  it('runs /bin/busybox in an image with nothing else; cp says which tools it lacks', async () => {
    await usePolicy(ref('bare', bareDigest))
    const created = await context.cli(['sandbox', 'create', '--backend', backend])
    expect(created.exitCode, created.stderr).to.equal(0)
    const id = created.stdout.trim()
    const ran = await context.cli(['exec', '--sandbox-id', id, '--', '/bin/busybox', 'cat', '/workspace/hello.txt'])
    expect(ran.exitCode, ran.stderr).to.equal(0)
    expect(ran.stdout).to.equal('from the repository')
    const shell = await context.cli(['exec', '--sandbox-id', id, '--', 'sh', '-c', 'true'])
    expect(shell.exitCode).to.equal(127)
    const copied = await context.cli(['cp', `${id}:/workspace/hello.txt`, join(context.home, 'out.txt')])
    expect(copied.exitCode).to.equal(1)
    expect(copied.stderr).to.contain('the sandbox has no stat')
    expect((await context.cli(['sandbox', 'rm', id])).exitCode).to.equal(0)
  })

  it('an agent in an image without it or node stops with 127, naming the image and the fix', async () => {
    await usePolicy(ref('app', appDigest))
    const ran = await context.cli(['agent', '--backend', backend, 'codex'])
    const id = /^sandbox_id=(\S+)$/m.exec(ran.stderr)?.[1]
    try {
      expect(ran.exitCode, ran.stderr).to.equal(127)
      expect(ran.stderr).to.contain('cleanroom: agent command not found: codex')
      expect(ran.stderr).to.contain(`cleanroom: image ${ref('app', appDigest)} has no codex and nothing to install it with: an agent needs sh and either itself or node and npm in the image (docs/images.md#an-image-for-agents)`)
    } finally {
      if (id !== undefined) await context.cli(['sandbox', 'rm', id])
    }
  })

  it("lets a root workload into no process inside that has more than it: memory only of its own kind, no variable but PATH, HOME and PWD", async () => {
    await usePolicy(ref('root', rootDigest))
    // Of every process but the probe's own shell: its name, whether its mem opens to read or write,
    // its uids, capabilities and seccomp mode, and the names of its variables when its environ opens.
    const probe = [
      'id -u',
      '(exec 9</proc/self/mem) && echo "self mem"',
      'for dir in /proc/[0-9]*; do pid=${dir#/proc/}; [ "$pid" = $$ ] && continue',
      '  mem=-; (exec 9</proc/$pid/mem) 2>/dev/null && mem=r; (exec 9<>/proc/$pid/mem) 2>/dev/null && mem=rw',
      '  status=$(grep -E "^(Uid|CapEff|CapPrm|Seccomp):" $dir/status 2>/dev/null | tr -s "\\t\\n" "  ")',
      '  vars=$( (tr "\\0" "\\n" < $dir/environ | cut -d= -f1 | tr "\\n" ,) 2>/dev/null)',
      '  echo "$pid|$(cat $dir/comm 2>/dev/null)|$mem|$status|$vars"',
      'done',
    ].join('\n')
    const ran = await context.cli(['exec', '--backend', backend, '--', 'sh', '-c', probe])
    expect(ran.exitCode, ran.stderr).to.equal(0)
    const [uid, self, ...lines] = ran.stdout.trim().split('\n')
    expect(uid, 'the workload is root inside').to.equal('0')
    expect(self, 'the probe opens what it may').to.equal('self mem')
    // The probe's own subshells (sh, cat, tr, ...) come and go while it runs.
    const processes = lines.map((line) => line.split('|')).filter(([, comm]) => !['sh', 'cat', 'tr', 'cut', 'grep'].includes(comm!))
    const names = processes.map(([pid, comm]) => `${pid} ${comm}`)
    expect(names, 'cleanroom\'s processes inside').to.include(backend === 'gvisor' ? '1 cleanroom-nsini' : '1 bwrap')
    for (const [pid, comm, mem, status, vars] of processes) {
      const name = `${pid} ${comm}`
      // Open only when it runs as the workload does: root inside, no capability, the same filter.
      if (mem !== '-') expect(status, `${name}: its memory opens (${mem})`).to.match(/Uid: 0 0 0 0 /).and.match(/CapEff: 0{16} /).and.match(/CapPrm: 0{16} /).and.match(/Seccomp: 2 /)
      // The init that read the exec server's key, the server and the forwarders: never, whatever their uid.
      if (comm === 'cleanroom-nsini') expect(mem, `${name}: its memory`).to.equal('-')
      for (const variable of (vars ?? '').split(',').filter(Boolean)) expect(['PATH', 'HOME', 'PWD'], `${name}: a variable the workload reads`).to.include(variable)
    }
  })

  it("never writes the image's root filesystem in the cache, whatever a root workload does", async () => {
    await usePolicy(ref('root', rootDigest))
    const pulled = JSON.parse((await context.cli(['image', 'pull', ref('root', rootDigest), '--json'])).stdout) as {image: {rootfs: string}}
    const before = await treeDigest(pulled.image.rootfs)
    // cleanroom's own nsinit too, which a gVisor sandbox binds from one copy shared by all.
    const vandal = `echo x >> /bin/busybox; chmod 777 /bin /; mkdir -p /usr/x; echo x > /new; ${VANDALIZE_GUEST_BIN}; rm -rf /bin/sh /bin/cat /etc/os-release /tmp; echo /*`
    const ran = await context.cli(['exec', '--backend', backend, '--', 'sh', '-c', vandal])
    expect(ran.stdout, ran.stderr).to.contain('new')
    expect(await treeDigest(pulled.image.rootfs)).to.equal(before)
    expect(await sharedGuestBinProblems(), 'the shared copies of nsinit').to.deep.equal([])
  })
})
