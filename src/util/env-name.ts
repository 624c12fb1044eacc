/** Whether `name` can name an environment variable the shell can expand: letters, digits, `_`, not starting with a digit. */
export function isEnvName(name: string): boolean {
  return /^[A-Za-z_][A-Za-z0-9_]*$/.test(name)
}
