/**
 * What every npm (and every tool built on the update-notifier package) run in a
 * sandbox for an agent leaves out: the "new version available" notice, funding
 * and audit chatter. They would land in the agent's output, and checking costs a
 * request to the registry.
 */
export const QUIET_NPM_ENV: Readonly<Record<string, string>> = {
  npm_config_update_notifier: 'false',
  npm_config_fund: 'false',
  npm_config_audit: 'false',
  NO_UPDATE_NOTIFIER: '1',
}
