import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { SPACES_STALE_MS } from '@confluence-bot/index'
import type { Connection, Table } from '@lancedb/lancedb'
import type { FastifyInstance } from 'fastify'
import t from 'tap'
import { ADMIN_KEY, bearer, buildTestApp, READER_KEY, tempDir } from '../../helpers/api.ts'
import { ENG_KEY, groundedRig, type Json } from '../../helpers/grounded.ts'

// GET /api/spaces: the spaces the index holds, as far as the caller's key may read them (the
// chat page offers them as choices), over a real socket on an index a real worker built.

/** Counts the scans of the chunk table (its queries) made through the app's connection. */
function countScans(app: FastifyInstance): { scans: number } {
  const counter = { scans: 0 }
  const connection = app.lancedb.connection
  const spyTable = (table: Table) =>
    new Proxy(table, {
      get(target, name) {
        const value = Reflect.get(target, name, target)
        if (name !== 'query') return typeof value === 'function' ? value.bind(target) : value
        return () => {
          counter.scans += 1
          return target.query()
        }
      },
    })
  app.lancedb.connection = async () => {
    const db = await connection()
    return new Proxy(db, {
      get(target, name) {
        const value = Reflect.get(target, name, target)
        if (name !== 'openTable') return typeof value === 'function' ? value.bind(target) : value
        return async (...args: Parameters<Connection['openTable']>) =>
          spyTable(await target.openTable(...args))
      },
    })
  }
  return counter
}

t.test('the indexed spaces, narrowed to the key', async (t) => {
  const { app, url, rig } = await groundedRig(t)
  const counter = countScans(app)
  const spaces = async (headers: Record<string, string>) => {
    const res = await fetch(`${url}/api/spaces`, { headers })
    return { status: res.status, json: (await res.json()) as Json }
  }
  // A burst of page loads: one scan of the chunk table serves them all.
  const burst = await Promise.all(Array.from({ length: 20 }, () => spaces(bearer(READER_KEY))))
  t.equal(counter.scans, 1, 'twenty callers at once share one scan')
  for (const answer of burst) t.same(answer.json, burst[0]?.json)
  const all = await spaces(bearer(READER_KEY))
  t.equal(counter.scans, 1, 'the next call reuses it')
  t.equal(all.status, 200)
  t.same(
    all.json.spaces.map((s: Json) => [s.key, s.pages]),
    [
      ['ENG', 3],
      ['OPS', 2],
    ],
    'by key, with their page counts',
  )
  for (const space of all.json.spaces) t.ok(space.chunks >= space.pages, `${space.key} chunks`)
  t.same((await spaces(bearer(ADMIN_KEY))).json, all.json, 'an admin reads every space')
  const eng = await spaces(bearer(ENG_KEY))
  t.equal(eng.status, 200)
  t.same(
    eng.json.spaces.map((s: Json) => s.key),
    ['ENG'],
    'a key limited to ENG never hears of OPS',
  )
  const anonymous = await spaces({})
  t.equal(anonymous.status, 401)
  t.match(anonymous.json, { error: 'unauthorized' })

  // A space synced while the api runs is listed within SPACES_STALE_MS (the list is reused
  // that long, however often syncs commit).
  rig.confluence.options.pages.push({
    id: '301',
    spaceKey: 'DOC',
    title: 'Style guide',
    version: 1,
    storage: '<h1>Style</h1><p>Write short sentences.</p>',
    updatedAt: '2024-07-01T08:00:00.000Z',
  })
  const docs = await rig.register({ name: 'Docs', spaces: ['DOC'] })
  t.equal((await rig.waitFor(await rig.enqueue(docs))).state, 'completed')
  /** The spaces and their page counts, once `ready` holds of them (or the bound is past). */
  const listed = async (ready: (spaces: Json[]) => boolean) => {
    const deadline = Date.now() + SPACES_STALE_MS + 30_000
    for (;;) {
      const now = (await spaces(bearer(READER_KEY))).json.spaces
      if (ready(now) || Date.now() > deadline) return now.map((s: Json) => [s.key, s.pages])
      await new Promise((resolve) => setTimeout(resolve, 500))
    }
  }
  t.same(await listed((now) => now.some((s) => s.key === 'DOC')), [
    ['DOC', 1],
    ['ENG', 3],
    ['OPS', 2],
  ])
  t.same(
    (await spaces(bearer(ENG_KEY))).json.spaces.map((s: Json) => s.key),
    ['ENG'],
    'still ENG alone for the ENG key',
  )

  // A second source over ENG and DOC of the same site (DOC has a new page): each page counts
  // once, whichever sources hold it.
  rig.confluence.options.pages.push({
    id: '302',
    spaceKey: 'DOC',
    title: 'Glossary',
    version: 1,
    storage: '<h1>Glossary</h1><p>A rollback returns to an earlier release.</p>',
    updatedAt: '2024-07-02T08:00:00.000Z',
  })
  const again = await rig.register({ name: 'Again', spaces: ['ENG', 'DOC'] })
  t.equal((await rig.waitFor(await rig.enqueue(again))).state, 'completed')
  t.same(
    await listed((now) => now.some((s) => s.key === 'DOC' && s.pages > 1)),
    [
      ['DOC', 2],
      ['ENG', 3],
      ['OPS', 2],
    ],
    'pages of two sources of one site count once',
  )
})

t.test('an index nothing has synced into yet holds no space', async (t) => {
  const app = await buildTestApp(t)
  const res = await app.inject({ method: 'GET', url: '/api/spaces' })
  t.equal(res.statusCode, 200)
  t.same(res.json(), { spaces: [] })
})

t.test('an index that cannot be read is a 503 that says so', async (t) => {
  const dir = await tempDir(t)
  const file = join(dir, 'not-a-directory')
  await writeFile(file, 'x')
  const app = await buildTestApp(t, { LANCEDB_URI: join(file, 'db') })
  const url = await app.listen({ host: '127.0.0.1', port: 0 })
  const res = await fetch(`${url}/api/spaces`)
  t.equal(res.status, 503)
  t.match(await res.json(), { error: 'index_unavailable', message: /cannot be read/ })
})
