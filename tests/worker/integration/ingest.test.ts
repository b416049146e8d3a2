import { rowChunkId } from '@confluence-bot/shared'
import t from 'tap'
import {
  generatedSpace,
  ingestRig,
  querypieSpace,
  withSecondEmbedModel,
} from '../../helpers/ingest.ts'
import { DEFAULT_MODELS } from '../../helpers/ollama-stand-in.ts'

// Ingestion end to end: real Redis, real BullMQ workers, real LanceDB, against the Confluence
// and Ollama stand-ins.

const pageIds = (rows: Array<Record<string, unknown>>) =>
  [...new Set(rows.map((r) => String(r.page_id)))].sort()

const embedInputs = (rig: { ollama: { requests: Array<{ path: string; body: unknown }> } }) =>
  rig.ollama.requests
    .filter((r) => r.path === '/api/embed')
    .flatMap((r) => (r.body as { input: string[] }).input)

t.test(
  'a full sync stores every page as chunks with vectors; an unchanged re-sync costs no embed call',
  async (t) => {
    const pages = generatedSpace(12)
    const rig = await ingestRig(t, { pages })
    await rig.startWorker()
    const source = await rig.register()

    const first = await rig.waitFor(await rig.enqueue(source))
    t.equal(first.state, 'completed', first.failedReason ?? '')
    t.same(first.progress, {
      discovered: 12,
      converted: 12,
      embedded: 12,
      unchanged: 0,
      deleted: 0,
      failed: 0,
    })
    t.same(first.errors, [])
    const rows = await rig.rows()
    t.same(pageIds(rows), pages.map((p) => p.id).sort(), 'exactly the pages of the space')
    t.equal(new Set(rows.map((r) => r.chunk_id)).size, rows.length, 'no duplicate chunk')
    t.ok(rows.length > 12, 'long pages are split into several chunks')
    for (const row of rows) {
      t.equal(row.chunk_id, rowChunkId(source, String(row.page_id), Number(row.chunk_pos)))
      t.equal(row.source_id, source)
      t.equal(row.space, 'ENG')
      t.equal(row.version, '1')
      t.equal(row.embed_model, 'nomic-embed-text')
      t.equal((row.vector as number[]).length, 32)
      t.match(String(row.url), rig.confluence.baseUrl)
    }
    const child = rows.find((r) => r.page_id === '1007' && r.chunk_pos === 0)
    t.match(
      String(child?.breadcrumb),
      /Page 2 of ENG › Page 7 of ENG/,
      'breadcrumb from the parents',
    )

    const calls = rig.ollama.embedCalls
    const second = await rig.waitFor(await rig.enqueue(source))
    t.equal(second.state, 'completed')
    t.same(second.progress, {
      discovered: 12,
      converted: 0,
      embedded: 0,
      unchanged: 12,
      deleted: 0,
      failed: 0,
    })
    t.equal(rig.ollama.embedCalls, calls, 'zero embed calls for an unchanged space')
    t.same(await rig.rows(), rows, 'the same rows')
  },
)

t.test('an edited page alone is re-embedded; a deleted page leaves the index', async (t) => {
  const pages = generatedSpace(12)
  const rig = await ingestRig(t, { pages })
  await rig.startWorker()
  const source = await rig.register()
  t.equal((await rig.waitFor(await rig.enqueue(source))).state, 'completed')
  const before = await rig.rows()

  const edited = pages[3] as (typeof pages)[number]
  edited.version = 2
  edited.storage = '<p>Rewritten: the only thing this page says now.</p>'
  const seen = embedInputs(rig).length
  const run = await rig.waitFor(await rig.enqueue(source))
  t.equal(run.progress.converted, 1)
  t.equal(run.progress.unchanged, 11)
  const inputs = embedInputs(rig).slice(seen)
  t.equal(inputs.length, 1, 'one chunk embedded')
  t.match(inputs[0], /Rewritten/)
  const after = await rig.rows()
  const mine = after.filter((r) => r.page_id === edited.id)
  t.equal(mine.length, 1, 'the old chunks of the edited page are gone')
  t.equal(mine[0]?.version, '2')
  t.same(
    after.filter((r) => r.page_id !== edited.id),
    before.filter((r) => r.page_id !== edited.id),
    'other pages untouched',
  )

  pages.splice(5, 1)
  const removal = await rig.waitFor(await rig.enqueue(source))
  t.equal(removal.progress.deleted, 1)
  t.notOk(
    (await rig.rows()).some((r) => r.page_id === '1006'),
    'the deleted page has no rows',
  )
})

