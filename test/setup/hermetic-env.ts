/**
 * Loaded by mocha before any test file (.mocharc.json `require`): the variables
 * through which a user steers cleanroom (`CLEANROOM_HOST`, `CLEANROOM_NSINIT`, oclif's
 * `CLEANROOM_DATA_DIR` and the like) are taken out of the test process's environment,
 * so a developer's shell never reaches the CLIs and daemons the tests start (execa
 * passes the parent's environment on). The suite's own knobs stay.
 */
const SUITE_KNOBS = new Set(['CLEANROOM_STRESS', 'CLEANROOM_FUZZ_SEED', 'CLEANROOM_BENCH_BUILD'])

for (const name of Object.keys(process.env)) {
  if (name.startsWith('CLEANROOM_') && !SUITE_KNOBS.has(name)) delete process.env[name]
}
