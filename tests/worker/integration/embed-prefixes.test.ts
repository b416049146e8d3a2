import { lancedbConnect } from '@confluence-bot/index'
import {
  CHUNKS_TABLE,
  claimEmbedModel,
  EMBED_CLAIM_MS,
  EmbedMeta,
  embedModelsKey,
  JobName,
  QUEUE_PREFIX,
  QueueName,
  syncJobOptions,
  withdrawEmbedModel,
} from '@confluence-bot/shared'
import { Queue } from 'bullmq'
import t, { type Test } from 'tap'
import { jobEmbedding, jobPrefixes } from '../../../services/worker/src/ingest/embedding.ts'
import { embedText } from '../../../services/worker/src/ingest/rows.ts'
import { arrow, chunkSchema, rowsToArrow } from '../../../services/worker/src/store/arrow.ts'
import type { StandInPage } from '../../helpers/confluence-stand-in.ts'
import {
  generatedSpace,
  ingestRig,
  type Rig,
  sameAsFromScratch,
  syncFromScratch,
} from '../../helpers/ingest.ts'
import { expectedEmbedding } from '../../helpers/ollama-stand-in.ts'

// Task prefixes end to end (real Redis, real workers, real LanceDB, the Ollama stand-in records
// every input it is given): each chunk reaches the model with the document prefix, the table
// records the prefixes its vectors were made with, a new document prefix re-embeds every chunk
// exactly as a from-scratch sync would, and a new query prefix alone re-embeds nothing.

const DIM = 32
const MODEL = 'nomic-embed-text'
const PROBE = 'dimension probe'

/** Every text given to /api/embed since request `from`, the dimension probes left out. */
const embedInputs = (rig: Rig, from = 0) =>
  rig.ollama.requests
    .slice(from)
    .filter((r) => r.path === '/api/embed')
    .flatMap((r) => (r.body as { input: string[] }).input)
    .filter((input) => input !== PROBE)

/** Rows whose vector is not the model's for their text behind `prefix`. */
async function madeOtherwise(rig: Rig, prefix: string) {
  return (await rig.rows()).filter((row) => {
    if (row.vector === null) return true
    const text = prefix + embedText({ breadcrumb: String(row.breadcrumb), text: String(row.text) })
    const want = expectedEmbedding(MODEL, text, DIM).map(Math.fround)
    return (row.vector as number[]).some((v, i) => v !== want[i])
  })
}

/** The prefixes the table's metadata records (undefined: no such key), as search reads them. */
async function recorded(rig: Rig) {
  const db = await lancedbConnect(rig.lancedbUri)
  const table = await db.openTable(CHUNKS_TABLE)
  const { metadata } = await table.schema()
  table.close()
  return {
    document: metadata.get(EmbedMeta.documentPrefix),
    query: metadata.get(EmbedMeta.queryPrefix),
  }
}

async function sync(t: Test, rig: Rig, source: string, what: string) {
  const run = await rig.waitFor(await rig.enqueue(source))
  t.equal(run.state, 'completed', `${what}: ${run.failedReason ?? ''}`)
  return run
}

/** Waits until no chunk lacks a vector (the refill runs beside the syncs). */
async function filled(rig: Rig) {
  for (let i = 0; i < 300; i++) {
    if ((await rig.rows()).every((r) => r.vector !== null)) return
    await new Promise((r) => setTimeout(r, 100))
  }
}

t.test(
  'every chunk reaches the model behind the document prefix; the table records both',
  async (t) => {
    const rig = await ingestRig(t, { pages: generatedSpace(6), ollama: { embedDimension: DIM } })
    await rig.startWorker()
    const source = await rig.register()
    const run = await sync(t, rig, source, 'first sync')
    t.match(run.progress, { converted: 6, embedded: 6 })

    const inputs = embedInputs(rig)
    t.equal(inputs.length, (await rig.rows()).length, 'one input per chunk')
    t.ok(
      inputs.every((input) => input.startsWith('search_document: ')),
      'nomic: search_document: ',
    )
    t.same(await madeOtherwise(rig, 'search_document: '), [])
    t.same(await recorded(rig), { document: 'search_document: ', query: 'search_query: ' })
  },
)

