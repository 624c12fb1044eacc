import {leadsOutside, type TreeEntry} from '../util/link-target.js'
import {visibleName} from '../util/visible.js'

/**
 * Paths whose contents run code on the host or steer an agent, CI, git or a
 * package manager: a sandbox's change to one of them is only written back with
 * --force (or an interactive yes). This list is the one place they are named;
 * docs/api.md repeats it. Matching ignores case (`.GitHub/Workflows/` is the
 * same directory on a case-insensitive filesystem).
 */
export const RISKY_PATHS: readonly {pattern: string; why: string}[] = [
  {pattern: '.git/', why: 'git hooks and config run on the host'},
  {pattern: '**/.gitattributes', why: 'git filters and diff drivers run on the host'},
  {pattern: '.gitmodules', why: 'submodule URLs and commands git follows'},
  {pattern: '.lfsconfig', why: 'where git-lfs sends and fetches objects'},
  {pattern: '.github/workflows/', why: 'CI workflows run with the repository secrets'},
  {pattern: '.github/actions/', why: 'CI actions run with the repository secrets'},
  {pattern: '.buildkite/', why: 'CI pipelines'},
  {pattern: '.circleci/', why: 'CI pipelines'},
  {pattern: '.gitlab-ci.yml', why: 'CI pipelines'},
  {pattern: '.gitlab/', why: 'CI pipelines and templates'},
  {pattern: 'Jenkinsfile', why: 'CI pipelines'},
  {pattern: 'azure-pipelines.yml', why: 'CI pipelines'},
  {pattern: 'azure-pipelines.yaml', why: 'CI pipelines'},
  {pattern: '.azure-pipelines/', why: 'CI pipelines'},
  {pattern: '.travis.yml', why: 'CI pipelines'},
  {pattern: 'bitbucket-pipelines.yml', why: 'CI pipelines'},
  {pattern: '.drone.yml', why: 'CI pipelines'},
  {pattern: '.woodpecker.yml', why: 'CI pipelines'},
  {pattern: '.woodpecker/', why: 'CI pipelines'},
  {pattern: 'appveyor.yml', why: 'CI pipelines'},
  {pattern: '.appveyor.yml', why: 'CI pipelines'},
  {pattern: '.cirrus.yml', why: 'CI pipelines'},
  {pattern: 'cloudbuild.yaml', why: 'CI pipelines'},
  {pattern: 'buildspec.yml', why: 'CI pipelines'},
  {pattern: '.semaphore/', why: 'CI pipelines'},
  {pattern: '.tekton/', why: 'CI pipelines'},
  {pattern: '.gitea/', why: 'CI workflows'},
  {pattern: '.forgejo/', why: 'CI workflows'},
  {pattern: '.husky/', why: 'git hooks run on the host'},
  {pattern: '.pre-commit-config.yaml', why: 'git hooks run on the host'},
  {pattern: 'lefthook.yml', why: 'git hooks run on the host'},
  {pattern: 'lefthook.yaml', why: 'git hooks run on the host'},
  {pattern: '.lefthook.yml', why: 'git hooks run on the host'},
  {pattern: 'lefthook-local.yml', why: 'git hooks run on the host'},
  {pattern: 'cleanroom.yaml', why: "the repository's sandbox policy"},
  {pattern: '**/.npmrc', why: 'package manager settings (scripts, registries, tokens)'},
  {pattern: '**/.yarnrc', why: 'package manager settings'},
  {pattern: '**/.yarnrc.yml', why: 'yarnPath runs any file as yarn'},
  {pattern: '.yarn/releases/', why: 'the yarn that runs'},
  {pattern: '.yarn/plugins/', why: 'yarn plugins run on install'},
  {pattern: '**/.pnpmfile.cjs', why: 'pnpm hooks run on install'},
  {pattern: '**/.pnpmfile.mjs', why: 'pnpm hooks run on install'},
  {pattern: '**/bunfig.toml', why: 'package manager settings'},
  {pattern: '.tool-versions', why: 'tool versions downloaded and run'},
  {pattern: 'mise.toml', why: 'tool versions, tasks and environment'},
  {pattern: '.mise.toml', why: 'tool versions, tasks and environment'},
  {pattern: 'mise.local.toml', why: 'tool versions, tasks and environment'},
  {pattern: '.mise/', why: 'tool versions, tasks and environment'},
  {pattern: '.config/mise/', why: 'tool versions, tasks and environment'},
  {pattern: 'rust-toolchain', why: 'the toolchain rustup runs'},
  {pattern: 'rust-toolchain.toml', why: 'the toolchain rustup runs'},
  {pattern: 'Justfile', why: 'recipes run by just'},
  {pattern: '.justfile', why: 'recipes run by just'},
  {pattern: '.vscode/', why: 'editor tasks and settings run on the host'},
  {pattern: '.idea/', why: 'editor run configurations'},
  {pattern: '.zed/', why: 'editor tasks and settings'},
  {pattern: '.cursor/', why: 'agent and editor configuration'},
  {pattern: '.devcontainer/', why: 'container definitions run on the host'},
  {pattern: '.mcp.json', why: 'MCP servers an agent starts'},
  {pattern: '.codex/', why: 'agent configuration'},
  {pattern: '.claude/', why: 'agent configuration'},
  {pattern: '.gemini/', why: 'agent configuration'},
  {pattern: '.opencode/', why: 'agent configuration'},
  {pattern: 'opencode.json', why: 'agent configuration'},
  {pattern: '**/AGENTS.md', why: 'instructions agents follow'},
  {pattern: '**/CLAUDE.md', why: 'instructions agents follow'},
  {pattern: '**/GEMINI.md', why: 'instructions agents follow'},
  {pattern: '.cursorrules', why: 'instructions agents follow'},
  {pattern: '.github/copilot-instructions.md', why: 'instructions agents follow'},
  {pattern: '**/.envrc', why: 'direnv runs it on cd'},
  {pattern: '**/.bashrc', why: 'a shell rc file'},
  {pattern: '**/.bash_profile', why: 'a shell rc file'},
  {pattern: '**/.bash_login', why: 'a shell rc file'},
  {pattern: '**/.profile', why: 'a shell rc file'},
  {pattern: '**/.zshrc', why: 'a shell rc file'},
  {pattern: '**/.zshenv', why: 'a shell rc file'},
  {pattern: '**/.zprofile', why: 'a shell rc file'},
]

