#!/usr/bin/env node
// `--version` and plain `exec … -- cmd` lines start without loading oclif: src/launch/, bundled into
// dist/fast/ by `npm run build`. A build without that bundle (tsc alone) still runs, through oclif
// (then `cleanroom agent <name> --help` shows cleanroom's help instead of the agent's).
const fast = await import('../dist/fast/index.js').catch((error) => {
  if (error?.code === 'ERR_MODULE_NOT_FOUND' && String(error.url).endsWith('/dist/fast/index.js')) return undefined
  throw error
})

const argv = process.argv.slice(2)
if (!(await fast?.launch(argv))) {
  const {execute, handle} = await import('@oclif/core')
  // oclif gets only the installed plugins that are data or whose code was allowed: src/plugins/load.ts.
  const {loadCliConfig} = await import('../dist/plugins/load.js')
  const config = await loadCliConfig(import.meta.url).catch(handle)
  if (config) await execute({dir: import.meta.url, args: fast?.oclifArgv(argv) ?? argv, loadOptions: config})
}