t.test('the mass-delete guard refuses to empty a space unless forced', async (t) => {
  const pages = generatedSpace(10)
  const rig = await ingestRig(t, { pages })
  await rig.startWorker()
  const source = await rig.register()
  await rig.waitFor(await rig.enqueue(source))
  pages.splice(0, 6)
  const guarded = await rig.waitFor(await rig.enqueue(source))
  t.equal(guarded.state, 'completed')
  t.equal(guarded.progress.deleted, 0)
  t.match(guarded.errors[0]?.message, /Refused to delete 6 of 10 indexed pages \(60%/)
  t.equal(pageIds(await rig.rows()).length, 10, 'nothing deleted')

  const forced = await rig.waitFor(await rig.enqueue(source, { force: true }))
  t.equal(forced.progress.deleted, 6)
  t.same(pageIds(await rig.rows()), ['1007', '1008', '1009', '1010'])
})

t.test(
  'without a reachable embedding model pages are stored, then vectors are filled in',
  async (t) => {
    const pages = generatedSpace(6)
    const rig = await ingestRig(t, { pages, ollama: { models: [] } })
    await rig.startWorker()
    const source = await rig.register()
    const first = await rig.waitFor(await rig.enqueue(source))
    t.equal(first.state, 'completed')
    t.equal(first.progress.converted, 6)
    t.equal(first.progress.embedded, 0)
    const stored = await rig.rows()
    t.same(pageIds(stored), pages.map((p) => p.id).sort())
    t.ok(
      stored.every((r) => r.vector === undefined || r.vector === null),
      'no vectors yet',
    )

    rig.ollama.options.models = DEFAULT_MODELS.map((m) => ({ ...m }))
    const second = await rig.waitFor(await rig.enqueue(source))
    t.equal(second.progress.converted, 0, 'no page fetched or converted again')
    t.equal(second.progress.embedded, 6)
    const filled = await rig.rows()
    t.ok(
      filled.every(
        (r) => (r.vector as number[]).length === 32 && r.embed_model === 'nomic-embed-text',
      ),
    )
    t.same(
      filled.map((r) => r.text),
      stored.map((r) => r.text),
    )
  },
)

t.test(
  'an embedding model lost mid-sync leaves the new text without vectors, filled later',
  async (t) => {
    const pages = generatedSpace(4)
    const rig = await ingestRig(t, { pages })
    await rig.startWorker()
    const source = await rig.register()
    await rig.waitFor(await rig.enqueue(source))
    rig.ollama.options.models = []
    const edited = pages[1] as (typeof pages)[number]
    edited.version = 2
    edited.storage = '<p>Edited while the model was away.</p>'
    const run = await rig.waitFor(await rig.enqueue(source))
    t.match(run.progress, { converted: 1, embedded: 0 })
    const row = (await rig.rows()).find((r) => r.page_id === edited.id)
    t.match(row, { text: /Edited while/, embed_model: '' })
    rig.ollama.options.models = DEFAULT_MODELS.map((m) => ({ ...m }))
    const later = await rig.waitFor(await rig.enqueue(source))
    t.match(later.progress, { converted: 0, embedded: 1 })
    t.ok((await rig.rows()).every((r) => r.embed_model === 'nomic-embed-text'))
  },
)

t.test('a new embedding model re-embeds every row; the table never mixes models', async (t) => {
  const pages = generatedSpace(5)
  const rig = await ingestRig(t, { pages, ollama: { models: withSecondEmbedModel() } })
  const first = await rig.startWorker()
  const source = await rig.register()
  await rig.waitFor(await rig.enqueue(source))
  await first.worker.close()

  await rig.startWorker({ EMBED_MODEL: 'mxbai-embed-large' })
  const run = await rig.waitFor(await rig.enqueue(source))
  t.equal(run.state, 'completed', run.failedReason ?? '')
  t.equal(run.progress.converted, 0)
  t.equal(run.progress.embedded, 5)
  const rows = await rig.rows()
  t.ok(rows.length > 0)
  t.ok(
    rows.every((r) => r.embed_model === 'mxbai-embed-large'),
    'every row from the new model',
  )
})

t.test('a 401 fails the sync at once with a clear message and no retries', async (t) => {
  const rig = await ingestRig(t, {
    pages: generatedSpace(3),
    confluence: { auth: { type: 'basic', username: 'bot@acme.test', token: 'right-token' } },
  })
  await rig.startWorker()
  const source = await rig.register({
    auth: { type: 'basic', username: 'bot@acme.test', token: 'wrong-token-s3cret' },
  })
  const run = await rig.waitFor(await rig.enqueue(source))
  t.equal(run.state, 'failed')
  t.match(run.failedReason, /401/)
  t.notMatch(run.failedReason, /s3cret/, 'the token is not in the message')
  t.equal(rig.confluence.requests.length, 1, 'one request: no retry storm')
})

t.test('a 429 with Retry-After: 2 holds the next request for 2 seconds', async (t) => {
  const pages = generatedSpace(4)
  const rig = await ingestRig(t, { pages, confluence: { rateLimit: { every: 3, retryAfterS: 2 } } })
  await rig.startWorker()
  const source = await rig.register()
  const run = await rig.waitFor(await rig.enqueue(source))
  t.equal(run.state, 'completed', run.failedReason ?? '')
  t.equal(run.progress.converted, 4)
  const log = rig.confluence.requests as Array<{ at: number }>
  const limited = 2 // the third request (index 2) answered 429
  t.ok(log.length > limited + 1)
  const wait = (log[limited + 1] as { at: number }).at - (log[limited] as { at: number }).at
  t.ok(wait >= 2_000, `the next request came ${Math.round(wait)} ms after the 429`)
})

const querypie = querypieSpace()
t.test(
  'the real querypie pages sync completely (Data Center layout)',
  {
    skip: querypie === null ? '../shared/fixtures is not here' : false,
  },
  async (t) => {
    const pages = querypie ?? []
    const rig = await ingestRig(t, {
      pages,
      confluence: { deployment: 'dc', contextPath: '/confluence' },
    })
    await rig.startWorker()
    const source = await rig.register()
    const run = await rig.waitFor(await rig.enqueue(source))
    t.equal(run.state, 'completed', run.failedReason ?? '')
    t.equal(run.progress.converted, pages.length)
    t.equal(run.progress.failed, 0)
    const rows = await rig.rows()
    t.same(pageIds(rows), pages.map((p) => p.id).sort())
    t.ok(
      rows.every((r) =>
        String(r.url).startsWith(`${rig.confluence.baseUrl}/pages/viewpage.action?pageId=`),
      ),
    )
    t.ok(
      rows.every((r) => !/<\/?(ac|ri):/.test(String(r.text))),
      'no storage tags left in the text',
    )
  },
)
