/**
 * Paths whose contents run code on the host or steer an agent or CI: a sandbox's
 * change to one of them is only written back with --force (or an interactive yes).
 * This list is the one place they are named; docs/api.md repeats it.
 */
export const RISKY_PATHS: readonly {pattern: string; why: string}[] = [
  {pattern: '.git/', why: 'git hooks and config run on the host'},
  {pattern: '.github/workflows/', why: 'CI workflows run with the repository secrets'},
  {pattern: '.github/actions/', why: 'CI actions run with the repository secrets'},
  {pattern: '.buildkite/', why: 'CI pipelines'},
  {pattern: '.circleci/', why: 'CI pipelines'},
  {pattern: '.gitlab-ci.yml', why: 'CI pipelines'},
  {pattern: '.husky/', why: 'git hooks run on the host'},
  {pattern: '.pre-commit-config.yaml', why: 'git hooks run on the host'},
  {pattern: 'cleanroom.yaml', why: "the repository's sandbox policy"},
  {pattern: '.vscode/', why: 'editor tasks and settings run on the host'},
  {pattern: '.devcontainer/', why: 'container definitions run on the host'},
  {pattern: '.codex/', why: 'agent configuration'},
  {pattern: '.claude/', why: 'agent configuration'},
  {pattern: '.gemini/', why: 'agent configuration'},
  {pattern: '.opencode/', why: 'agent configuration'},
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
 * Why `path` (relative, `/`-separated) is risky, or undefined. A pattern ending in `/`
 * is a directory at the repository root; one starting with two stars and a slash is a
 * file of that name anywhere; anything else is one file at the root.
 */
export function riskyReason(path: string): string | undefined {
  for (const {pattern, why} of RISKY_PATHS) {
    if (pattern.startsWith('**/')) {
      if (path.split('/').at(-1) === pattern.slice(3)) return why
    } else if (pattern.endsWith('/') ? path.startsWith(pattern) : path === pattern) {
      return why
    }
  }
  return undefined
}
