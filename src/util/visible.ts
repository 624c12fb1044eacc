import {StringDecoder} from 'node:string_decoder'
import {Transform} from 'node:stream'

/**
 * Terminal-safe forms of strings a sandbox controls (file names, link targets,
 * host names, error texts): every character a terminal would act on instead of
 * show — C0 and C1 controls, DEL, bidirectional overrides, zero-width and line
 * separator characters — is written as a visible escape, so such a string can
 * neither move the cursor, erase a line, recolour the screen nor reorder text.
 */

// C0, DEL, C1; soft hyphen; Arabic letter mark; zero-width, bidi marks and overrides; line and paragraph separators;
// word joiner to the deprecated format characters; byte-order mark; interlinear annotation characters.
const INVISIBLE = /[\u0000-\u001f\u007f-\u009f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb]/gu
const SHORT: Record<string, string> = {'\t': '\\t', '\n': '\\n', '\r': '\\r'}

function escape(char: string): string {
  const short = SHORT[char]
  if (short) return short
  const code = char.codePointAt(0)!
  return code < 0x100 ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u{${code.toString(16)}}`
}

/**
 * A name (a path, a host, a link target) on one line: tabs and newlines are
 * escaped too, and so is the backslash, so an escape in the output always means
 * the name held that character.
 */
export function visibleName(name: string): string {
  return name.replace(/\\/g, '\\\\').replace(INVISIBLE, escape)
}

/** A text of several lines (an error message, a program's complaint): newlines and tabs are kept, everything else as in visibleName. */
export function visibleText(text: string): string {
  return text.replace(INVISIBLE, (char) => (char === '\n' || char === '\t' ? char : escape(char)))
}

/**
 * JSON text whose strings may hold a sandbox's names: the characters JSON itself
 * leaves raw (DEL, C1, bidi and zero-width ones; JSON escapes only C0) written as
 * `\uXXXX` escapes, so the text is the same JSON to a program and inert on a terminal.
 * A C0 character found here is the JSON's own layout (inside strings JSON escaped them).
 */
export function visibleJson(json: string): string {
  return json.replace(INVISIBLE, (char) => (char.charCodeAt(0) < 0x20 ? char : `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`))
}

/**
 * For bytes meant for a person on a terminal (a patch shown there): visibleText
 * over a byte stream, characters split across chunks decoded whole. Invalid UTF-8
 * shows as U+FFFD.
 */
export function visibleStream(): Transform {
  const decoder = new StringDecoder('utf8')
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      done(null, visibleText(decoder.write(chunk)))
    },
    flush(done) {
      done(null, visibleText(decoder.end()))
    },
  })
}
