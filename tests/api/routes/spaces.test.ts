import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { ADMIN_KEY, bearer, buildTestApp, READER_KEY, tempDir } from '../../helpers/api.ts'
import { ENG_KEY, groundedRig, type Json } from '../../helpers/grounded.ts'

// GET /api/spaces: the spaces the index holds, as far as the caller's key may read them (the
// chat page offers them as choices), over a real socket on an index a real worker built.

t.test('the indexed spaces, narrowed to the key', async (t) => {
  const { url, rig } = await groundedRig(t)
  const spaces = async (headers: Record<string, string>) => {
    const res = await fetch(`${url}/api/spaces`, { headers })
    return { status: res.status, json: (await res.json()) as Json }
  }
  const all = await spaces(bearer(READER_KEY))
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

  // A space synced while the api runs is listed at once (the index is read as it is now).
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
  t.same(
    (await spaces(bearer(READER_KEY))).json.spaces.map((s: Json) => [s.key, s.pages]),
    [
      ['DOC', 1],
      ['ENG', 3],
      ['OPS', 2],
    ],
  )
  t.same(
    (await spaces(bearer(ENG_KEY))).json.spaces.map((s: Json) => s.key),
    ['ENG'],
    'still ENG alone for the ENG key',
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
