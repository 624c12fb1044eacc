import {Flags} from '@oclif/core'

import {loadAgentRegistry} from '../agents/load.js'
import {BaseCommand} from '../base-command.js'
import {type DoctorReport, runDoctor} from '../doctor/checks.js'
import {policyDirFlag} from '../policy/flags.js'

const MARK = {pass: 'ok  ', warn: 'warn', fail: 'FAIL'} as const

export default class Doctor extends BaseCommand {
  static override summary = 'Check that this machine can run sandboxes, and say how to fix what is missing'
  static override examples = ['<%= config.bin %> doctor', '<%= config.bin %> doctor --json']
  static override enableJsonFlag = true
  static override flags = {
    chdir: policyDirFlag,
    host: Flags.string({summary: 'Daemon address to check', helpValue: 'unix:///path'}),
  }

  async run(): Promise<DoctorReport> {
    const {flags} = await this.parse(Doctor)
    // A broken runtime config is the runtime config check's to report; agents are then left out.
    const agents = await loadAgentRegistry(this.config).catch(() => undefined)
    const report = await runDoctor({dir: flags.chdir ?? process.cwd(), host: flags.host, version: this.config.version, ...(agents && {agents})})
    for (const check of report.checks) {
      this.log(`${MARK[check.status]}  ${check.name}: ${check.detail}`)
      if (check.fix && check.status !== 'pass') this.log(`      fix: ${check.fix}`)
    }
    for (const [backend, capabilities] of Object.entries(report.capabilities)) {
      const list = Object.entries(capabilities).map(([name, has]) => `${name}=${has ? 'yes' : 'no'}`)
      this.log(`capabilities of ${backend}: ${list.join(', ')}`)
    }
    if (!report.ok) process.exitCode = 1
    return report
  }
}
