import {execa} from 'execa'

import {CleanroomError} from '../errors/index.js'
import type {WorkspaceChange} from './diff.js'
import {riskyReason} from './risky.js'

/** The patch of a sandbox's workspace and the directory it is to be applied to. */
export interface WorkspacePatch {
  sandboxId: string
  repo: string
  patch: string
  changes: WorkspaceChange[]
}

const GIT_APPLY_FAILURE = /^error: (?:patch failed: )?(.+?)(?::\d+)?: (patch does not apply|already exists in working directory|No such file or directory|does not exist in index|wrong type|does not match index|is beyond a symbolic link)$/

/**
 * Refuses, writing nothing, when the host changed a path after the sandbox did
 * (applying would undo the host's change) or when `git apply --check` fails.
 */
export async function checkWorkspacePatch(plan: WorkspacePatch): Promise<void> {
  const changedOnHost = plan.changes.filter((change) => change.conflict).map((change) => `${change.path} (changed on the host after the sandbox changed it)`)
  if (changedOnHost.length > 0) throw conflict(plan, changedOnHost)
  const check = await gitApply(plan.repo, plan.patch, ['--check'])
  if (check.exitCode !== 0) {
    const lines = check.stderr.split('\n').filter((line) => line.startsWith('error: '))
    const files = lines.flatMap((line) => {
      const match = GIT_APPLY_FAILURE.exec(line)
      return match ? [`${match[1]} (${match[2]})`] : []
    })
    throw conflict(plan, files.length > 0 ? [...new Set(files)] : lines.map((line) => line.slice('error: '.length)))
  }
}

/** The changes that need --force: see src/workspace/risky.ts. */
export function riskyChanges(plan: WorkspacePatch): string[] {
  return plan.changes.filter((change) => change.risky).map((change) => `${change.path} (${change.change}: ${riskyReason(change.path) ?? 'risky'})`)
}

export function riskyRefusal(plan: WorkspacePatch, risky: string[]): CleanroomError {
  return new CleanroomError(
    'workspace_risky_paths',
    `the sandbox changed paths that can run code on the host or steer CI and agents; nothing was applied:\n${risky.join('\n')}`,
    {
      details: {paths: plan.changes.filter((change) => change.risky).map((change) => change.path)},
      suggestions: [`Review them with: cleanroom workspace diff ${plan.sandboxId}`, `Then apply everything with: cleanroom workspace apply ${plan.sandboxId} --force`],
    },
  )
}

/** Writes the patch into the repository (checked first: call checkWorkspacePatch). */
export async function applyWorkspacePatch(plan: WorkspacePatch): Promise<void> {
  const result = await gitApply(plan.repo, plan.patch, [])
  if (result.exitCode !== 0) throw conflict(plan, result.stderr.split('\n').filter((line) => line !== ''))
}

function conflict(plan: WorkspacePatch, files: string[]): CleanroomError {
  return new CleanroomError('workspace_conflict', `the host has changes that conflict with the sandbox's in ${plan.repo}; nothing was applied:\n${files.join('\n')}`, {
    details: {files},
    suggestions: [
      'Commit, stash or undo your changes to those files, then apply again',
      `See the sandbox's changes with: cleanroom workspace diff ${plan.sandboxId}`,
    ],
  })
}

/**
 * `git apply` in the repository. Inside a git work tree git reads the patch's paths
 * from the top of the tree, so a workspace below it needs --directory.
 */
async function gitApply(repo: string, patch: string, extra: string[]): Promise<{exitCode: number; stderr: string}> {
  const prefix = await execa('git', ['rev-parse', '--show-prefix'], {cwd: repo, reject: false})
  const directory = prefix.exitCode === 0 && prefix.stdout.trim() !== '' ? [`--directory=${prefix.stdout.trim().replace(/\/$/, '')}`] : []
  const result = await execa('git', ['apply', '--whitespace=nowarn', ...directory, ...extra, '-'], {cwd: repo, input: patch, reject: false})
  return {exitCode: result.exitCode ?? 1, stderr: result.stderr}
}