/**
 * Why `path` (relative, `/`-separated) is risky by its name, or undefined. A
 * pattern ending in `/` is a directory at the repository root; one starting
 * with two stars and a slash is a file of that name anywhere; anything else is
 * one file at the root. Case is ignored.
 */
export function riskyReason(path: string): string | undefined {
  const lower = path.toLowerCase()
  for (const {pattern, why} of RISKY_PATHS) {
    const wanted = pattern.toLowerCase()
    if (wanted.startsWith('**/')) {
      if (lower.split('/').at(-1) === wanted.slice(3)) return why
    } else if (wanted.endsWith('/') ? lower.startsWith(wanted) : lower === wanted) {
      return why
    }
  }
  return undefined
}

/** A changed path as the risk check needs it: what the sandbox has there (null: deleted) and, for a symlink, its target. */
export interface RiskInput {
  path: string
  sandbox: {link?: string} | null
}

/** A change as the risk check reads it. */
export function riskInput(change: {path: string; sandbox: unknown; link?: string}): RiskInput {
  return {path: change.path, sandbox: change.sandbox ? {...(change.link === undefined ? {} : {link: change.link})} : null}
}

/** What the host has at a path now, without following symlinks. */
export type HostLookup = (path: string) => Promise<TreeEntry>

const GIT_DIR_MARKS = ['config', 'objects', 'refs']

/**
 * Why each changed path is risky: by its name (RISKY_PATHS); because it lies in
 * something git would take for a repository once written (a HEAD beside a
 * config, objects or refs: a shell prompt running git there runs that config's
 * fsmonitor or hooks); or, for a symlink, because it leads outside the
 * repository when followed through the tree as it will be.
 */
export async function assessRisks(changes: readonly RiskInput[], host: HostLookup): Promise<Map<string, string>> {
  const byPath = new Map(changes.map((change) => [change.path, change]))
  const lowerCased = new Set(changes.filter((change) => change.sandbox !== null).map((change) => change.path.toLowerCase()))
  const impliedDirs = new Set<string>()
  for (const change of changes) {
    if (change.sandbox === null) continue
    const parts = change.path.split('/')
    for (let i = 1; i < parts.length; i++) impliedDirs.add(parts.slice(0, i).join('/'))
  }
  const impliedLowerCased = new Set([...impliedDirs].map((dir) => dir.toLowerCase()))
  /** The tree as it will be once the changes are written. */
  const after = async (path: string): Promise<TreeEntry> => {
    const change = byPath.get(path)
    if (change?.sandbox) return change.sandbox.link === undefined ? 'other' : {symlink: change.sandbox.link}
    if (impliedDirs.has(path)) return 'directory'
    if (change) return undefined
    return host(path)
  }
  const inDir = (dir: string, name: string) => (dir === '' ? name : `${dir}/${name}`)
  const hasEntry = async (dir: string, name: string, want: 'file' | 'directory') => {
    const path = inDir(dir, name)
    if ((want === 'directory' ? impliedLowerCased : lowerCased).has(path.toLowerCase())) return true
    const found = await after(path)
    return want === 'directory' ? found === 'directory' : found === 'other'
  }
  const gitLike = new Map<string, boolean>()
  const looksLikeGitDir = async (dir: string): Promise<boolean> => {
    let known = gitLike.get(dir)
    if (known === undefined) {
      known = (await hasEntry(dir, 'HEAD', 'file')) && ((await hasEntry(dir, 'config', 'file')) || (await hasEntry(dir, 'objects', 'directory')) || (await hasEntry(dir, 'refs', 'directory')))
      gitLike.set(dir, known)
    }
    return known
  }

  const risks = new Map<string, string>()
  for (const change of changes) {
    const named = riskyReason(change.path)
    if (named) {
      risks.set(change.path, named)
      continue
    }
    const parts = change.path.split('/')
    for (let depth = parts.length - 1; depth >= 0; depth--) {
      const dir = parts.slice(0, depth).join('/')
      if (await looksLikeGitDir(dir)) {
        risks.set(change.path, `in ${dir === '' ? 'the top directory' : visibleName(dir)}, which git would take for a repository (HEAD with ${GIT_DIR_MARKS.join(', ')}): its config and hooks run`)
        break
      }
    }
    const link = change.sandbox?.link
    if (!risks.has(change.path) && link !== undefined && (await leadsOutside(parts, link, (partsOf) => after(partsOf.join('/'))))) {
      risks.set(change.path, `a symlink leading outside the repository (-> ${visibleName(link)})`)
    }
  }
  return risks
}
