import {expect} from 'chai'

import {normalizeHeaders, patchedPaths, unquoteGitPath} from '../../src/workspace/patch.js'
import {riskyReason} from '../../src/workspace/risky.js'

const RAW = `diff --git b/new file b/new file
new file mode 100644
--- /dev/null
+++ b/new file
@@ -0,0 +1 @@
+x
diff --git a/gone a/gone
deleted file mode 100644
--- a/gone
+++ /dev/null
@@ -1 +0,0 @@
-y
diff --git a/run.sh b/run.sh
old mode 100644
new mode 100755
diff --git a/both b/both
old mode 100644
new mode 100755
index 1..2
--- a/both
+++ b/both
@@ -1 +1 @@
-a
+b
diff --git "b/\\303\\251t\\303\\251" "b/\\303\\251t\\303\\251"
new file mode 100644
diff --git a/link a/link
deleted file mode 100644
diff --git b/link b/link
new file mode 120000
`

describe('workspace patch headers and paths', () => {
  it('gives every block a/ and b/ sides, quoting kept', () => {
    const headers = normalizeHeaders(RAW).split('\n').filter((line) => line.startsWith('diff --git'))
    expect(headers).to.deep.equal([
      'diff --git a/new file b/new file',
      'diff --git a/gone b/gone',
      'diff --git a/run.sh b/run.sh',
      'diff --git a/both b/both',
      'diff --git "a/\\303\\251t\\303\\251" "b/\\303\\251t\\303\\251"',
      'diff --git a/link b/link',
      'diff --git a/link b/link',
    ])
  })

  it('classifies each path: added, deleted, mode only, modified, and a type change as modified', () => {
    expect(patchedPaths(normalizeHeaders(RAW))).to.deep.equal([
      {path: 'new file', change: 'added'},
      {path: 'gone', change: 'deleted'},
      {path: 'run.sh', change: 'mode'},
      {path: 'both', change: 'modified'},
      {path: 'été', change: 'added'},
      {path: 'link', change: 'modified'},
    ])
  })

  it('unquotes git C-style paths', () => {
    expect(unquoteGitPath('tab\\there \\"q\\" back\\\\slash')).to.equal('tab\there "q" back\\slash')
  })

  it('knows the risky paths', () => {
    for (const path of ['.github/workflows/ci.yml', '.buildkite/pipeline.yml', '.buildkite/cleanroom.yaml', 'cleanroom.yaml', 'sub/dir/.envrc', '.bashrc', '.claude/settings.json', '.vscode/tasks.json', '.git/hooks/pre-commit']) {
      expect(riskyReason(path), path).to.be.a('string')
    }
    for (const path of ['src/cleanroom.yaml', 'github/workflows/x', 'Makefile', 'docs/.github/workflows/x.yml', 'README.md']) expect(riskyReason(path), path).to.equal(undefined)
  })
})
