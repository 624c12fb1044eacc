import {readFile, rename, stat, writeFile} from 'node:fs/promises'
import {isScalar, parseDocument, Scalar} from 'yaml'

import type {RegistrySettings} from '../config/schema.js'
import {CleanroomError} from '../errors/index.js'
import {compilePolicy} from '../policy/compile.js'
import {findPolicyFile, loadPolicy} from '../policy/load.js'
import {displayPath, YamlFile} from '../util/yaml-file.js'
import {registryAccess} from './access.js'
import {parseManifestDocument} from './manifest.js'
import {manifestReference, parseImageReference, repositoryName} from './reference.js'
import {RegistryClient} from './registry.js'

export interface ResolvedImage {
  /** `registry/repository@sha256:…`: what a policy pins. */
  ref: string
  digest: string
}

/**
 * Asks the registry which manifest a tag names, from the CLI (no daemon).
 * The digest is of the top-level manifest (the index, for a multi-platform
 * image), so the pin holds for every platform.
 */
export async function resolveImage(raw: string, registries: Readonly<Record<string, RegistrySettings>>, env: NodeJS.ProcessEnv = process.env): Promise<ResolvedImage> {
  const reference = parseImageReference(raw)
  const registry = new RegistryClient(reference, registryAccess(registries, reference.registry, env))
  try {
    const document = await registry.manifest(manifestReference(reference))
    parseManifestDocument(document.bytes, document.contentType, `${repositoryName(reference)}@${document.digest}`)
    return {ref: `${repositoryName(reference)}@${document.digest}`, digest: document.digest}
  } finally {
    registry.close()
  }
}

export interface BumpedPolicy {
  path: string
  previous: string | undefined
  ref: string
}

/**
 * Writes `pinned` as `sandbox.image.ref` of the policy found from `dir`. An
 * existing value is replaced where it stands (same quoting), so every comment
 * and the layout stay as they are; a policy without one gets it added. The
 * result must still compile, or nothing is written.
 */
export async function bumpPolicyImage(dir: string, pinned: string): Promise<BumpedPolicy> {
  const path = await findPolicyFile(dir)
  if (path === undefined) {
    throw new CleanroomError('policy_not_found', `no cleanroom.yaml (or .buildkite/cleanroom.yaml) in ${dir} or above it up to the git root`, {
      suggestions: ['Create one with: cleanroom policy init'],
    })
  }
  const text = await readFile(path, 'utf8')
  const doc = parseDocument(text, {keepSourceTokens: true})
  const node = doc.getIn(['sandbox', 'image', 'ref'], true)
  let updated: string
  let previous: string | undefined
  if (isScalar(node) && node.range) {
    previous = String(node.value)
    updated = text.slice(0, node.range[0]) + scalarText(pinned, node.type) + text.slice(node.range[1])
  } else {
    doc.setIn(['sandbox', 'image', 'ref'], pinned)
    updated = doc.toString()
  }
  const policy = compilePolicy(new YamlFile(displayPath(path), updated))
  if (policy.image_ref !== pinned) throw new CleanroomError('policy_invalid', `the rewritten policy pins ${policy.image_ref ?? 'no image'} instead of ${pinned}; ${displayPath(path)} was left as it was`)
  const temp = `${path}.cleanroom-${process.pid}`
  await writeFile(temp, updated, {mode: (await stat(path)).mode & 0o777})
  await rename(temp, path)
  return {path, previous, ref: pinned}
}

/** The new value written the way the old one was: double-quoted, single-quoted or plain. */
function scalarText(value: string, type: Scalar.Type | undefined): string {
  if (type === Scalar.QUOTE_DOUBLE) return JSON.stringify(value)
  if (type === Scalar.QUOTE_SINGLE) return `'${value}'`
  return value
}

/** What `image bump-ref` resolves when given nothing: the repository the policy pins now, at its `latest` tag. */
export async function defaultBumpSource(dir: string): Promise<string> {
  const {policy} = await loadPolicy(dir)
  if (policy.image_ref === undefined) {
    throw new CleanroomError('usage', 'the policy pins no image yet, so there is no repository to bump', {
      suggestions: ['Name the image to pin: cleanroom image bump-ref registry/repository:tag'],
    })
  }
  return `${policy.image_ref.slice(0, policy.image_ref.lastIndexOf('@'))}:latest`
}

/** The image the repository's policy pins (what `image prune` keeps); an invalid policy stops the prune. */
export async function policyImagePins(dir: string): Promise<string[]> {
  const {policy} = await loadPolicy(dir)
  return policy.image_ref === undefined ? [] : [policy.image_ref]
}
