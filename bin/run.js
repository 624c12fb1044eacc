#!/usr/bin/env node
// `--version` and plain `exec … -- cmd` lines start without loading oclif: src/launch/, bundled into
// dist/fast/ by `npm run build`. A build without that bundle (tsc alone) still runs, through oclif.
const fast = await import('../dist/fast/index.js').catch((error) => {
  if (error?.code === 'ERR_MODULE_NOT_FOUND' && String(error.url).endsWith('/dist/fast/index.js')) return undefined
  throw error
})

if (!(await fast?.launch(process.argv.slice(2)))) {
  const {execute, handle} = await import('@oclif/core')
  // oclif gets only the installed plugins that are data or whose code was allowed: src/plugins/load.ts.
  const {loadCliConfig} = await import('../dist/plugins/load.js')
  const config = await loadCliConfig(import.meta.url).catch(handle)
  if (config) await execute({dir: import.meta.url, loadOptions: config})
}
