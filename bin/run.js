#!/usr/bin/env node
// `--version` and plain `exec … -- cmd` lines start without loading oclif: src/launch/, bundled into
// dist/fast/ by `npm run build`. A build without that bundle (tsc alone) still runs, through oclif.
const fast = await import('../dist/fast/index.js').catch((error) => {
  if (error?.code === 'ERR_MODULE_NOT_FOUND' && String(error.url).endsWith('/dist/fast/index.js')) return undefined
  throw error
})

if (!(await fast?.launch(process.argv.slice(2)))) {
  const {execute} = await import('@oclif/core')
  await execute({dir: import.meta.url})
}
