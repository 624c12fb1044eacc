/**
 * `npm run release:check` (a build, then this; also run before `npm publish`):
 * packs the package as npm would publish it, refuses it when it lacks what
 * `cleanroom` needs or holds anything else (scripts/package-contents.ts), or when
 * a prebuilt helper is not a static ELF for its platform, and prints its size.
 */
import {manifestCommandFiles, packageContentProblems, packProject, type PackResult} from './package-contents.js'
import {PREBUILT_TARGETS, prebuiltFile, prebuiltProblems} from './prebuilt.js'

const pack = await packProject({dryRun: true})
const problems = packageContentProblems(
  pack.files.map((file) => file.path),
  await manifestCommandFiles(),
)
for (const target of PREBUILT_TARGETS) problems.push(...(await prebuiltProblems(prebuiltFile(target), target)))

process.stdout.write(`${pack.name}@${pack.version}: ${pack.filename}, ${kB(pack.size)} packed, ${kB(pack.unpackedSize)} unpacked, ${pack.entryCount} files\n`)
for (const [part, bytes] of sizeByPart(pack.files)) process.stdout.write(`  ${kB(bytes).padStart(10)}  ${part}\n`)
if (problems.length > 0) {
  process.stderr.write(`release check failed:\n${problems.map((problem) => `  ${problem}\n`).join('')}`)
  process.exitCode = 1
} else {
  process.stdout.write(`ok: nothing missing, nothing extra; cleanroom-nsinit static for ${PREBUILT_TARGETS.map((target) => target.platform).join(', ')}\n`)
}

/** Unpacked bytes by the parts a reader cares about: each prebuilt helper, the bundled plugins, the rest of dist/. */
function sizeByPart(files: PackResult['files']): [string, number][] {
  const parts = new Map<string, number>()
  for (const file of files) {
    const part = file.path.startsWith('dist/libexec/')
      ? file.path
      : file.path.startsWith('node_modules/')
        ? 'node_modules/@cleanroom/agent-* (bundled)'
        : file.path.startsWith('dist/')
          ? 'dist/**/*.js'
          : file.path
    parts.set(part, (parts.get(part) ?? 0) + file.size)
  }
  return [...parts].sort((a, b) => b[1] - a[1])
}

function kB(bytes: number): string {
  return `${(bytes / 1000).toFixed(1)} kB`
}
