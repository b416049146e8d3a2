import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join, relative } from 'node:path'
import {
  ApiEnvSchema,
  WORKER_MALLOC_ARENA_MAX,
  WORKER_NODE_OPTIONS,
  WorkerEnvSchema,
} from '@confluence-bot/shared'
import t from 'tap'
import { REPO_ROOT } from './helpers/process.ts'

const read = (path: string) => readFileSync(join(REPO_ROOT, path), 'utf8')

t.test('the README documents every setting, with its default', async (t) => {
  const readme = read('README.md')
  const settings = { ...ApiEnvSchema.properties, ...WorkerEnvSchema.properties }
  for (const [name, schema] of Object.entries(settings)) {
    const row = readme.split('\n').find((line) => new RegExp(`^\\| \`${name}\` +\\|`).test(line))
    t.ok(row, `${name} has a row in the configuration table`)
    const def = (schema as unknown as { default: unknown }).default
    if (def !== '') t.match(row, `\`${def}\``, `${name}'s row shows its default`)
  }
})

t.test("the README's Quick start is two lines and CI runs the second verbatim", async (t) => {
  const readme = read('README.md')
  const block = /## Quick start[\s\S]*?```sh\n([\s\S]*?)```/.exec(readme)?.[1] ?? ''
  const lines = block.split('\n').filter((l) => l.trim() !== '')
  t.equal(lines.length, 2)
  t.match(read('.ci/run'), lines[1] as string)
})

function sources(dir: string): string[] {
  return readdirSync(join(REPO_ROOT, dir)).flatMap((name) => {
    const path = join(dir, name)
    if (statSync(join(REPO_ROOT, path)).isDirectory()) return sources(path)
    return path.endsWith('.ts') ? [path] : []
  })
}

const importsOf = (path: string) =>
  [...read(path).matchAll(/^import [^'"]*['"]([^'"]+)['"]/gm)].map((m) => m[1] as string)

// Type-only imports vanish at run time, so they do not make a runtime dependency.
const runtimeImportsOf = (path: string) =>
  [...read(path).matchAll(/^import (?!type )[^'"]*['"]([^'"]+)['"]/gm)].map((m) => m[1] as string)

t.test('dependency direction: shared ← api, shared ← worker, never sideways', async (t) => {
  for (const file of sources('packages/shared/src')) {
    for (const spec of runtimeImportsOf(file)) {
      t.notMatch(
        spec,
        /^(fastify|@fastify\/|bullmq|ioredis|@confluence-bot\/(api|worker))/,
        `${file}: ${spec}`,
      )
    }
  }
  for (const [from, forbidden] of [
    ['services/api/src', /@confluence-bot\/worker|services\/worker|\.\.\/\.\.\/worker/],
    ['services/worker/src', /@confluence-bot\/api|fastify|services\/api/],
  ] as const) {
    for (const file of sources(from)) {
      for (const spec of importsOf(file))
        t.notMatch(spec, forbidden, `${relative(from, file)}: ${spec}`)
    }
  }
})

t.test('process.env is read only by the config module', async (t) => {
  const offenders = ['packages/shared/src', 'services/api/src', 'services/worker/src']
    .flatMap(sources)
    .filter((file) => file !== 'packages/shared/src/config/index.ts')
    .filter((file) => /process\.env\b/.test(read(file)))
  t.same(offenders, [])
})

t.test(
  'the worker image starts the worker with the same memory settings as `pnpm start`',
  async (t) => {
    const stage = /^FROM runtime AS worker$([\s\S]*?)(?=^FROM |(?![\s\S]))/m.exec(
      read('Dockerfile'),
    )?.[1]
    t.ok(stage, 'the Dockerfile has a worker stage')
    const env = [...(stage ?? '').matchAll(/^ENV (.+)$/gm)].flatMap((m) =>
      (m[1] as string).split(/\s+/),
    )
    t.ok(env.includes(`NODE_OPTIONS=${WORKER_NODE_OPTIONS}`), env.join(' '))
    t.ok(env.includes(`MALLOC_ARENA_MAX=${WORKER_MALLOC_ARENA_MAX}`), env.join(' '))
  },
)
