/** The signals a user or a supervisor stops a CLI with. */
const STOP_SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP']

/**
 * Runs `step` with SIGINT, SIGTERM and SIGHUP held: the first one received is
 * noted (`received()` tells the step, so it can stop where stopping is safe) and
 * raised again once the step is over, whatever its outcome. A write that must
 * land whole or not at all is never cut in the middle.
 */
export async function withStopSignalsHeld<T>(step: (received: () => NodeJS.Signals | undefined) => Promise<T>): Promise<T> {
  let first: NodeJS.Signals | undefined
  const note = (signal: NodeJS.Signals) => {
    first ??= signal
  }
  for (const signal of STOP_SIGNALS) process.on(signal, note)
  try {
    return await step(() => first)
  } finally {
    for (const signal of STOP_SIGNALS) process.off(signal, note)
    if (first) process.kill(process.pid, first)
  }
}
