import {CleanroomError} from '../errors/index.js'

const UNITS: Record<string, number> = {s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000}

/** `7d`, `12h`, `30m`, `90s`, `2w` or `0` as milliseconds; anything else is a usage error naming `flag`. */
export function parseDuration(text: string, flag: string): number {
  const match = /^(\d{1,6})([smhdw])?$/.exec(text.trim())
  if (!match || (match[2] === undefined && match[1] !== '0')) {
    throw new CleanroomError('usage', `${flag} ${JSON.stringify(text)} is not a duration`, {suggestions: [`Use a number and a unit (s, m, h, d, w), e.g. ${flag} 7d, or ${flag} 0 for everything`]})
  }
  return Number(match[1]) * (match[2] === undefined ? 0 : UNITS[match[2]]!)
}

/** A duration as a person says it: the largest whole unit (7d, 36h, 90s). */
export function formatDuration(ms: number): string {
  for (const unit of ['d', 'h', 'm', 's']) if (ms >= UNITS[unit]! && ms % UNITS[unit]! === 0) return `${ms / UNITS[unit]!}${unit}`
  return ms === 0 ? '0' : `${Math.round(ms / 1000)}s`
}
