import { buildApp } from '@confluence-bot/api'
import { QUEUE_PREFIX, QueueName } from '@confluence-bot/shared'
import { Queue } from 'bullmq'
import t from 'tap'
import { request } from 'undici'
import { searchDuration, timedSearches } from '../../services/api/src/lib/metrics.ts'
import { ADMIN_KEY, listenTestApp, READER_KEY, testConfig } from '../helpers/api.ts'
import { ENG_KEY, GROUNDED_PAGES, type Json, ndjsonLines, post } from '../helpers/grounded.ts'
import { ingestRig, rigApiEnv } from '../helpers/ingest.ts'
import { startRedis } from '../helpers/redis.ts'

// GET /metrics as Prometheus scrapes it (over a real socket, `authorization` from its scrape
// config), who may read it, and what it counts: requests by route pattern (never a raw URL),
// queue depth read from Redis, search latency and Ollama's failures. The request that queues a
// sync logs the job's id next to its own request id.

const TOKEN = 'metrics-token-0123456789'

async function scrape(url: string, authorization?: string) {
  const res = await request(`${url}/metrics`, {
    headers: authorization === undefined ? {} : { authorization },
  })
  const text = await res.body.text()
  return { status: res.statusCode, headers: res.headers, text }
}

/** The value of one sample (`name{labels}`), 0 when it is not there. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number {
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue
    const ok = Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))
    if (ok) return Number(line.slice(line.lastIndexOf(' ') + 1))
  }
  return 0
}

t.test(
  'who may scrape: METRICS_TOKEN or an admin key; open only when nothing is set',
  async (t) => {
    const redis = await startRedis()
    t.teardown(() => redis.stop())
    const keyed = await listenTestApp(t, {
      REDIS_URL: redis.url,
      API_KEYS: READER_KEY,
      ADMIN_API_KEYS: ADMIN_KEY,
      METRICS_TOKEN: TOKEN,
    })
    const none = await scrape(keyed.url)
    t.equal(none.status, 401, 'no key')
    t.match(JSON.parse(none.text), { error: 'unauthorized', statusCode: 401 })
    t.match(none.headers['www-authenticate'], /^Bearer/)
    t.equal((await scrape(keyed.url, 'Bearer not-a-key-or-the-token')).status, 401, 'a wrong key')
    const reader = await scrape(keyed.url, `Bearer ${READER_KEY}`)
    t.equal(reader.status, 403, 'a reader key')
    t.match(JSON.parse(reader.text), { error: 'forbidden' })
    t.equal((await scrape(keyed.url, `Bearer ${ADMIN_KEY}`)).status, 200, 'an admin key')
    const scraped = await scrape(keyed.url, `Bearer ${TOKEN}`)
    t.equal(scraped.status, 200, 'the metrics token')
    t.match(scraped.headers['content-type'], /^text\/plain; version=0\.0\.4/)
    const depth = { queue: QueueName.sync, state: 'waiting' }
    t.match(scraped.text, /^confluence_bot_queue_jobs\{/m, 'queue depths from Redis')
    t.equal(sample(scraped.text, 'confluence_bot_queue_jobs', depth), 0)
    t.ok(sample(scraped.text, 'process_resident_memory_bytes') > 0, 'process metrics')
    t.ok(sample(scraped.text, 'nodejs_eventloop_lag_seconds') >= 0)
    t.notMatch(scraped.text, new RegExp(`${TOKEN}|${ADMIN_KEY}|${READER_KEY}`), 'no key in it')

    // Ollama unreachable (nothing listens on OLLAMA_URL's port here) is counted.
    const unreachable = { kind: 'unreachable' }
    const before = sample(scraped.text, 'confluence_bot_ollama_errors_total', unreachable)
    const models = await request(`${keyed.url}/api/models`, {
      headers: { authorization: `Bearer ${READER_KEY}` },
    })
    await models.body.dump()
    t.equal(models.statusCode, 503)
    // A path no route matches is counted under one label, not its own.
    const stray = await request(`${keyed.url}/no/such/path/12345`)
    await stray.body.dump()
    t.equal(stray.statusCode, 404)
    const after = await scrape(keyed.url, `Bearer ${TOKEN}`)
    t.equal(sample(after.text, 'confluence_bot_ollama_errors_total', unreachable), before + 1)
    t.equal(
      sample(after.text, 'confluence_bot_http_requests_total', {
        route: '(unmatched)',
        status_code: '404',
      }),
      1,
    )
    t.notMatch(after.text, /no\/such\/path|12345/)

    const tokenOnly = await listenTestApp(t, { REDIS_URL: redis.url, METRICS_TOKEN: TOKEN })
    t.equal((await scrape(tokenOnly.url)).status, 401, 'auth off, a token set: it is required')
    t.equal((await scrape(tokenOnly.url, `Bearer ${ADMIN_KEY}`)).status, 401)
    t.equal((await scrape(tokenOnly.url, `Bearer ${TOKEN}`)).status, 200)

    // Redis is unreachable here: the scrape still answers, without queue depths, within the
    // readiness timeout.
    const open = await listenTestApp(t, { HEALTH_TIMEOUT_MS: '100' })
    const down = await scrape(open.url)
    t.equal(down.status, 200, 'auth off, no token: open like the API')
    t.match(down.text, /^# HELP confluence_bot_queue_jobs /m, 'the queue gauge is declared')
    t.notMatch(down.text, /^confluence_bot_queue_jobs\{/m, 'but has no depth with Redis down')
  },
)

t.test('requests by route pattern, queue depth, search latency, Ollama failures', async (t) => {
  const rig = await ingestRig(t, { pages: GROUNDED_PAGES, ollama: { embedDimension: 256 } })
  const { ingest } = await rig.startWorker()
  const sourceId = await rig.register()
  t.equal((await rig.waitFor(await rig.enqueue(sourceId))).state, 'completed')
  await ingest.ingest.store.maintain()

  const lines: Json[] = []
  const config = await testConfig(t, {
    API_KEYS: `${READER_KEY},${ENG_KEY}:ENG`,
    ADMIN_API_KEYS: ADMIN_KEY,
    ...rigApiEnv(rig),
    OLLAMA_URL: rig.ollama.url,
    RAG_ENABLED: 'true',
  })
  const app = buildApp({
    config,
    logger: { level: 'info', stream: { write: (line: string) => lines.push(JSON.parse(line)) } },
  })
  t.teardown(() => app.close())
  const url = await app.listen({ host: '127.0.0.1', port: 0 })
  const admin = `Bearer ${ADMIN_KEY}`

  // A job id and a query that never become labels.
  const job = await request(`${url}/api/jobs/no-such-job-4711?api_key=hunter2`, {
    headers: { authorization: admin },
  })
  await job.body.dump()
  t.equal(job.statusCode, 404)

  const found = await post(`${url}/api/search`, READER_KEY, { query: 'billing rollback' })
  t.equal(found.status, 200)

  // A sync queued by a request: its log line carries the request id and the job id.
  const queued = await post(`${url}/api/sources/${sourceId}/sync`, ADMIN_KEY, {})
  t.equal(queued.status, 202)
  const logged = lines.find((line) => line.msg === 'sync queued')
  t.match(logged, { jobId: queued.json.job_id, queue: QueueName.sync, sourceId })
  const completed = lines.find(
    (line) => line.msg === 'request completed' && String(line.url).endsWith('/sync'),
  )
  t.ok(completed?.reqId, 'the request has an id')
  t.equal(logged?.reqId, completed?.reqId, 'the same request id on both lines')
  t.equal((await rig.waitFor(queued.json.job_id)).state, 'completed')

  // Queue depth, read at scrape time: a delayed job sits there for the test's length.
  const queue = new Queue(QueueName.pages, { connection: rig.client, prefix: QUEUE_PREFIX })
  t.teardown(() => queue.close())
  await queue.add('pages', {}, { delay: 600_000 })

  // Ollama cutting a stream and answering an error.
  rig.ollama.options.truncateAfterTokens = 2
  const ask = { messages: [{ role: 'user', content: 'Hello?' }], rag: { enabled: false } }
  const cut = await post(`${url}/api/chat`, READER_KEY, { ...ask, stream: true })
  t.match(ndjsonLines(cut.text).at(-1), { error: 'ollama_stream_interrupted' })
  delete rig.ollama.options.truncateAfterTokens
  rig.ollama.options.failBeforeOutput = { status: 500, error: 'model runner crashed' }
  const failed = await post(`${url}/api/chat`, READER_KEY, { ...ask, stream: false })
  t.equal(failed.status, 502)
  delete rig.ollama.options.failBeforeOutput

  const { status, text } = await scrape(url, admin)
  t.equal(status, 200)
  t.equal(
    sample(text, 'confluence_bot_http_requests_total', {
      method: 'GET',
      route: '/api/jobs/:id',
      status_code: '404',
    }),
    1,
    'the route pattern, with its status',
  )
  t.ok(
    sample(text, 'confluence_bot_http_request_duration_seconds_count', {
      method: 'POST',
      route: '/api/search',
    }) >= 1,
    'durations by route',
  )
  t.notMatch(text, /no-such-job|hunter2|api_key/, 'no ids or query strings')
  t.ok(sample(text, 'confluence_bot_search_duration_seconds_count', { mode: 'hybrid' }) >= 1)
  t.equal(
    sample(text, 'confluence_bot_queue_jobs', { queue: QueueName.pages, state: 'delayed' }),
    1,
  )
  t.equal(sample(text, 'confluence_bot_queue_jobs', { queue: QueueName.sync, state: 'failed' }), 0)
  t.ok(sample(text, 'confluence_bot_ollama_errors_total', { kind: 'stream_cut' }) >= 1)
  t.ok(sample(text, 'confluence_bot_ollama_errors_total', { kind: 'error_status' }) >= 1)
})

t.test('a search that throws is timed as failed, and its error passes through', async (t) => {
  const failed = async () =>
    (await searchDuration.get()).values.find(
      (v) => v.labels.mode === 'failed' && v.metricName?.endsWith('_count'),
    )?.value ?? 0
  const before = await failed()
  let closed = false
  const index = timedSearches({
    search: async () => {
      throw new Error('the table is gone')
    },
    close: async () => {
      closed = true
    },
  })
  await t.rejects(index.search({ query: 'anything' }), /the table is gone/)
  t.equal(await failed(), before + 1)
  await index.close()
  t.ok(closed, 'closing reaches the index')
})
