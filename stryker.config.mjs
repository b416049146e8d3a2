// @ts-check
// StrykerJS over the core files (DESIGN.md §4, the `mutation` bench): the sync engine (its delete
// guard is in sync.ts's finish step), auth, the SSRF check, the NDJSON relay and the converter.
// Run it with `pnpm bench mutation` (bench/mutation/index.ts), which runs one group at a time
// (MUTATION_GROUP) so each mutant runs only the tests that exercise its file, on the repo's Node 24
// with the workspace source condition, and prints the scores. Never part of CI or a bare `pnpm bench`.

import { existsSync, realpathSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { pathToFileURL } from 'node:url'

// The `tap` command adds its mock loader (t.mockImport) to every test process; the tap runner
// starts `node` on a test file itself, so it is added here: tap's own @tapjs/mock, a sibling of
// tap in pnpm's store.
const tapMockImport = join(
  dirname(realpathSync('node_modules/tap')),
  '@tapjs/mock/dist/esm/import.mjs',
)
if (!existsSync(tapMockImport)) throw new Error(`tap's mock loader not found at ${tapMockImport}`)

/** Per group: the files mutated and the test files that guard them. */
export const groups = {
  hosts: {
    mutate: ['packages/shared/src/sources/hosts.ts'],
    tests: ['tests/shared/hosts.test.ts', 'tests/shared/hosts-boundaries.test.ts'],
  },
  auth: {
    mutate: ['services/api/src/plugins/app/auth.ts'],
    tests: ['tests/api/auth.test.ts', 'tests/api/auth-header-forms.test.ts'],
  },
  ndjson: {
    mutate: ['services/api/src/lib/ndjson.ts'],
    tests: ['tests/api/lib/ndjson.test.ts', 'tests/api/lib/ndjson-boundaries.test.ts'],
  },
  convert: {
    mutate: ['services/worker/src/convert/*.ts', '!services/worker/src/convert/*.d.ts'],
    // The converter's own tests (the convert CLI's test runs processes, seconds each: left out).
    tests: [
      'tests/worker/convert/rules.test.ts',
      'tests/worker/convert/golden.test.ts',
      'tests/worker/convert/sweep.test.ts',
      'tests/worker/convert/code-preservation.test.ts',
      'tests/worker/convert/emoticons.test.ts',
      'tests/worker/convert/macros.test.ts',
      'tests/worker/convert/nesting.test.ts',
      'tests/worker/convert/elements.test.ts',
      'tests/worker/convert/markdown-pass.test.ts',
      'tests/worker/convert/tables.test.ts',
      'tests/worker/convert/fidelity.test.ts',
    ],
  },
  // The engine's decisions (what is converted, restamped, deleted, re-embedded) are pure
  // functions of the listing and the index: mutants run against their unit tests in a second.
  // Its I/O (sync.ts: claim, batches, steps) is guarded by the integration tests, minutes a run.
  sync: {
    mutate: ['services/worker/src/processors/sync-plan.ts'],
    tests: ['tests/worker/processors/sync-plan.test.ts'],
  },
}

const picked = process.env.MUTATION_GROUP
  ? process.env.MUTATION_GROUP.split(',').map((name) => {
      const group = groups[/** @type {keyof typeof groups} */ (name)]
      if (!group) throw new Error(`MUTATION_GROUP: unknown group ${name}`)
      return group
    })
  : Object.values(groups)

/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  packageManager: 'pnpm',
  testRunner: 'tap',
  plugins: ['@stryker-mutator/tap-runner'],
  mutate: picked.flatMap((group) => group.mutate),
  tap: {
    testFiles: picked.flatMap((group) => group.tests),
    // Node 24's type stripping runs the tests as `pnpm test` does; the hook keeps the workspace
    // packages' imports inside Stryker's sandbox (see the file).
    nodeArgs: [
      '--conditions=@confluence-bot/source',
      '--import=./bench/mutation/sandbox-hooks.ts',
      `--import=${pathToFileURL(tapMockImport).href}`,
      '-r',
      '{{hookFile}}',
      '{{testFile}}',
    ],
  },
  // No per-test coverage: the integration tests run the engine in processes of their own, where
  // coverage would not be seen; the groups above keep each mutant's test set small instead.
  coverageAnalysis: 'off',
  checkers: [],
  concurrency: 2,
  timeoutMS: 60000,
  timeoutFactor: 2,
  reporters: ['json', 'clear-text', 'progress'],
  jsonReporter: { fileName: `reports/mutation/${process.env.MUTATION_GROUP ?? 'all'}.json` },
  htmlReporter: { fileName: `reports/mutation/${process.env.MUTATION_GROUP ?? 'all'}.html` },
  tempDirName: '.stryker-tmp',
  cleanTempDir: true,
  ignorePatterns: ['/data', '/coverage', '/.tap', '/reports', 'dist'],
}
