import {CleanroomError} from '../errors/index.js'

interface Build<T, E> {
  result: Promise<T>
  listeners: Set<(event: E) => void>
  controller: AbortController
  waiters: number
}

/**
 * Runs each piece of work (an image's unpack, keyed by its id) once however
 * many ask for it at the same time: later callers wait for the first one's
 * result and get its events. A caller that gives up (its client went away)
 * stops waiting; when the last one has, the work is aborted.
 */
export class SharedBuilds<T, E> {
  private readonly builds = new Map<string, Build<T, E>>()

  run(key: string, start: (signal: AbortSignal, emit: (event: E) => void) => Promise<T>, onEvent: (event: E) => void, signal?: AbortSignal): Promise<T> {
    let build = this.builds.get(key)
    if (!build) {
      const controller = new AbortController()
      const listeners = new Set<(event: E) => void>()
      const emit = (event: E) => {
        for (const listener of listeners) listener(event)
      }
      const created: Build<T, E> = {result: Promise.resolve().then(() => start(controller.signal, emit)), listeners, controller, waiters: 0}
      created.result
        .finally(() => {
          if (this.builds.get(key) === created) this.builds.delete(key)
        })
        .catch(() => undefined)
      this.builds.set(key, created)
      build = created
    }
    return this.wait(build, onEvent, signal)
  }

  private wait(build: Build<T, E>, onEvent: (event: E) => void, signal: AbortSignal | undefined): Promise<T> {
    build.waiters++
    build.listeners.add(onEvent)
    return new Promise<T>((resolve, reject) => {
      const leave = () => {
        build.listeners.delete(onEvent)
        signal?.removeEventListener('abort', abandon)
      }
      const abandon = () => {
        leave()
        if (--build.waiters === 0) {
          // A caller arriving now starts afresh instead of joining work being torn down.
          for (const [key, value] of this.builds) if (value === build) this.builds.delete(key)
          build.controller.abort(new CleanroomError('image_invalid', 'the pull was cancelled: every client waiting for it went away'))
        }
        reject(signal?.reason ?? new Error('cancelled'))
      }
      if (signal?.aborted) return abandon()
      signal?.addEventListener('abort', abandon, {once: true})
      build.result.then(
        (value) => {
          leave()
          resolve(value)
        },
        (error: unknown) => {
          leave()
          reject(error)
        },
      )
    })
  }
}
