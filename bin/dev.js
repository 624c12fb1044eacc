#!/usr/bin/env node
// Runs the CLI from its TypeScript sources (oclif's development mode), for cleanroom's own
// development. Installed plugins are vetted as bin/run.js does it: src/plugins/load.ts.
import {execute, handle} from '@oclif/core'
import {register} from 'tsx/esm/api'

process.env.NODE_ENV = 'development'
register()
const {loadCliConfig} = await import('../src/plugins/load.ts')
const config = await loadCliConfig(import.meta.url).catch(handle)
if (config) await execute({development: true, dir: import.meta.url, loadOptions: config})
