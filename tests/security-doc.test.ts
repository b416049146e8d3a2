import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { ApiEnvSchema, WorkerEnvSchema } from '@confluence-bot/shared'
import t from 'tap'
import { REPO_ROOT } from './helpers/process.ts'

// SECURITY.md says where each control lives; a file moved or renamed would leave it pointing at
// nothing, and a setting renamed would leave operators looking for a variable that does not exist.

const read = (path: string) => readFileSync(join(REPO_ROOT, path), 'utf8')
const security = read('SECURITY.md')
const quoted = [...security.matchAll(/`([^`\n]+)`/g)].map((m) => m[1] as string)

t.test('every file SECURITY.md cites exists', async (t) => {
  const paths = quoted.filter((q) => /^(services|packages|k8s|tests|scripts)\/[\w./-]+$/.test(q))
  t.ok(paths.length >= 20, `cites the code (${paths.length} paths)`)
  for (const path of new Set(paths)) t.ok(existsSync(join(REPO_ROOT, path)), `${path} exists`)
})

t.test('every setting SECURITY.md names is a real one', async (t) => {
  const settings = new Set(
    Object.keys({ ...ApiEnvSchema.properties, ...WorkerEnvSchema.properties }),
  )
  const named = quoted.filter((q) => /^[A-Z][A-Z0-9]*_[A-Z0-9_]+$/.test(q))
  t.ok(named.length > 0)
  for (const name of new Set(named)) t.ok(settings.has(name), `${name} is a setting`)
})

t.test('the README links to SECURITY.md', async (t) => {
  t.match(read('README.md'), '[SECURITY.md](SECURITY.md)')
})
