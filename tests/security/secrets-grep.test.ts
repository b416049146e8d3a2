import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { QUEUE_PREFIX } from '@confluence-bot/shared'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import type { Redis } from 'ioredis'
import t from 'tap'
import { ADMIN_KEY, READER_KEY } from '../helpers/api.ts'
import { GROUNDED_PAGES } from '../helpers/grounded.ts'
import { ingestRig } from '../helpers/ingest.ts'
import { runService } from '../helpers/process.ts'
import { freePort } from '../helpers/redis.ts'

// Secrets never leak, proven on a whole run: a real worker process and a real api process,
// both logging at `trace`, against real Redis, the Confluence stand-in requiring credentials
// and the Ollama stand-in behind a URL with a password and a query token. The run registers a
// source with distinctive credentials, syncs, searches, asks (three APIs), lists sources and
// jobs, and fails a sync on purpose with a wrong token. Then every log line of both processes,
// every Redis key and value (by type), every file the services wrote and every response body
// and header is searched for each secret, as it is and in the encodings it travels in (base64
// of Basic auth, percent-encoding).

const USER = 'svc-zq7-bot@acme.test'
const TOKEN = 'CFL-TOKEN-k8Qw2mZr9Tx4'
const WRONG_TOKEN = 'CFL-WRONG-p3Lv6Nc1Hy0s'
const SECRETS_KEY = Buffer.from('secrets-grep-test-key-0123456789').toString('base64')
const OLLAMA_USER = 'olla-user-r5'
const OLLAMA_PASSWORD = 'OLLA-PASS-x9Vb3Kq'
const OLLAMA_QUERY_TOKEN = 'OLLA-QTOK-m2Zt8Wd'

const SECRETS: Record<string, string> = {
  'the Confluence token': TOKEN,
  'the wrong Confluence token': WRONG_TOKEN,
  'the Confluence user name': USER,
  'the reader API key': READER_KEY,
  'the admin API key': ADMIN_KEY,
  SECRETS_KEY,
  'SECRETS_KEY (hex)': Buffer.from(SECRETS_KEY, 'base64').toString('hex'),
  "OLLAMA_URL's password": OLLAMA_PASSWORD,
  "OLLAMA_URL's query token": OLLAMA_QUERY_TOKEN,
}

/** Each secret in the forms it could leak in: as is, in a Basic header, percent-encoded. */
function needles(): Array<[string, string]> {
  const out: Array<[string, string]> = []
  for (const [name, value] of Object.entries(SECRETS)) {
    out.push([name, value], [`${name} (base64)`, Buffer.from(value).toString('base64')])
    if (encodeURIComponent(value) !== value) out.push([`${name} (url)`, encodeURIComponent(value)])
  }
  const basic = (user: string, password: string) =>
    Buffer.from(`${user}:${password}`).toString('base64')
  out.push(
    ['Basic auth with the Confluence token', basic(USER, TOKEN)],
    ['Basic auth with the wrong Confluence token', basic(USER, WRONG_TOKEN)],
    ["Basic auth with OLLAMA_URL's password", basic(OLLAMA_USER, OLLAMA_PASSWORD)],
  )
  return out
}

/** Every key and value in Redis, each as one text with where it was found. */
async function dumpRedis(redis: Redis): Promise<Array<[string, string]>> {
  const out: Array<[string, string]> = []
  let cursor = '0'
  do {
    const [next, keys] = await redis.scan(cursor, 'COUNT', 500)
    cursor = next
    for (const key of keys) {
      const type = await redis.type(key)
      let values: unknown
      if (type === 'string') values = await redis.get(key)
      else if (type === 'hash') values = await redis.hgetall(key)
      else if (type === 'list') values = await redis.lrange(key, 0, -1)
      else if (type === 'set') values = await redis.smembers(key)
      else if (type === 'zset') values = await redis.zrange(key, '0', '-1', 'WITHSCORES')
      else if (type === 'stream') values = await redis.xrange(key, '-', '+')
      else values = `(type ${type})`
      out.push([`redis key name ${key}`, key])
      out.push([`redis ${type} ${key}`, JSON.stringify(values)])
    }
  } while (cursor !== '0')
  return out
}

/** Every file under `dir`, as text (LanceDB's files are binary: strings in them still show). */
function dumpFiles(dir: string): Array<[string, string]> {
  const out: Array<[string, string]> = []
  for (const name of readdirSync(dir, { recursive: true }) as string[]) {
    const path = join(dir, name)
    if (statSync(path).isFile()) out.push([`file ${path}`, readFileSync(path).toString('latin1')])
  }
  return out
}