t.test('a new EMBED_DOCUMENT_PREFIX re-embeds every chunk, as a sync from scratch', async (t) => {
  const pages = generatedSpace(8)
  const rig = await ingestRig(t, { pages, ollama: { embedDimension: DIM } })
  const first = await rig.startWorker()
  const source = await rig.register()
  await sync(t, rig, source, 'with the default prefix')
  const chunks = (await rig.rows()).length
  await first.worker.close()
  await first.ingest.close()

  await rig.startWorker({ EMBED_DOCUMENT_PREFIX: 'passage: ' })
  const from = rig.ollama.requests.length
  const run = await sync(t, rig, source, 'with the new prefix')
  t.match(run.progress, { converted: 0, unchanged: 8 }, 'no page fetched or converted again')
  await filled(rig)
  t.same(await recorded(rig), { document: 'passage: ', query: 'search_query: ' })
  t.same(await madeOtherwise(rig, 'passage: '), [], 'every vector made with the new prefix')
  const inputs = embedInputs(rig, from)
  t.ok(inputs.length >= chunks, 'every chunk embedded again')
  t.ok(inputs.every((input) => input.startsWith('passage: ')))

  // A page edited now is embedded with the new prefix as well, and the whole index equals a
  // sync from scratch with the new setting.
  Object.assign(pages[2] as StandInPage, { version: 2, storage: '<p>Edited after the change.</p>' })
  t.match((await sync(t, rig, source, 'an edit')).progress, { converted: 1, embedded: 1 })
  await sameAsFromScratch(t, rig, source, await syncFromScratch(t, rig))
  t.same(await madeOtherwise(rig, 'passage: '), [])
})

t.test('a new EMBED_QUERY_PREFIX alone re-embeds nothing and updates the metadata', async (t) => {
  const rig = await ingestRig(t, { pages: generatedSpace(5), ollama: { embedDimension: DIM } })
  const first = await rig.startWorker()
  const source = await rig.register()
  await sync(t, rig, source, 'first sync')
  const before = await rig.rows()
  await first.worker.close()
  await first.ingest.close()

  const second = await rig.startWorker({ EMBED_QUERY_PREFIX: 'question: ' })
  const from = rig.ollama.requests.length
  const run = await sync(t, rig, source, 'with the new query prefix')
  t.match(run.progress, { converted: 0, embedded: 0, unchanged: 5 })
  t.same(embedInputs(rig, from), [], 'nothing embedded')
  t.same(await recorded(rig), { document: 'search_document: ', query: 'question: ' })
  t.same(await rig.rows(), before, 'rows and vectors as they were')

  // `none`: no prefix at all, recorded as ''.
  await second.worker.close()
  await second.ingest.close()
  await rig.startWorker({ EMBED_QUERY_PREFIX: 'none' })
  const third = rig.ollama.requests.length
  await sync(t, rig, source, 'with no query prefix')
  t.same(await recorded(rig), { document: 'search_document: ', query: '' })
  t.same(embedInputs(rig, third), [])
  t.same(await rig.rows(), before)
})

