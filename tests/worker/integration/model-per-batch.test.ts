import {
  claimEmbedModel,
  configuredEmbedSetup,
  defaultEmbedPrefixes,
  EMBED_CLAIM_MS,
  QUEUE_PREFIX,
  QueueName,
  withdrawEmbedModel,
} from '@confluence-bot/shared'
import { Queue } from 'bullmq'
import t from 'tap'
import { embedText } from '../../../services/worker/src/ingest/rows.ts'
import {
  generatedSpace,
  ingestRig,
  type Rig,
  SECOND_EMBED_MODEL,
  withSecondEmbedModel,
} from '../../helpers/ingest.ts'
import { expectedEmbedding } from '../../helpers/ollama-stand-in.ts'

// A vector is stored under the name of the model that made it, whichever worker runs the batch:
// a sync crawled by a worker of one model and finished by a worker of another (a rolling update,
// a restart with a new EMBED_MODEL, a CLI run beside the service) must not label the second
// model's vectors with the first one's name. Two models of the same dimension would otherwise mix
// in the table unnoticed, and a later sync would trust the label and never repair them.

const DIM = 32

/** A worker's claim with the default prefixes of its model (as the rig's workers make it). */
const setupOf = (model: string) =>
  configuredEmbedSetup({ EMBED_MODEL: model, EMBED_QUERY_PREFIX: '', EMBED_DOCUMENT_PREFIX: '' })

/**
 * Rows whose vector is not the one the model they name gives for their text (with that model's
 * default document prefix, as the rig's workers embed).
 */
async function mislabelled(rig: Rig) {
  return (await rig.rows()).filter((row) => {
    if (row.embed_model === '' || row.vector === null) return false
    const prefix = defaultEmbedPrefixes(String(row.embed_model)).document
    const text = prefix + embedText({ breadcrumb: String(row.breadcrumb), text: String(row.text) })
    const want = expectedEmbedding(String(row.embed_model), text, DIM).map(Math.fround)
    return (row.vector as number[]).some((v, i) => v !== want[i])
  })
}

t.test('a batch run by a worker of another model keeps its crawl model', async (t) => {
  const pages = generatedSpace(12)
  const rig = await ingestRig(t, {
    pages,
    ollama: { models: withSecondEmbedModel(), embedDimension: DIM },
  })
  const source = await rig.register()
  // The crawl runs on a worker of the default model; its page batches wait (the queue is paused)
  // until that worker has gone and one of the second model took its place.
  const pagesQueue = new Queue(QueueName.pages, { connection: rig.client, prefix: QUEUE_PREFIX })
  t.teardown(() => pagesQueue.close())
  await pagesQueue.pause()
  const first = await rig.startWorker()
  const id = await rig.enqueue(source)
  const sync = new Queue(QueueName.sync, { connection: rig.client, prefix: QUEUE_PREFIX })
  t.teardown(() => sync.close())
  for (;;) {
    if ((await sync.getJobState(id)) === 'waiting-children') break
    await new Promise((r) => setTimeout(r, 50))
  }
  await first.worker.close()
  await first.ingest.close()
  await rig.startWorker({ EMBED_MODEL: SECOND_EMBED_MODEL })
  await pagesQueue.resume()
  const run = await rig.waitFor(id)
  t.equal(run.state, 'completed', run.failedReason ?? '')
  t.equal(run.progress.failed, 0)

  const rows = await rig.rows()
  t.ok(rows.length > 0)
  t.same(await mislabelled(rig), [], 'every vector made by the model it names')
  t.ok(
    rows.every((r) => r.embed_model === 'nomic-embed-text'),
    'the crawl chose the table model: the batches embed with it',
  )

  // The next sync on the new worker switches the table to its model and refills every row.
  const next = await rig.waitFor(await rig.enqueue(source))
  t.equal(next.state, 'completed', next.failedReason ?? '')
  for (let i = 0; i < 200; i++) {
    const now = await rig.rows()
    if (now.every((r) => r.embed_model === SECOND_EMBED_MODEL)) break
    await new Promise((r) => setTimeout(r, 100))
  }
  t.ok(
    (await rig.rows()).every((r) => r.embed_model === SECOND_EMBED_MODEL),
    'the second model in the end',
  )
  t.same(await mislabelled(rig), [], 'still every vector made by the model it names')
})