t.test('no secret of a full run is in any log, Redis value, file or response', async (t) => {
  const rig = await ingestRig(t, {
    pages: GROUNDED_PAGES,
    confluence: { auth: { type: 'basic', username: USER, token: TOKEN } },
    ollama: {
      embedDimension: 64,
      tokens: ['Deploy ', 'with ', 'Helm ', '[1].'],
    },
  })
  const ollama = new URL(rig.ollama.url)
  ollama.username = OLLAMA_USER
  ollama.password = OLLAMA_PASSWORD
  ollama.search = `?token=${OLLAMA_QUERY_TOKEN}`
  const port = await freePort()
  const env = {
    ...rig.env,
    LOG_LEVEL: 'trace',
    OLLAMA_URL: ollama.toString(),
    SECRETS_KEY,
    API_KEYS: READER_KEY,
    ADMIN_API_KEYS: ADMIN_KEY,
    HOST: '127.0.0.1',
    PORT: String(port),
    RAG_MIN_SIMILARITY: '-1',
    RAG_REWRITE_FOLLOW_UPS: 'false',
  }
  const worker = runService(t, 'services/worker/src/main.ts', env)
  const api = runService(t, 'services/api/src/server.ts', env)
  await worker.waitFor(/worker started/, 60_000)
  await api.waitFor(/Server listening/, 60_000)
  const base = `http://127.0.0.1:${port}`

  // Every exchange of the run, kept whole: status line, headers and body.
  const exchanges: Array<[string, string]> = []
  async function call(method: string, path: string, key: string, body?: unknown) {
    const res = await fetch(`${base}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${key}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    })
    const text = await res.text()
    const headers = [...res.headers].map(([k, v]) => `${k}: ${v}`).join('\n')
    exchanges.push([`response to ${method} ${path}`, `${res.status}\n${headers}\n\n${text}`])
    let json: Record<string, unknown> = {}
    try {
      json = JSON.parse(text)
    } catch {
      // a stream or text: kept in `exchanges` as it is
    }
    return { status: res.status, json, text }
  }
  async function syncAndWait(sourceId: string) {
    const queued = await call('POST', `/api/sources/${sourceId}/sync`, ADMIN_KEY, {})
    t.equal(queued.status, 202, queued.status === 202 ? 'queued' : queued.text)
    const jobId = queued.json.job_id as string
    for (let i = 0; i < 600; i++) {
      const job = await call('GET', `/api/jobs/${encodeURIComponent(jobId)}`, ADMIN_KEY)
      if (job.json.state === 'completed' || job.json.state === 'failed') return job.json
      await new Promise((r) => setTimeout(r, 100))
    }
    throw new Error(`job ${jobId} did not finish`)
  }

  const source = {
    kind: 'cloud',
    base_url: rig.confluence.baseUrl,
    spaces: ['ENG', 'OPS'],
  }
  const created = await call('POST', '/api/sources', ADMIN_KEY, {
    ...source,
    name: 'Right credentials',
    auth: { type: 'basic', username: USER, token: TOKEN },
  })
  t.equal(created.status, 201, created.status === 201 ? 'created' : created.text)
  t.equal(created.json.has_credentials, true)
  const synced = await syncAndWait(created.json.id as string)
  t.equal(synced.state, 'completed', String(synced.failed_reason))

  const search = await call('POST', '/api/search', READER_KEY, { query: 'deploy billing helm' })
  t.equal(search.status, 200, search.status === 200 ? 'search' : search.text)
  const asked = await call('POST', '/api/chat', READER_KEY, {
    messages: [{ role: 'user', content: 'How is billing deployed?' }],
    stream: false,
  })
  t.equal(asked.status, 200, asked.status === 200 ? 'asked' : asked.text)
  t.ok((asked.json.sources as unknown[] | undefined)?.length, 'a grounded answer with sources')
  const streamed = await call('POST', '/api/chat', READER_KEY, {
    messages: [{ role: 'user', content: 'How do I roll back billing?' }],
  })
  t.equal(streamed.status, 200)
  const openai = await call('POST', '/v1/chat/completions', READER_KEY, {
    model: 'llama3.2',
    messages: [{ role: 'user', content: 'Who is paged for SEV1?' }],
  })
  t.equal(openai.status, 200, openai.status === 200 ? 'openai' : openai.text)
  const compat = await call('POST', '/ollama/api/chat', READER_KEY, {
    model: 'llama3.2',
    messages: [{ role: 'user', content: 'Who is on call?' }],
    stream: false,
  })
  t.equal(compat.status, 200, compat.status === 200 ? 'compat' : compat.text)

  // MCP's ask through the SDK client, every exchange recorded as the other responses are.
  const recording = async (input: string | URL | Request, init?: RequestInit) => {
    const res = await fetch(input, init)
    const text = await res.clone().text()
    const headers = [...res.headers].map(([k, v]) => `${k}: ${v}`).join('\n')
    exchanges.push([
      `MCP response to ${init?.method ?? 'GET'}`,
      `${res.status}\n${headers}\n\n${text}`,
    ])
    return res
  }
  const mcp = new Client({ name: 'secrets-grep', version: '1.0.0' })
  await mcp.connect(
    new StreamableHTTPClientTransport(new URL(`${base}/mcp`), {
      requestInit: { headers: { Authorization: `Bearer ${READER_KEY}` } },
      fetch: recording,
    }),
  )
  const answered = (await mcp.callTool({
    name: 'ask',
    arguments: { question: 'How do I roll back billing?' },
  })) as { isError?: boolean }
  t.notOk(answered.isError, 'MCP ask answered')
  await mcp.close()

  const wrong = await call('POST', '/api/sources', ADMIN_KEY, {
    ...source,
    name: 'Wrong credentials',
    auth: { type: 'basic', username: USER, token: WRONG_TOKEN },
  })
  t.equal(wrong.status, 201, wrong.status === 201 ? 'wrong' : wrong.text)
  const failed = await syncAndWait(wrong.json.id as string)
  t.equal(failed.state, 'failed', 'the sync with a wrong token fails')
  t.match(failed.failed_reason, /refused the credentials/)

  for (const path of ['/api/sources', `/api/sources/${created.json.id}`, '/api/jobs']) {
    t.equal((await call('GET', path, ADMIN_KEY)).status, 200, path)
  }
  t.equal((await call('GET', '/admin/config', ADMIN_KEY)).status, 200)
  t.equal((await call('GET', '/api/health', READER_KEY)).status, 200)
  const refused = await call('GET', '/api/sources', READER_KEY)
  t.equal(refused.status, 403, 'a reader key is refused, and the refusal is grepped too')

  // The run is over: stop both processes so their logs are complete, then search everything.
  api.child.kill('SIGTERM')
  worker.child.kill('SIGTERM')
  await Promise.all([api.exit, worker.exit])
  const logs = (name: string, text: string): Array<[string, string]> =>
    text.split('\n').map((line, i) => [`${name} log line ${i + 1}`, line])
  const apiLog = logs('api', api.output())
  const workerLog = logs('worker', worker.output())
  // At `trace` both write their debug lines too (the worker one per Confluence request).
  t.ok(
    apiLog.some(([, l]) => l.includes('"level":20')),
    'the api logged below info',
  )
  t.ok(
    workerLog.filter(([, l]) => l.includes('"msg":"confluence request"')).length > 3,
    'the worker logged each Confluence request',
  )
  const haystack = [
    ...apiLog,
    ...workerLog,
    ...(await dumpRedis(rig.client)),
    ...dumpFiles(rig.lancedbUri),
    ...exchanges,
  ]
  t.ok(
    (await rig.client.hlen(`${QUEUE_PREFIX}:source-secrets`)) === 2,
    'both sources have credentials stored (sealed)',
  )
  // The search can find what it looks for: the secrets did travel, to the stand-ins.
  const seen = (requests: Array<{ headers: object; query: unknown }>) =>
    requests.map((r) => JSON.stringify([r.headers, r.query])).join('\n')
  const toConfluence = seen(rig.confluence.requests)
  const toOllama = seen(rig.ollama.requests)
  const found = (text: string, name: string) =>
    needles().some(([secret, needle]) => secret === name && text.includes(needle))
  t.ok(found(toConfluence, 'Basic auth with the Confluence token'), 'the credentials went out')
  t.ok(found(toConfluence, 'Basic auth with the wrong Confluence token'), 'the wrong ones too')
  t.ok(found(toOllama, "Basic auth with OLLAMA_URL's password"), "OLLAMA_URL's password too")
  t.ok(found(toOllama, "OLLAMA_URL's query token"), 'and its query token')

  const hits: string[] = []
  for (const [secret, needle] of needles()) {
    for (const [where, text] of haystack) {
      if (text.includes(needle)) hits.push(`${secret} in ${where}: ${text.slice(0, 300)}`)
    }
  }
  t.strictSame(hits, [], 'no secret anywhere')
  t.ok(haystack.length > 100, `${haystack.length} places searched`)
})
