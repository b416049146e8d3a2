import { type ChildProcess, spawn } from 'node:child_process'
import { existsSync, readdirSync } from 'node:fs'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

// `pnpm bench [NAME...]`: runs every benchmark folder `bench/<name>/index.ts` (or the named
// ones), each in its own Node process with the workspace source condition, one after another;
// the opt-in ones (OPT_IN below) run only when named.
// A benchmark's stdout (its JSON-line figures) and stderr pass straight through. Exit code: 0
// when every benchmark succeeded, 1 when one failed, 2 for an unknown name, 130/143 on a signal.

const benchDir = dirname(fileURLToPath(import.meta.url))
const root = dirname(benchDir)

const available = readdirSync(benchDir, { withFileTypes: true })
  .filter((entry) => entry.isDirectory() && existsSync(join(benchDir, entry.name, 'index.ts')))
  .map((entry) => entry.name)
  .sort()

// Run only when named (DESIGN.md §4): `mutation` is StrykerJS over the core files, tens of minutes.
const OPT_IN = new Set(['mutation'])

const asked = process.argv.slice(2).filter((arg) => arg !== '--')
const unknown = asked.filter((name) => !available.includes(name))
if (unknown.length > 0) {
  process.stderr.write(
    `Unknown benchmark${unknown.length > 1 ? 's' : ''}: ${unknown.join(', ')}. ` +
      `Available: ${available.join(', ') || '(none)'}. Usage: pnpm bench [NAME...]\n`,
  )
  process.exit(2)
}
if (available.length === 0) {
  process.stderr.write('No benchmarks found (expected bench/<name>/index.ts).\n')
  process.exit(1)
}

let current: ChildProcess | undefined
let interrupted: NodeJS.Signals | undefined
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(signal, () => {
    interrupted = signal
    // A terminal's Ctrl-C reaches the child too; a signal sent to this process alone is passed on.
    current?.kill(signal)
  })
}

function runOne(name: string): Promise<number> {
  const entry = join(benchDir, name, 'index.ts')
  process.stderr.write(`== bench ${name} (${relative(root, entry)})\n`)
  const child = spawn(process.execPath, ['--conditions=@confluence-bot/source', entry], {
    cwd: root,
    stdio: ['ignore', 'inherit', 'inherit'],
  })
  current = child
  return new Promise((resolve) => {
    child.once('error', (err) => {
      process.stderr.write(`bench ${name}: could not start: ${err.message}\n`)
      resolve(1)
    })
    child.once('exit', (code, signal) => {
      current = undefined
      if (signal) process.stderr.write(`bench ${name}: killed by ${signal}\n`)
      resolve(code ?? 1)
    })
  })
}

const failed: string[] = []
const skipped = available.filter((name) => OPT_IN.has(name))
if (asked.length === 0 && skipped.length > 0) {
  process.stderr.write(`Not run unless named: ${skipped.join(', ')} (pnpm bench NAME)\n`)
}
for (const name of asked.length > 0 ? asked : available.filter((name) => !OPT_IN.has(name))) {
  if (interrupted) break
  const code = await runOne(name)
  if (code !== 0) {
    failed.push(name)
    process.stderr.write(`bench ${name} failed (exit ${code})\n`)
  }
}

if (interrupted) process.exit(interrupted === 'SIGINT' ? 130 : 143)
if (failed.length > 0) {
  process.stderr.write(`Failed: ${failed.join(', ')}\n`)
  process.exit(1)
}
