import {shellQuote} from '../agents/script.js'

const PLAIN_WORD = /^[\w@%+=:,./-]+$/

/** A command line a user can paste into a shell: words quoted only where the shell would change them. */
export function pasteable(words: readonly string[]): string {
  return words.map((word) => (PLAIN_WORD.test(word) ? word : shellQuote(word))).join(' ')
}
