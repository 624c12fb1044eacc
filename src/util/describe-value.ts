/**
 * A value a file gave, for a message: text quoted (and cut short), numbers and
 * booleans as written, collections by kind. Safe for any value: a deeply
 * nested one from JSON is never walked.
 */
export function describeValue(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 80 ? `${value.slice(0, 77)}...` : value)
  if (Array.isArray(value)) return 'a list'
  if (typeof value === 'object' && value !== null) return 'a mapping'
  return String(value)
}
