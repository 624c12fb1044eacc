import {CleanroomError} from '../../../errors/index.js'
import type {ProvisionImage} from '../../backend.js'
import {planImageSandbox} from '../../image-root.js'
import {isStaticallyLinked} from './nsinit-binary.js'
import type {ImageWorkload} from './runtime.js'

/** What a backend's provisionSandbox needs of an image: its root filesystem, the sandbox's accounts, and what every exec runs with. */
export interface LinuxNsImage {
  rootfs: string
  accounts: {passwd: string; group: string}
  workload: ImageWorkload
}

/** Each nsinit's answer, once: the file does not change while the daemon runs it. */
const staticHelpers = new Map<string, Promise<boolean>>()

/**
 * Reads the image's root filesystem and run settings for a new sandbox. nsinit is the
 * held command of an image sandbox (an image may have no shell), so it must be the
 * static kind the package ships: a dynamically linked one would look for its loader
 * and libraries in the image. `mountTargets`: where the backend mounts more of its own.
 */
export async function planImage(nsinit: string, image: ProvisionImage, hasWorkspace: boolean, mountTargets: readonly string[] = []): Promise<LinuxNsImage> {
  let isStatic = staticHelpers.get(nsinit)
  if (isStatic === undefined) {
    isStatic = isStaticallyLinked(nsinit)
    staticHelpers.set(nsinit, isStatic)
  }
  if (!(await isStatic)) {
    throw new CleanroomError('backend_unavailable', `sandboxes on an image need a statically linked cleanroom-nsinit, since it runs inside the image; ${nsinit} is linked dynamically`, {
      suggestions: [
        'Use the prebuilt helper of the package: remove dist/libexec/cleanroom-nsinit (npm run build:nsinit makes a dynamic one) and unset CLEANROOM_NSINIT',
        'Or build a static one: cc -O2 -static-pie -o cleanroom-nsinit src/sandbox/backends/linux-ns/*.c',
      ],
    })
  }
  const plan = await planImageSandbox(image, mountTargets)
  const workload: ImageWorkload = {id: image.id, uid: plan.user.uid, gid: plan.user.gid, user: plan.user.name, env: plan.env}
  // /workspace is where the repository is and commands run; an image's WorkingDir only stands in when there is none.
  if (!hasWorkspace && plan.workingDir !== undefined) workload.cwd = plan.workingDir
  return {rootfs: plan.rootfs, accounts: plan.accounts, workload}
}
