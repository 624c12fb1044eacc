import {lstat, readdir, readFile, rm, stat} from 'node:fs/promises'
import {join} from 'node:path'

import {LAUNCH_RECORD} from '../linux-ns/launch.js'
import {killLaunchGroup} from '../linux-ns/terminate.js'
import {SANDBOX_ID_PATTERN} from '../../ids.js'
import {HOST_UID_RANGE, releaseHostUid} from '../linux-ns/uids.js'
import {recordedProcessRuns} from './launch.js'
import {RUN_ROOT} from './provision.js'
import {CONTAINER_ID, rootFlags, runscCommand} from './runsc.js'
import type {GvisorRuntime} from './runtime.js'
import {killSandbox, killUid} from './terminate.js'

/**
 * Ends a sandbox and gives back what it held: its processes, runsc's record, its run dir
 * and its host uid. With its runtime record that is `killSandbox`; without one (a create
 * cut short) the launch record in the state dir names the launch's process group and its
 * run dir, and the state dir's group is the uid claimed for it, which only that sandbox's
 * gVisor kernel and gofer run as.
 */
export async function reclaimSandbox(runsc: string, stateDir: string, runtime: GvisorRuntime | undefined): Promise<void> {
  if (runtime) {
    await killSandbox(runsc, runtime)
    await releaseHostUid(runtime.host_uid, runtime.state_dir)
    return
  }
  const runDir = await launchRunDir(stateDir)
  if (runDir === undefined) return
  await killLaunchGroup(stateDir)
  await runscCommand(runsc, [...rootFlags({run_dir: runDir}), 'delete', '--force', CONTAINER_ID])
  const hostUid = (await stat(stateDir).catch(() => undefined))?.gid
  if (hostUid !== undefined && hostUid >= HOST_UID_RANGE.first && hostUid <= HOST_UID_RANGE.last) {
    await killUid(hostUid)
    await releaseHostUid(hostUid, stateDir)
  }
  await rm(runDir, {recursive: true, force: true})
}

/** Older than any create takes (runsc's ready wait is 30 s): a younger run dir, or copy of nsinit, may be a create's under way. */
export const SWEEP_AFTER_MS = 10 * 60_000

/**
 * Removes the run dirs of sandboxes that are gone (a daemon killed between making one
 * and starting runsc, in the middle of a removal, or while its sandbox died): runsc
 * holds no container in them, or one of which neither the gVisor kernel nor the gofer
 * it recorded runs (runsc itself still lists such a container as running), and they
 * are older than any create. A dir whose runsc root or record cannot be read is kept.
 */
export async function sweepRunDirs(runsc: string, now = Date.now()): Promise<string[]> {
  const removed: string[] = []
  for (const name of await readdir(RUN_ROOT).catch(() => [])) {
    const dir = `${RUN_ROOT}/${name}`
    const facts = await lstat(dir).catch(() => undefined)
    if (!SANDBOX_ID_PATTERN.test(name) || !facts?.isDirectory() || now - facts.mtimeMs < SWEEP_AFTER_MS) continue
    const listed = await runscCommand(runsc, [...rootFlags({run_dir: dir}), 'list', '--format=json'])
    const containers = listed.ok ? containerCount(listed.stdout) : undefined
    if (containers === undefined || (containers > 0 && (await recordedProcessRuns(dir)))) continue
    if (containers > 0) await runscCommand(runsc, [...rootFlags({run_dir: dir}), 'delete', '--force', CONTAINER_ID])
    await rm(dir, {recursive: true, force: true})
    removed.push(dir)
  }
  return removed
}

/** How many containers `runsc list --format=json` names (it prints null for none); undefined for anything else. */
function containerCount(json: string): number | undefined {
  try {
    const listed = JSON.parse(json) as unknown
    if (listed === null) return 0
    return Array.isArray(listed) ? listed.length : undefined
  } catch {
    return undefined
  }
}

/** The run dir a gvisor launch recorded; undefined for a state dir no gvisor launch wrote (another backend's). */
async function launchRunDir(stateDir: string): Promise<string | undefined> {
  try {
    const record = JSON.parse(await readFile(join(stateDir, LAUNCH_RECORD), 'utf8')) as {run_dir?: unknown}
    const runDir = record.run_dir
    // Only a dir of our own run root is ever removed.
    return typeof runDir === 'string' && runDir.startsWith(`${RUN_ROOT}/`) && !runDir.slice(RUN_ROOT.length + 1).includes('/') ? runDir : undefined
  } catch {
    return undefined
  }
}

/** What `runsc ps` shows for cleanroom-nsinit: the command's name, cut to 15 bytes as the kernel keeps it. */
const OWN_COMMAND = 'cleanroom-nsinit'.slice(0, 15)

/**
 * Whether anything but cleanroom's own processes runs inside: the init, the egress
 * forwarders and each exec's `nsinit run` are all cleanroom-nsinit; any other
 * command is a workload, also one an exec left behind.
 */
export async function hasWorkload(runsc: string, runtime: GvisorRuntime): Promise<boolean> {
  const listed = await runscCommand(runsc, [...rootFlags(runtime), 'ps', CONTAINER_ID])
  if (!listed.ok) return false
  // A table: UID PID PPID C TTY STIME TIME CMD, the header first.
  const commands = listed.stdout.trim().split('\n').slice(1).map((line) => line.trim().split(/\s+/).at(-1))
  return commands.some((command) => command !== OWN_COMMAND)
}
