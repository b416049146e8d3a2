import { QUEUE_PREFIX, QueueName } from '@confluence-bot/shared'
import { Queue } from 'bullmq'
import t from 'tap'
import { SUB_BATCH_BYTES, SUB_BATCH_ROWS } from '../../../services/worker/src/processors/pages.ts'
import type { StandInPage } from '../../helpers/confluence-stand-in.ts'
import { ingestRig } from '../../helpers/ingest.ts'

// A page batch is bounded by bytes and chunks, not only by its page count: a batch of a few
// large pages embeds and writes them in sub-batches (a page is never split), so it never holds
// every chunk, text and vector of the batch at once. Seen from outside: the batch writes several
// times, no embed call mixes chunks of two sub-batches, and the index ends as a whole write would
// have left it.

const words = (n: number) => Array.from({ length: n }, (_, i) => `word${i % 97}`).join(' ')

/** A page of `sections` sections, each its own chunk (too big to merge with the next). */
const manyChunks = (id: string, sections: number): StandInPage => ({
  id,
  title: `Many chunks ${id}`,
  spaceKey: 'ENG',
  version: 1,
  storage: Array.from(
    { length: sections },
    (_, i) => `<h2>Part ${i}</h2><p>${words(120)}</p>`,
  ).join(''),
})

/** A page of `bytes` bytes of storage that yields little text (markup the converter drops). */
const heavy = (id: string, bytes: number): StandInPage => ({
  id,
  title: `Heavy ${id}`,
  spaceKey: 'ENG',
  version: 1,
  storage: `<h1>Heavy</h1><p>${words(50)}</p><!-- ${'x'.repeat(bytes)} --><p>${words(50)}</p>`,
})

const small = (id: string): StandInPage => ({
  id,
  title: `Small ${id}`,
  spaceKey: 'ENG',
  version: 1,
  storage: `<p>${words(80)}</p>`,
})

t.test('a batch of large pages is embedded and written in bounded sub-batches', async (t) => {
  const pages = [
    manyChunks('2001', SUB_BATCH_ROWS + 50),
    heavy('2002', SUB_BATCH_BYTES + 1024),
    small('2003'),
    small('2004'),
  ]
  // Converting a page of megabytes holds the event loop for a while, for seconds on a loaded
  // machine: a lock that outlives it keeps the batch from being taken as stalled.
  const rig = await ingestRig(t, {
    pages,
    env: { SYNC_BATCH_PAGES: '10', WORKER_LOCK_MS: '60000' },
  })
  await rig.startWorker()
  const run = await rig.waitFor(await rig.enqueue(await rig.register()), 120_000)
  t.equal(run.state, 'completed', run.failedReason ?? '')
  t.match(
    run.progress,
    { discovered: 4, converted: 4, embedded: 4, failed: 0 },
    JSON.stringify(run.errors),
  )

  const queue = new Queue(QueueName.pages, { connection: rig.client, prefix: QUEUE_PREFIX })
  t.teardown(() => queue.close())
  const [batch, ...more] = await queue.getJobs(['completed'])
  t.equal(more.length, 0, 'one page batch')
  t.match(batch?.returnvalue, { converted: 4, embedded: 4, writes: 3 })

  // Each embed call's texts come from one sub-batch: the many-chunk page (over the chunk cap),
  // the heavy page (over the byte cap), then the two small pages together.
  const groups = [['2001'], ['2002'], ['2003', '2004']]
  const groupOf = (text: string) => {
    const title = /(Many chunks|Heavy|Small) (\d+)/.exec(text)?.[2] as string
    return groups.findIndex((g) => g.includes(title))
  }
  const calls = rig.ollama.requests
    .filter((r) => r.path === '/api/embed')
    .map((r) => (r.body as { input: string[] }).input)
    .filter((input) => input[0] !== 'dimension probe')
  const mixed = calls.filter((input) => new Set(input.map(groupOf)).size > 1)
  t.same(mixed.length, 0, 'no embed call mixes two sub-batches')
  t.same(
    [...new Set(calls.map((input) => groupOf(input[0] as string)))],
    [0, 1, 2],
    'sub-batches go in page order',
  )

  const rows = await rig.rows()
  const byPage = new Map<string, number>()
  for (const row of rows)
    byPage.set(String(row.page_id), (byPage.get(String(row.page_id)) ?? 0) + 1)
  t.ok((byPage.get('2001') ?? 0) > SUB_BATCH_ROWS, 'the many-chunk page is whole')
  t.same([...byPage.keys()].sort(), ['2001', '2002', '2003', '2004'])
  t.ok(
    rows.every((r) => Array.isArray(r.vector) && r.embed_model !== ''),
    'every chunk has its vector',
  )
})