t.test(
  'a table written before prefixes were recorded re-embeds once with the model prefix',
  async (t) => {
    const pages = generatedSpace(6)
    const rig = await ingestRig(t, { pages, ollama: { embedDimension: DIM } })
    // Vectors made without prefixes, as every version before this one made them ...
    const first = await rig.startWorker({
      EMBED_DOCUMENT_PREFIX: 'none',
      EMBED_QUERY_PREFIX: 'none',
    })
    const source = await rig.register()
    await sync(t, rig, source, 'without prefixes')
    await first.worker.close()
    await first.ingest.close()
    t.same(await madeOtherwise(rig, ''), [])
    // ... in a table whose metadata names the model and dimension only.
    const full = chunkSchema({ model: MODEL, dim: DIM, documentPrefix: '', queryPrefix: '' })
    const legacy = (meta: Map<string, string>) =>
      new Map([...meta].filter(([key]) => key === EmbedMeta.model || key === EmbedMeta.dim))
    const schema = new arrow.Schema(
      full.fields.map((f) =>
        f.name === 'vector' ? new arrow.Field(f.name, f.type, f.nullable, legacy(f.metadata)) : f,
      ),
      legacy(full.metadata),
    )
    const db = await lancedbConnect(rig.lancedbUri)
    const rows = await rig.rows()
    const table = await db.createTable(CHUNKS_TABLE, rowsToArrow(schema, rows as never), {
      mode: 'overwrite',
    })
    table.close()
    db.close()
    t.same(await recorded(rig), { document: undefined, query: undefined })

    // The upgrade rolls out: an old worker (its claim names the model alone) still runs, so the
    // new worker embeds as the table's vectors were made, without a prefix.
    await rig.client.zadd(embedModelsKey, Date.now() + EMBED_CLAIM_MS, `old-pod\n${MODEL}`)
    await rig.startWorker()
    Object.assign(pages[0] as StandInPage, {
      version: 2,
      storage: '<p>Edited during the update.</p>',
    })
    const during = rig.ollama.requests.length
    await sync(t, rig, source, 'during the rollout')
    t.same(embedInputs(rig, during).length > 0, true)
    t.ok(embedInputs(rig, during).every((input) => !input.startsWith('search_document: ')))
    t.same(await recorded(rig), { document: undefined, query: undefined }, 'the table as it was')
    t.same(await madeOtherwise(rig, ''), [])

    // The old worker has gone: the next sync re-embeds every chunk once with nomic's prefixes.
    await rig.client.zrem(embedModelsKey, `old-pod\n${MODEL}`)
    const after = rig.ollama.requests.length
    await sync(t, rig, source, 'after the rollout')
    await filled(rig)
    t.same(await recorded(rig), { document: 'search_document: ', query: 'search_query: ' })
    t.same(await madeOtherwise(rig, 'search_document: '), [])
    t.ok(embedInputs(rig, after).every((input) => input.startsWith('search_document: ')))
    await sameAsFromScratch(t, rig, source, await syncFromScratch(t, rig))
  },
)

t.test('a finish step whose crawl chose another document prefix fills nothing', async (t) => {
  const pages = generatedSpace(4)
  const rig = await ingestRig(t, { pages, ollama: { embedDimension: DIM } })
  await rig.startWorker()
  const source = await rig.register()
  await sync(t, rig, source, 'first sync')
  // An edit stored while the model is away: its chunks wait for a fill.
  const models = rig.ollama.options.models
  rig.ollama.options.models = []
  Object.assign(pages[1] as StandInPage, { version: 2, storage: '<p>Edited while away.</p>' })
  await sync(t, rig, source, 'model away')
  rig.ollama.options.models = models
  t.ok((await rig.rows()).some((r) => r.vector === null))

  // The finish step of a sync whose crawl chose a prefix the table no longer records (the
  // dashboard may also queue such step data): it must not fill with that prefix.
  const queue = new Queue(QueueName.sync, { connection: rig.client, prefix: QUEUE_PREFIX })
  t.teardown(() => queue.close())
  const stale = { model: MODEL, dim: DIM, document_prefix: 'stale: ', query_prefix: '' }
  const from = rig.ollama.requests.length
  const job = await queue.add(
    JobName.sync,
    { source_id: source, step: 'finish', gone: [], indexed: 4, embed: stale },
    syncJobOptions(source),
  )
  const run = await rig.waitFor(job.id as string)
  t.equal(run.state, 'completed', run.failedReason ?? '')
  t.same(embedInputs(rig, from), [], 'nothing embedded with the stale prefix')
  t.ok((await rig.rows()).some((r) => r.vector === null))

  // The next real sync fills them with the table's prefix.
  await sync(t, rig, source, 'next sync')
  await filled(rig)
  t.same(await madeOtherwise(rig, 'search_document: '), [])
})

