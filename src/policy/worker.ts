import {parentPort} from 'node:worker_threads'

import {isCleanroomError} from '../errors/index.js'
import {compilePolicyBytes, recompilePolicy, withAdditionalAllow} from './compile.js'
import type {PolicyAnswer, PolicyJob} from './policy-worker.js'

/**
 * The daemon's policy worker thread (started by policy-worker.ts): parses and
 * compiles the policies of sandbox create requests, one at a time, so that a
 * large or hostile policy costs this thread's time and never the time of the
 * daemon's event loop.
 */
const port = parentPort
if (port === null) throw new Error('policy worker: not started as a worker thread')

port.on('message', (job: PolicyJob) => {
  let answer: PolicyAnswer
  try {
    const compiled = job.kind === 'file' ? compilePolicyBytes(job.display, job.bytes) : recompilePolicy(job.policy)
    answer = {id: job.id, policy: job.extraAllow.length > 0 ? withAdditionalAllow(compiled, job.extraAllow) : compiled}
  } catch (error) {
    answer = isCleanroomError(error)
      ? {id: job.id, error: {code: error.code, message: error.message, details: error.details, suggestions: error.suggestions}}
      : {id: job.id, error: {code: 'policy_invalid', message: `cannot check the policy: ${error instanceof Error ? error.message : String(error)}`, suggestions: []}}
  }
  port.postMessage(answer)
})
port.postMessage({ready: true} satisfies PolicyAnswer)
