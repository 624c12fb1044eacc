import {expect} from 'chai'
import {readdirSync, readFileSync} from 'node:fs'
import {join} from 'node:path'

import {PROJECT_ROOT} from '../helpers/cli.js'

const FAST = join(PROJECT_ROOT, 'dist', 'fast')

/** What a bundled module loads before it runs: its static imports (`import … from "x"`, `import "x"`, `export … from "x"`), not `import("x")`. */
function staticImports(text: string): string[] {
  return [...text.matchAll(/^(?:import|export)\s+(?:[^"';]*?\sfrom\s*)?"([^"]+)";?/gm)].map((match) => match[1]!)
}

/** Every package a bundled module loads before it runs, through the chunks it imports. */
function packagesLoadedBy(entry: string): Set<string> {
  const seen = new Set<string>()
  const packages = new Set<string>()
  const visit = (file: string) => {
    if (seen.has(file)) return
    seen.add(file)
    for (const specifier of staticImports(readFileSync(join(FAST, file), 'utf8'))) {
      if (specifier.startsWith('./')) visit(specifier.slice(2))
      else if (!specifier.startsWith('node:')) packages.add(specifier)
    }
  }
  visit(entry)
  return packages
}

describe('the fast start path loads no package before the daemon is asked', () => {
  // Each of these costs more than Node's own start on these machines: yaml about 50 ms, tar-stream about 20, oclif far more.
  it('`cleanroom exec … -- cmd` loads only Node built-ins up to its first request (the YAML parser only for a config file that exists)', () => {
    const index = readFileSync(join(FAST, 'index.js'), 'utf8')
    const exec = /import\("\.\/(exec-[A-Z0-9]+\.js)"\)/.exec(index)?.[1]
    expect(exec, 'the exec chunk dist/fast/index.js imports').to.be.a('string')
    expect(readdirSync(FAST)).to.include(exec)
    expect([...packagesLoadedBy('index.js')]).to.deep.equal([])
    expect([...packagesLoadedBy(exec!)]).to.deep.equal([])
  })

  it('reads the imports esbuild writes, on one line or several, and not the dynamic ones', () => {
    const text = ['import { a } from "./chunk-A.js";', 'import {', '  b,', '  c', '} from "yaml";', 'import "node:fs";', 'export { d } from "tar-stream";', 'const e = await import("./late.js");', '  import("@oclif/core");'].join('\n')
    expect(staticImports(text)).to.deep.equal(['./chunk-A.js', 'yaml', 'node:fs', 'tar-stream'])
  })
})
