#!/usr/bin/env node
import {launch} from '../dist/fast/index.js'

// `--version` and plain `exec … -- cmd` lines start without loading oclif: src/launch/, bundled into dist/fast/.
if (!(await launch(process.argv.slice(2)))) {
  const {execute} = await import('@oclif/core')
  await execute({dir: import.meta.url})
}
