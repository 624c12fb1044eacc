import {createRequire} from 'node:module'
import {pathToFileURL} from 'node:url'
import {Worker, type WorkerOptions} from 'node:worker_threads'

import {CleanroomError, type ErrorCode} from '../errors/index.js'
import {deepFreeze} from '../util/deep-freeze.js'
import type {AllowRuleInput, CompiledPolicy} from './schema.js'

/** Work for the policy worker: a policy file's bytes, or a compiled policy a client sent; either with agent hosts to add. */
export type PolicyJob =
  | {id: number; kind: 'file'; display: string; bytes: Uint8Array; extraAllow: AllowRuleInput[]}
  | {id: number; kind: 'compiled'; policy: unknown; extraAllow: AllowRuleInput[]}

export type PolicyAnswer =
  | {id: number; policy: CompiledPolicy}
  | {id: number; error: {code: ErrorCode; message: string; details?: unknown; suggestions: string[]}}
  /** Sent once, when the thread has loaded the compiler and takes jobs. */
  | {ready: true}

interface Pending {
  job: PolicyJob
  resolve: (policy: CompiledPolicy) => void
  reject: (error: CleanroomError) => void
}

export interface PolicyWorkerOptions {
  /**
   * A job running longer than this is stopped (the worker with it) and answered
   * policy_invalid. Bounded parsing keeps every job far below it (well under a
   * second on an idle machine); it is a wall for a parse that escaped the bounds,
   * long enough that a busy machine never trips it with a legal policy.
   */
  timeoutMs?: number
  /** The worker's heap; a job that needs more is answered policy_invalid. */
  maxHeapMb?: number
  /** After a policy file at least this big the thread is replaced, giving back the heap it grew. */
  recycleAfterBytes?: number
}

/**
 * One long-lived worker thread that compiles the policies of sandbox create
 * requests, a job at a time, off the daemon's event loop. Started on first use
 * (or by start()), kept for the next job, and unref'd so it never keeps a
 * process alive. Parsing is bounded (see util/yaml-bounds.ts); the timeout and
 * heap limit are a second wall should a policy get past those bounds anyway.
 */
export class PolicyWorker {
  private worker: Worker | undefined
  private readonly queue: Pending[] = []
  private running: (Pending & {timer?: NodeJS.Timeout}) | undefined
  /** Whether the thread has loaded the compiler: a job's time starts then, not while the thread starts. */
  private ready = false
  private nextId = 1
  private readonly timeoutMs: number
  private readonly maxHeapMb: number
  private readonly recycleAfterBytes: number

  constructor(options: PolicyWorkerOptions = {}) {
    this.timeoutMs = options.timeoutMs ?? 30_000
    this.maxHeapMb = options.maxHeapMb ?? 256
    this.recycleAfterBytes = options.recycleAfterBytes ?? 256 << 10
  }

  /** Starts the thread now, so the first create does not wait for it. */
  start(): void {
    this.thread()
  }

  /** Compiles a policy file's bytes (`display` names the file in messages), then adds `extraAllow`. */
  compileFile(display: string, bytes: Uint8Array, extraAllow: AllowRuleInput[] = []): Promise<CompiledPolicy> {
    return this.submit({id: this.nextId++, kind: 'file', display, bytes, extraAllow})
  }

  /** Re-validates a compiled policy from a client, then adds `extraAllow`. */
  recompile(policy: unknown, extraAllow: AllowRuleInput[] = []): Promise<CompiledPolicy> {
    return this.submit({id: this.nextId++, kind: 'compiled', policy, extraAllow})
  }

  /** Stops the thread; the job it runs and those still queued are refused. */
  async close(): Promise<void> {
    const stopped = () => new CleanroomError('backend_unavailable', 'the policy worker was stopped')
    if (this.running) {
      clearTimeout(this.running.timer)
      this.running.reject(stopped())
      this.running = undefined
    }
    for (const pending of this.queue.splice(0)) pending.reject(stopped())
    await this.stopThread()
  }