t.test('a rolling update switches the table once, when the last old worker has gone', async (t) => {
  const rig = await ingestRig(t, {
    pages: generatedSpace(6),
    ollama: { models: withSecondEmbedModel(), embedDimension: DIM },
  })
  const source = await rig.register()
  const models = async () => [...new Set((await rig.rows()).map((r) => r.embed_model))]
  const sync = async (what: string) => {
    const run = await rig.waitFor(await rig.enqueue(source, { full: true }))
    t.equal(run.state, 'completed', `${what}: ${run.failedReason ?? ''}`)
  }

  const old = await rig.startWorker()
  await sync('before the update')
  t.same(await models(), ['nomic-embed-text'])

  // The update: another old worker runs on elsewhere (its claim, as a worker makes it), while
  // this one is replaced by a worker of the second model.
  await claimEmbedModel(rig.client, 'old-pod-2', setupOf('nomic-embed-text'))
  await old.worker.close()
  const newer = await rig.startWorker({ EMBED_MODEL: SECOND_EMBED_MODEL })
  await sync('during the update, on the new worker')
  t.same(await models(), ['nomic-embed-text'], 'the table stays while an old worker runs')
  t.same(await mislabelled(rig), [])

  // The last old worker goes: the next sync switches the table to the new model.
  await withdrawEmbedModel(rig.client, 'old-pod-2', setupOf('nomic-embed-text'))
  await sync('after the update')
  t.same(await models(), [SECOND_EMBED_MODEL], 'switched once the update is done')
  t.same(await mislabelled(rig), [])

  // A rollback (or an old worker restarting) switches nothing while a new worker runs ...
  await claimEmbedModel(rig.client, 'new-pod-2', setupOf(SECOND_EMBED_MODEL))
  await newer.worker.close()
  await rig.startWorker()
  await sync('during the rollback, on the old model')
  t.same(await models(), [SECOND_EMBED_MODEL], 'the table stays while a worker of its model runs')
  // ... nor does a claim that lapsed (a worker that died) keep it: the model comes back.
  await claimEmbedModel(
    rig.client,
    'new-pod-2',
    setupOf(SECOND_EMBED_MODEL),
    Date.now() - EMBED_CLAIM_MS,
  )
  await sync('after the rollback')
  t.same(await models(), ['nomic-embed-text'], 'the rolled-back model')
  t.same(await mislabelled(rig), [])
})

t.test('a new model Ollama cannot run yet leaves the table on the model it has', async (t) => {
  const pages = generatedSpace(6)
  const rig = await ingestRig(t, { pages, ollama: { embedDimension: DIM } })
  const source = await rig.register()
  const first = await rig.startWorker()
  t.equal((await rig.waitFor(await rig.enqueue(source))).state, 'completed')
  await first.worker.close()

  // The new worker names a model that is not pulled: its sync embeds with the table's model.
  await rig.startWorker({ EMBED_MODEL: 'not-pulled-yet' })
  Object.assign(pages[0] as (typeof pages)[number], { version: 2, storage: '<p>Edited.</p>' })
  const run = await rig.waitFor(await rig.enqueue(source))
  t.equal(run.state, 'completed', run.failedReason ?? '')
  t.match(run.progress, { converted: 1, embedded: 1 })
  const rows = await rig.rows()
  t.ok(
    rows.every((r) => r.embed_model === 'nomic-embed-text' && r.vector !== null),
    'every row keeps a vector of the model the table records',
  )
  t.same(await mislabelled(rig), [])
})
