/**
 * `npm run build:prebuilt` (part of `npm run build`): the static cleanroom-nsinit
 * for every platform the package ships one for. This machine's own platform must
 * build; another platform whose cross compiler is not installed is skipped with
 * a warning, so a clone builds without cross compilers, and `npm run
 * release:check` refuses a package that lacks it.
 */
import {buildPrebuilt, PREBUILT_TARGETS} from './prebuilt.js'

let failed = false
for (const result of await Promise.all(PREBUILT_TARGETS.map((target) => buildPrebuilt(target)))) {
  if ('built' in result) continue
  if ('failed' in result) {
    process.stderr.write(`error: the prebuilt cleanroom-nsinit for ${result.target.platform} was not built: ${result.failed}\n`)
    failed = true
    continue
  }
  const what = `the prebuilt cleanroom-nsinit for ${result.target.platform} was not built: ${result.missingCompiler} is not installed (${result.install})`
  if (result.native) {
    process.stderr.write(`error: ${what}\n`)
    failed = true
  } else {
    process.stderr.write(`warning: ${what}; a package without it fails npm run release:check\n`)
  }
}
if (failed) process.exitCode = 1