  private submit(job: PolicyJob): Promise<CompiledPolicy> {
    return new Promise((resolve, reject) => {
      this.queue.push({job, resolve, reject})
      this.pump()
    })
  }

  private pump(): void {
    if (this.running !== undefined) return
    const next = this.queue.shift()
    if (next === undefined) return
    const worker = this.thread()
    worker.ref()
    this.running = next
    if (this.ready) this.startClock()
    worker.postMessage(next.job)
  }

  private startClock(): void {
    if (this.running === undefined || this.running.timer !== undefined) return
    this.running.timer = setTimeout(() => this.fail(`checking it took longer than ${this.timeoutMs / 1000} s`), this.timeoutMs)
  }

  private thread(): Worker {
    if (this.worker) return this.worker
    const options = {resourceLimits: {maxOldGenerationSizeMb: this.maxHeapMb}}
    const worker = import.meta.url.endsWith('.ts') ? sourceWorker(options) : new Worker(new URL('./worker.js', import.meta.url), options)
    this.ready = false
    worker.on('message', (answer: PolicyAnswer) => {
      if (this.worker !== worker) return
      if ('ready' in answer) {
        this.ready = true
        this.startClock()
      } else {
        this.answered(worker, answer)
      }
    })
    worker.on('error', (error) => {
      if (this.worker === worker) this.fail(error.message.includes('out of memory') ? `checking it needed more than ${this.maxHeapMb} MiB of memory` : `the policy checker failed: ${error.message}`)
    })
    worker.on('exit', () => {
      if (this.worker !== worker) return
      this.worker = undefined
      if (this.running) this.fail('the policy checker stopped')
    })
    // After the listeners: adding a 'message' listener refs the worker's port again.
    worker.unref()
    this.worker = worker
    return worker
  }

  private answered(worker: Worker, answer: Exclude<PolicyAnswer, {ready: true}>): void {
    const running = this.running
    if (running === undefined || running.job.id !== answer.id) return
    clearTimeout(running.timer)
    this.running = undefined
    worker.unref()
    if ('policy' in answer) running.resolve(deepFreeze(answer.policy))
    else running.reject(new CleanroomError(answer.error.code, answer.error.message, {details: answer.error.details, suggestions: answer.error.suggestions}))
    if (running.job.kind === 'file' && running.job.bytes.length >= this.recycleAfterBytes) {
      void this.stopThread()
      this.start()
    }
    this.pump()
  }

  /** Answers the running job policy_invalid and replaces the thread, which may be stuck in it. */
  private fail(why: string): void {
    const running = this.running
    if (running === undefined) return
    clearTimeout(running.timer)
    this.running = undefined
    const what = running.job.kind === 'file' ? `the policy ${running.job.display}` : 'the policy'
    running.reject(
      new CleanroomError('policy_invalid', `cannot check ${what}: ${why}`, {
        suggestions: ['Make the policy smaller (docs/policy.md, "Limits"), then check it with: cleanroom policy validate'],
      }),
    )
    void this.stopThread()
    this.pump()
  }

  private async stopThread(): Promise<void> {
    const worker = this.worker
    this.worker = undefined
    if (worker) await worker.terminate()
  }
}

/**
 * The worker when this module runs from source under tsx (tests, bench): tsx
 * registers its loader in the main thread only, so the worker registers it
 * itself before loading worker.ts.
 */
function sourceWorker(options: WorkerOptions): Worker {
  const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx/esm/api')).href
  const entry = new URL('./worker.ts', import.meta.url).href
  return new Worker(`import(${JSON.stringify(tsx)}).then((api) => api.register()).then(() => import(${JSON.stringify(entry)}))`, {...options, eval: true})
}

/** The daemon's policy worker. */
export const policyWorker = new PolicyWorker()
