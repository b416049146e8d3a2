import { spawn } from 'node:child_process'
import { existsSync, readFileSync, rmSync } from 'node:fs'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { note, reporter } from '../lib/report.ts'

// `pnpm bench mutation` (never a bare `pnpm bench`, never CI): StrykerJS over the core files
// (DESIGN.md §4) with the config at the root, stryker.config.mjs. One Stryker run a group of
// files (hosts, auth, ndjson, convert, sync: the config maps each to the tests that guard it), so
// a mutant runs only its own tests. Figures (stdout): the mutation score of each file and group,
// and `score_core` over every file run; all 0–1, (killed + timed out) ÷ (those + survived + not
// covered), as Stryker computes it. The surviving mutants, file by file, go to stderr with
// Stryker's own output; the JSON and HTML reports stay in reports/mutation/.
// Knob (environment): MUTATION_GROUPS, a comma-separated subset in the order to run (all by
// default, the slow sync engine last), e.g. `MUTATION_GROUPS=hosts,auth pnpm bench mutation`.

const BENCH = 'mutation'
const report = reporter(BENCH)
const root = dirname(dirname(dirname(fileURLToPath(import.meta.url))))
const GROUPS = ['hosts', 'auth', 'ndjson', 'convert', 'sync']

type Location = { line: number; column: number }
type Mutant = {
  id: string
  mutatorName: string
  replacement?: string
  status: string
  location: { start: Location; end: Location }
}
type MutationReport = { files: Record<string, { source: string; mutants: Mutant[] }> }
type Tally = { detected: number; undetected: number; total: number }

const asked = (process.env.MUTATION_GROUPS ?? '')
  .split(',')
  .map((name) => name.trim())
  .filter((name) => name !== '')
const unknown = asked.filter((name) => !GROUPS.includes(name))
if (unknown.length > 0) {
  throw new Error(`MUTATION_GROUPS: unknown ${unknown.join(', ')} (groups: ${GROUPS.join(', ')})`)
}
const groups = asked.length > 0 ? asked : GROUPS

function tally(mutants: Mutant[]): Tally {
  let detected = 0
  let undetected = 0
  for (const mutant of mutants) {
    if (mutant.status === 'Killed' || mutant.status === 'Timeout') detected++
    else if (mutant.status === 'Survived' || mutant.status === 'NoCoverage') undetected++
  }
  return { detected, undetected, total: mutants.length }
}

const score = ({ detected, undetected }: Tally): number =>
  detected + undetected === 0 ? 1 : detected / (detected + undetected)

/** `score_sync`, `score_convert_storage`: the file's name, prefixed with its group if it differs. */
function metricName(group: string, file: string): string {
  const base = file
    .split('/')
    .pop()
    ?.replace(/\.[cm]?[jt]s$/, '')
  return base === group ? `score_${group}` : `score_${group}_${base}`
}

/** The mutated source text of one mutant, on one line, shortened. */
function original(source: string, { start, end }: Mutant['location']): string {
  const lines = source.split('\n')
  const text =
    start.line === end.line
      ? (lines[start.line - 1] ?? '').slice(start.column - 1, end.column - 1)
      : [
          (lines[start.line - 1] ?? '').slice(start.column - 1),
          ...lines.slice(start.line, end.line - 1),
          (lines[end.line - 1] ?? '').slice(0, end.column - 1),
        ].join('\n')
  return oneLine(text)
}

function oneLine(text: string): string {
  const flat = text.replace(/\s+/g, ' ').trim()
  return flat.length > 100 ? `${flat.slice(0, 97)}...` : flat
}

function runStryker(group: string): Promise<number> {
  const stryker = join(root, 'node_modules', '@stryker-mutator', 'core', 'bin', 'stryker.js')
  const hooks = join(root, 'bench', 'mutation', 'sandbox-hooks.ts')
  const env = {
    ...process.env,
    MUTATION_GROUP: group,
    // The tap runner starts `node` from the PATH: this Node 24, not whatever the system has.
    PATH: `${dirname(process.execPath)}:${process.env.PATH ?? ''}`,
    // Processes the tests start (the CLI, the services) stay in the sandbox too.
    NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import=${hooks}`.trim(),
  }
  const child = spawn(process.execPath, [stryker, 'run', 'stryker.config.mjs'], {
    cwd: root,
    env,
    // Stryker's progress and clear-text report are for a person: stderr, so stdout stays JSON.
    stdio: ['ignore', 2, 2],
  })
  return new Promise((resolve) => {
    child.once('error', (err) => {
      note(BENCH, `stryker could not start: ${err.message}`)
      resolve(1)
    })
    child.once('exit', (code) => resolve(code ?? 1))
  })
}

const all: Mutant[] = []
const failed: string[] = []
for (const group of groups) {
  const file = join(root, 'reports', 'mutation', `${group}.json`)
  rmSync(file, { force: true })
  note(BENCH, `group ${group}: running Stryker`)
  const started = Date.now()
  const code = await runStryker(group)
  if (code !== 0 || !existsSync(file)) {
    failed.push(group)
    note(BENCH, `group ${group}: Stryker failed (exit ${code})`)
    continue
  }
  note(BENCH, `group ${group}: ${Math.round((Date.now() - started) / 1000)} s`)
  const result = JSON.parse(readFileSync(file, 'utf8')) as MutationReport
  const inGroup: Mutant[] = []
  for (const [path, { source, mutants }] of Object.entries(result.files).sort()) {
    const name = relative(root, join(root, path))
    const counts = tally(mutants)
    report(metricName(group, name), score(counts), 'ratio')
    inGroup.push(...mutants)
    const left = mutants.filter((m) => m.status === 'Survived' || m.status === 'NoCoverage')
    note(
      BENCH,
      `${name}: ${counts.detected} detected, ${counts.undetected} survived of ${counts.total}`,
    )
    for (const m of left) {
      const at = `${name}:${m.location.start.line}:${m.location.start.column}`
      const was = original(source, m.location)
      const now = oneLine(m.replacement ?? '')
      process.stderr.write(`  ${m.status} ${at} ${m.mutatorName}: ${was}  =>  ${now}\n`)
    }
  }
  if (Object.keys(result.files).length > 1) report(`score_${group}`, score(tally(inGroup)), 'ratio')
  all.push(...inGroup)
}

if (all.length > 0) {
  const counts = tally(all)
  report('score_core', score(counts), 'ratio')
  report('mutants_core', counts.total, 'count')
  report('survivors_core', counts.undetected, 'count')
  if (groups.length < GROUPS.length || failed.length > 0) {
    note(BENCH, `score_core covers only: ${groups.filter((g) => !failed.includes(g)).join(', ')}`)
  }
}
if (failed.length > 0) {
  note(BENCH, `failed groups: ${failed.join(', ')}`)
  process.exit(1)
}
