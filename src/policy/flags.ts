import {Flags} from '@oclif/core'

/** `-c, --chdir DIR`: where the policy is looked for (and `policy init` writes it) instead of the working directory. */
export const policyDirFlag = Flags.directory({
  char: 'c',
  summary: 'Directory of the repository (default: the current directory)',
  helpValue: 'DIR',
})