t.test('a batch run by a worker of other prefixes embeds as its crawl chose', async (t) => {
  const rig = await ingestRig(t, { pages: generatedSpace(8), ollama: { embedDimension: DIM } })
  const source = await rig.register()
  // The crawl runs on a worker of the defaults (no table yet: its choice is deferred in that
  // process); its page batches wait until a worker configured otherwise has taken its place,
  // so that worker creates the table from the batches' rows.
  const pagesQueue = new Queue(QueueName.pages, { connection: rig.client, prefix: QUEUE_PREFIX })
  t.teardown(() => pagesQueue.close())
  await pagesQueue.pause()
  const first = await rig.startWorker()
  const id = await rig.enqueue(source)
  const syncQueue = new Queue(QueueName.sync, { connection: rig.client, prefix: QUEUE_PREFIX })
  t.teardown(() => syncQueue.close())
  while ((await syncQueue.getJobState(id)) !== 'waiting-children') {
    await new Promise((r) => setTimeout(r, 50))
  }
  await first.worker.close()
  await first.ingest.close()
  await rig.startWorker({ EMBED_DOCUMENT_PREFIX: 'passage: ', EMBED_QUERY_PREFIX: 'query: ' })
  const from = rig.ollama.requests.length
  await pagesQueue.resume()
  const run = await rig.waitFor(id)
  t.equal(run.state, 'completed', run.failedReason ?? '')
  t.match(run.progress, { converted: 8, embedded: 8 })
  t.ok(embedInputs(rig, from).every((input) => input.startsWith('search_document: ')))
  t.same(await madeOtherwise(rig, 'search_document: '), [])
  t.same(
    await recorded(rig),
    { document: 'search_document: ', query: 'search_query: ' },
    'the table records the prefixes the vectors were made with, query prefix included',
  )

  // The next sync on the new worker switches the table to its prefixes and re-embeds.
  await sync(t, rig, source, 'on the new worker')
  await filled(rig)
  t.same(await recorded(rig), { document: 'passage: ', query: 'query: ' })
  t.same(await madeOtherwise(rig, 'passage: '), [])
})

t.test(
  'a rolling update of the document prefix switches once the old workers are gone',
  async (t) => {
    const rig = await ingestRig(t, { pages: generatedSpace(5), ollama: { embedDimension: DIM } })
    const source = await rig.register()
    const old = await rig.startWorker()
    await sync(t, rig, source, 'before the update')
    // Another old worker runs on elsewhere (its claim as a worker of the defaults makes it).
    const oldSetup = {
      model: MODEL,
      documentPrefix: 'search_document: ',
      queryPrefix: 'search_query: ',
    }
    await claimEmbedModel(rig.client, 'old-pod-2', oldSetup)
    await old.worker.close()
    await old.ingest.close()
    await rig.startWorker({ EMBED_DOCUMENT_PREFIX: 'passage: ' })
    const during = rig.ollama.requests.length
    await sync(t, rig, source, 'during the update')
    t.same(await recorded(rig), { document: 'search_document: ', query: 'search_query: ' })
    t.same(embedInputs(rig, during), [], 'nothing re-embedded while an old worker runs')

    await withdrawEmbedModel(rig.client, 'old-pod-2', oldSetup)
    await sync(t, rig, source, 'after the update')
    await filled(rig)
    t.same(await recorded(rig), { document: 'passage: ', query: 'search_query: ' })
    t.same(await madeOtherwise(rig, 'passage: '), [])
  },
)

t.test('job data carries the chosen prefixes; a job from before prefixes names none', async (t) => {
  const chosen = { model: 'm', dim: 4, documentPrefix: 'd: ', queryPrefix: 'q: ' }
  const data = jobEmbedding(chosen)
  t.same(data, { model: 'm', dim: 4, document_prefix: 'd: ', query_prefix: 'q: ' })
  t.same(jobPrefixes(data), { document: 'd: ', query: 'q: ' })
  t.equal(jobEmbedding(null), null)
  t.same(jobPrefixes(null), { document: '', query: '' })
  t.same(jobPrefixes({ model: 'm', dim: 4 }), { document: '', query: '' })
})
