import { loadWorkerConfig, QUEUE_PREFIX, QueueName } from '@confluence-bot/shared'
import { DelayedError, Queue, QueueEvents } from 'bullmq'
import { pino } from 'pino'
import t from 'tap'
import { request } from 'undici'
import { createEmbedder } from '../../services/worker/src/embed/embedder.ts'
import { startWorker } from '../../services/worker/src/worker.ts'
import { generatedSpace, ingestRig } from '../helpers/ingest.ts'
import { standIn } from '../helpers/ollama.ts'
import { startRedis } from '../helpers/redis.ts'

// The worker's /metrics on its probe endpoint, read as Prometheus reads it: over HTTP, in the
// text format. Counts come from real work (a sync through a real worker, real embed calls against
// the Ollama stand-in, a Confluence stand-in that rate-limits), and the job logs are read as
// written.

const TOKEN = 'metrics-token-0123456789'

async function scrape(port: number, authorization?: string) {
  const res = await request(`http://127.0.0.1:${port}/metrics`, {
    headers: authorization === undefined ? {} : { authorization },
  })
  return { status: res.statusCode, headers: res.headers, text: await res.body.text() }
}

/** The value of one sample (`name{labels}`), 0 when it is not there yet. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number {
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue
    const ok = Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))
    if (ok) return Number(line.slice(line.lastIndexOf(' ') + 1))
  }
  return 0
}

t.test('a sync is counted: pages, chunks, embed calls, job runs and 429s per source', async (t) => {
  const rig = await ingestRig(t, {
    pages: generatedSpace(7),
    // Every 4th request is a 429 with Retry-After: 0; the client waits and tries again.
    confluence: { rateLimit: { every: 4, retryAfterS: 0 } },
  })
  const source = await rig.register()
  const { worker } = await rig.startWorker()
  const id = await rig.enqueue(source)
  const done = await rig.waitFor(id)
  t.equal(done.state, 'completed', done.failedReason ?? 'the sync completed')

  const { status, headers, text } = await scrape(worker.healthPort)
  t.equal(status, 200)
  t.match(headers['content-type'], /^text\/plain; version=0\.0\.4/)
  const worker_ = (name: string) => `confluence_bot_worker_${name}`
  t.equal(sample(text, worker_('pages_indexed_total'), { source }), 7, 'every page')
  t.ok(sample(text, worker_('chunks_indexed_total'), { source }) >= 7, 'at least a chunk a page')
  t.ok(sample(text, worker_('embed_duration_seconds_count')) >= 1, 'embed calls are timed')
  t.ok(
    sample(text, worker_('confluence_errors_total'), { source, code: 'rate_limited' }) >= 1,
    "Confluence's 429s are counted under the source",
  )
  const job = (name: string, outcome: string) =>
    sample(text, worker_('job_duration_seconds_count'), {
      queue: QueueName.sync,
      job: name,
      outcome,
    })
  t.equal(job('sync', 'completed'), 1, 'the sync completed once')
  t.equal(job('sync', 'moved'), 1, 'after waiting for its page batches once (not a failure)')
  t.ok(
    sample(text, worker_('job_duration_seconds_count'), {
      queue: QueueName.pages,
      job: 'pages',
      outcome: 'completed',
    }) >= 2,
    'the page batches',
  )
  t.equal(sample(text, worker_('job_failures_total')), 0, 'no failures')
  t.ok(sample(text, 'process_resident_memory_bytes') > 0, 'process metrics')
  const labelSets = text.split('\n').map((line) => /\{[^}]*\}/.exec(line)?.[0] ?? '')
  t.notOk(
    labelSets.some((labels) => /1001|page_?id|job_?id/i.test(labels)),
    'no page or job ids as labels',
  )
})

t.test('failed and delayed runs, job logs naming the job and source, the token', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const config = loadWorkerConfig({
    REDIS_URL: redis.url,
    WORKER_HEALTH_PORT: '0',
    METRICS_TOKEN: TOKEN,
  })
  const lines: Array<Record<string, unknown>> = []
  const log = pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line)) })
  const worker = await startWorker(config, log, {
    [QueueName.sync]: {
      boom: async (_job, deps) => {
        deps.log.info('about to fail')
        throw new Error('boom')
      },
      later: async (job, deps) => {
        deps.log.info('putting it off')
        await job.moveToDelayed(Date.now() + 60_000, deps.token)
        throw new DelayedError()
      },
    },
  })
  t.teardown(() => worker.close())
  await worker.ready()
  const connection = { url: redis.url }
  const queue = new Queue(QueueName.sync, { connection, prefix: QUEUE_PREFIX })
  const events = new QueueEvents(QueueName.sync, { connection, prefix: QUEUE_PREFIX })
  t.teardown(async () => {
    await queue.close()
    await events.close()
  })
  await events.waitUntilReady()

  const failed = await queue.add('boom', { source_id: 'src-42' }, { attempts: 1 })
  await t.rejects(failed.waitUntilFinished(events, 10_000), /boom/)
  const stray = await queue.add('no-such-job-7', {}, { attempts: 1 })
  await t.rejects(stray.waitUntilFinished(events, 10_000), /No processor/)
  const later = await queue.add('later', {})
  for (let i = 0; i < 100 && (await later.getState()) !== 'delayed'; i++) {
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  t.equal(await later.getState(), 'delayed')

  const said = (msg: string) => lines.find((line) => line.msg === msg)
  t.match(said('about to fail'), {
    queue: QueueName.sync,
    jobName: 'boom',
    jobId: failed.id,
    attempt: 1,
    sourceId: 'src-42',
  })
  t.match(said('putting it off'), { jobName: 'later', jobId: later.id })
  t.notOk('sourceId' in (said('putting it off') ?? {}), 'a job of no source names none')

  t.equal((await scrape(worker.healthPort)).status, 401, 'no token')
  const wrong = await scrape(worker.healthPort, 'Bearer not-the-metrics-token')
  t.equal(wrong.status, 401, 'a wrong token')
  t.match(wrong.headers['www-authenticate'], /^Bearer/)
  const { status, text } = await scrape(worker.healthPort, `Bearer ${TOKEN}`)
  t.equal(status, 200)
  const labels = { queue: QueueName.sync, job: 'boom' }
  t.equal(sample(text, 'confluence_bot_worker_job_failures_total', labels), 1)
  t.equal(
    sample(text, 'confluence_bot_worker_job_duration_seconds_count', {
      ...labels,
      outcome: 'failed',
    }),
    1,
  )
  t.equal(
    sample(text, 'confluence_bot_worker_job_duration_seconds_count', {
      job: 'later',
      outcome: 'moved',
    }),
    1,
    'a delayed job moved itself: no failure',
  )
  t.equal(sample(text, 'confluence_bot_worker_job_failures_total', { job: 'later' }), 0)
  t.equal(
    sample(text, 'confluence_bot_worker_job_failures_total', { job: '(unknown)' }),
    1,
    'a job no processor takes fails under one label',
  )
  t.notMatch(text, /no-such-job-7/)
})

t.test('embed failures are counted by kind', async (t) => {
  const metric = async () => {
    const { embedFailures } = await import('../../services/worker/src/metrics.ts')
    const values = (await embedFailures.get()).values
    return (kind: string) => values.find((v) => v.labels.kind === kind)?.value ?? 0
  }
  const before = await metric()
  const down = createEmbedder({
    url: 'http://127.0.0.1:1',
    model: 'nomic-embed-text',
    batchSize: 8,
  })
  t.equal(await down.embed(['a'], 'nomic-embed-text'), null, 'unreachable: stored without vectors')
  const failing = await standIn(t, { failBeforeOutput: { status: 500, error: 'out of memory' } })
  const broken = createEmbedder({ url: failing.url, model: 'nomic-embed-text', batchSize: 8 })
  await t.rejects(broken.embed(['a'], 'nomic-embed-text'), /out of memory/)
  const after = await metric()
  t.equal(after('unreachable') - before('unreachable'), 1)
  t.equal(after('error') - before('error'), 1)
})
