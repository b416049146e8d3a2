import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import type { FastifyInstance } from 'fastify'
import { Ollama } from 'ollama'
import OpenAI from 'openai'
import t from 'tap'
import { AnswerSlots, type Release } from '../../../services/api/src/lib/answer-slots.ts'
import { bearer, listenTestApp, READER_KEY } from '../../helpers/api.ts'
import { ndjson, standIn } from '../../helpers/ollama.ts'
import { startRedis } from '../../helpers/redis.ts'

// Answer concurrency (review finding R1): one key cannot hold all of the api's connections to
// Ollama with slow streams. Over real sockets, with the Ollama stand-in pacing its tokens so
// streams stay open; each surface refuses in its own shape, and a slot comes back however the
// answer ends.

const KEY_B = 'second-reader-key-0123456789'
const KEY_C = 'third-reader-key-0123456789'
const MANY = Array.from({ length: 200 }, (_, i) => ` t${i}`)

const redis = await startRedis()
t.teardown(() => redis.stop())

type T = { teardown(fn: () => unknown): void }

async function rig(t: T, env: Record<string, string> = {}) {
  const ollama = await standIn(t)
  const { app, url } = await listenTestApp(t, {
    API_KEYS: [READER_KEY, KEY_B, KEY_C].join(','),
    REDIS_URL: redis.url,
    OLLAMA_URL: ollama.url,
    ANSWER_CONCURRENCY_PER_KEY: '1',
    ANSWER_CONCURRENCY: '2',
    ...env,
  })
  // A client that went away mid-stream leaves app.close() waiting out the keep-alive timeout
  // (72 s) on the other connections; the test has nothing more to say to them.
  t.teardown(() => app.server.closeAllConnections())
  return { app, url, ollama }
}

const chat = (url: string, key: string, signal?: AbortSignal, path = '/api/chat') =>
  fetch(`${url}${path}`, {
    method: 'POST',
    headers: { ...bearer(key), 'content-type': 'application/json' },
    body: JSON.stringify({ messages: [{ role: 'user', content: 'hi' }], stream: true }),
    signal,
  })

/** Waits until `check` holds (the slot is given back when the response has closed). */
async function until(check: () => boolean, what: string) {
  for (let i = 0; i < 200 && !check(); i++) await new Promise((r) => setTimeout(r, 25))
  if (!check()) throw new Error(`timed out waiting for ${what}`)
}

const idle = (app: FastifyInstance) => until(() => app.answerSlots.running() === 0, 'no answer')

async function mcpClient(t: T, url: string, key: string) {
  const client = new Client({ name: 'guards-test', version: '1.0.0' })
  const transport = new StreamableHTTPClientTransport(new URL(`${url}/mcp`), {
    requestInit: { headers: bearer(key) },
  })
  await client.connect(transport)
  t.teardown(() => client.close())
  return client
}

const rejection = (promise: Promise<unknown>) =>
  promise.then(
    () => ({}),
    (err: unknown) => err,
  )

t.test('per key 429, overall 503, on every answer route', async (t) => {
  const { app, url, ollama } = await rig(t)
  ollama.options.tokens = MANY
  ollama.options.tokenDelayMs = 100
  const held = new AbortController()
  const first = await chat(url, READER_KEY, held.signal)
  t.equal(first.status, 200, 'the first answer streams')
  t.equal(app.answerSlots.running(), 1)

  const again = await chat(url, READER_KEY)
  t.equal(again.status, 429)
  t.equal(again.headers.get('retry-after'), '2')
  t.match(await again.json(), {
    error: 'too_many_answers',
    message:
      /already has 1 answers or embeddings running.*ANSWER_CONCURRENCY_PER_KEY.*retry in 2 s/,
    statusCode: 429,
  })
  const generate = await fetch(`${url}/api/generate`, {
    method: 'POST',
    headers: bearer(READER_KEY),
    body: JSON.stringify({ prompt: 'hi' }),
  })
  t.equal(generate.status, 429, '/api/generate')
  await generate.arrayBuffer()

  const openai = new OpenAI({ baseURL: `${url}/v1`, apiKey: READER_KEY, maxRetries: 0 })
  const refused = await rejection(
    openai.chat.completions.create({
      model: 'llama3.2',
      messages: [{ role: 'user', content: 'x' }],
    }),
  )
  t.ok(refused instanceof OpenAI.RateLimitError, '/v1: the SDK raises RateLimitError')
  t.match(refused, { status: 429, error: { code: 'too_many_answers' } })

  const client = new Ollama({ host: `${url}/ollama`, headers: bearer(READER_KEY) })
  for (const call of [
    client.chat({ model: 'llama3.2', messages: [{ role: 'user', content: 'x' }] }),
    client.generate({ model: 'llama3.2', prompt: 'x' }),
  ]) {
    t.match(await rejection(call), {
      name: 'ResponseError',
      status_code: 429,
      error: /ANSWER_CONCURRENCY_PER_KEY/,
    })
  }

  const mcp = await mcpClient(t, url, READER_KEY)
  const asked = (await mcp.callTool({ name: 'ask', arguments: { question: 'hi?' } })) as {
    isError?: boolean
    content: Array<{ text: string }>
  }
  t.equal(asked.isError, true, 'MCP ask: a tool error...')
  t.match(
    asked.content[0]?.text,
    /^too_many_answers: This API key already has 1 answers or embeddings running.*\(ANSWER_CONCURRENCY_PER_KEY\); retry in 2 s/,
    '...starting with the code, naming the setting and when to retry',
  )

  const me = await fetch(`${url}/api/me`, { headers: bearer(READER_KEY) })
  t.equal(me.status, 200, 'what is not an answer is not capped')
  await me.arrayBuffer()

  const second = new AbortController()
  const other = await chat(url, KEY_B, second.signal)
  t.equal(other.status, 200, 'another key answers')
  const busy = await chat(url, KEY_C)
  t.equal(busy.status, 503, 'past ANSWER_CONCURRENCY the server is busy for everybody')
  t.equal(busy.headers.get('retry-after'), '5')
  t.match(await busy.json(), {
    error: 'answers_busy',
    message: /running 2 answers and embeddings at once.*\(ANSWER_CONCURRENCY\); retry in 5 s/,
  })
  const mcpB = await mcpClient(t, url, KEY_C)
  const busyAsk = (await mcpB.callTool({ name: 'ask', arguments: { question: 'hi?' } })) as {
    isError?: boolean
    content: Array<{ text: string }>
  }
  t.equal(busyAsk.isError, true, 'MCP ask past ANSWER_CONCURRENCY: a tool error...')
  t.match(busyAsk.content[0]?.text, /^answers_busy: .*\(ANSWER_CONCURRENCY\); retry in 5 s/)
  t.equal(app.answerSlots.running(), 2, 'refusals hold no slot')

  // The client goes away: the slot comes back and the upstream request is cancelled.
  held.abort()
  await ollama.waitForAbort()
  await until(() => app.answerSlots.running() === 1, 'the slot to come back')
  second.abort()
  await idle(app)
  ollama.options.tokenDelayMs = 0
  const after = await chat(url, READER_KEY)
  t.equal(after.status, 200, 'the key answers again')
  await after.text()
})

t.test('D2: embeddings take a slot under the same caps, on every surface', async (t) => {
  const { app, url, ollama } = await rig(t)
  ollama.options.tokens = MANY
  ollama.options.tokenDelayMs = 100
  const held = new AbortController()
  const first = await chat(url, READER_KEY, held.signal)
  t.equal(first.status, 200, "an answer holds the key's one slot")

  const openai = new OpenAI({ baseURL: `${url}/v1`, apiKey: READER_KEY, maxRetries: 0 })
  const refused = await rejection(
    openai.embeddings.create({ model: 'nomic-embed-text', input: ['a', 'b'] }),
  )
  t.ok(refused instanceof OpenAI.RateLimitError, '/v1/embeddings: the SDK raises RateLimitError')
  t.match(refused, {
    status: 429,
    error: { code: 'too_many_answers', message: /ANSWER_CONCURRENCY_PER_KEY/ },
  })
  t.equal((refused as InstanceType<typeof OpenAI.APIError>).headers?.get('retry-after'), '2')
  const client = new Ollama({ host: `${url}/ollama`, headers: bearer(READER_KEY) })
  for (const [path, call] of [
    ['/ollama/api/embed', client.embed({ model: 'nomic-embed-text', input: 'a' })],
    ['/ollama/api/embeddings', client.embeddings({ model: 'nomic-embed-text', prompt: 'a' })],
  ] as const) {
    t.match(
      await rejection(call),
      { name: 'ResponseError', status_code: 429, error: /ANSWER_CONCURRENCY_PER_KEY/ },
      `${path}: Ollama's {error}, raised by its SDK`,
    )
  }
  const raw = await fetch(`${url}/ollama/api/embed`, {
    method: 'POST',
    headers: bearer(READER_KEY),
    body: JSON.stringify({ model: 'nomic-embed-text', input: 'a' }),
  })
  t.equal(raw.headers.get('retry-after'), '2')
  t.same(Object.keys(await raw.json()), ['error'], "/ollama: Ollama's shape, nothing more")
  t.equal(ollama.requests.filter((r) => r.path.includes('embed')).length, 0, 'none reach Ollama')
  held.abort()
  await idle(app)

  // A slow embedding (a model load) holds the slot while it runs, and gives it back when its
  // client gives up; one that completes gives it back too.
  ollama.options.firstByteDelayMs = 30_000
  const gaveUp = new AbortController()
  const embedding = rejection(
    openai.embeddings.create(
      { model: 'nomic-embed-text', input: 'slow' },
      { signal: gaveUp.signal },
    ),
  )
  await until(() => app.answerSlots.running() === 1, 'the embedding to take a slot')
  const meanwhile = await chat(url, READER_KEY)
  t.equal(meanwhile.status, 429, 'an answer waits for the embedding of the same key')
  await meanwhile.arrayBuffer()
  gaveUp.abort()
  await embedding
  await ollama.waitForAbort()
  await idle(app)
  ollama.options.firstByteDelayMs = 0
  const vectors = await client.embed({ model: 'nomic-embed-text', input: ['x', 'y'] })
  t.equal(vectors.embeddings.length, 2, 'the key embeds again')
  await idle(app)
})

t.test('R1: one key opening 130 slow streams cannot starve the others', async (t) => {
  // The default caps (ANSWER_CONCURRENCY_PER_KEY=8, ANSWER_CONCURRENCY=64).
  const { app, url, ollama } = await rig(t, {
    ANSWER_CONCURRENCY_PER_KEY: '8',
    ANSWER_CONCURRENCY: '64',
  })
  ollama.options.tokens = MANY
  ollama.options.tokenDelayMs = 100
  const flood = new AbortController()
  const opened = await Promise.all(
    Array.from({ length: 130 }, () => chat(url, READER_KEY, flood.signal)),
  )
  const statuses = opened.map((res) => res.status)
  t.equal(statuses.filter((s) => s === 200).length, 8, 'eight streams are answered')
  t.equal(statuses.filter((s) => s === 429).length, 122, 'the rest are refused at once')
  await Promise.all(opened.filter((res) => res.status === 429).map((res) => res.arrayBuffer()))
  t.equal(ollama.requests.filter((r) => r.path === '/api/chat').length, 8, 'only 8 reach Ollama')

  ollama.options.tokens = ['fine']
  ollama.options.tokenDelayMs = 0
  const other = await chat(url, KEY_B)
  t.equal(other.status, 200)
  t.match(ndjson(await other.text()).at(-1), { done: true }, 'another key is answered meanwhile')
  flood.abort()
  await idle(app)
})

t.test('a slot comes back however the answer ends', async (t) => {
  const { app, url, ollama } = await rig(t, { BODY_LIMIT: '16384' })
  const ends: Array<[string, () => void, RegExp]> = [
    ['done', () => {}, /"done":true/],
    [
      'an error mid-stream',
      () => {
        ollama.options.failAfterTokens = { count: 2, error: 'model crashed' }
      },
      /model crashed/,
    ],
    [
      'the upstream stream cut',
      () => {
        ollama.options.failAfterTokens = undefined
        ollama.options.truncateAfterTokens = 2
      },
      /ollama_stream_interrupted/,
    ],
  ]
  for (const [what, set, last] of ends) {
    set()
    const res = await chat(url, READER_KEY)
    t.equal(res.status, 200, what)
    const lines = ndjson(await res.text())
    t.match(JSON.stringify(lines.at(-1)), last, `${what}: how it ended`)
    await idle(app)
    t.pass(`${what}: the slot is back`)
  }
  ollama.options.truncateAfterTokens = undefined
  ollama.options.failBeforeOutput = { status: 500, error: 'out of memory' }
  const failed = await chat(url, READER_KEY)
  t.equal(failed.status, 502, 'Ollama refuses before any output')
  await failed.arrayBuffer()
  await idle(app)
  ollama.options.failBeforeOutput = undefined

  const huge = await fetch(`${url}/api/chat`, {
    method: 'POST',
    headers: bearer(READER_KEY),
    body: JSON.stringify({ messages: [{ role: 'user', content: 'x'.repeat(40_000) }] }),
  })
  t.equal(huge.status, 413, 'a body over BODY_LIMIT...')
  await huge.arrayBuffer()
  await idle(app)
  t.pass('...gives its slot back')

  const mcp = await mcpClient(t, url, READER_KEY)
  for (let i = 0; i < 2; i++) {
    const asked = (await mcp.callTool({ name: 'ask', arguments: { question: 'hi?' } })) as {
      isError?: boolean
    }
    t.notOk(asked.isError, `MCP ask ${i + 1} answered: the first gave its slot back`)
  }
  t.equal(app.answerSlots.running(), 0)
})

t.test('slots are counted per caller and given back once', async (t) => {
  const slots = new AnswerSlots({ overall: 3, perCaller: 2 })
  const one = slots.take('key:a') as Release
  const two = slots.take('key:a') as Release
  t.match(slots.take('key:a'), { statusCode: 429, retryAfterS: 2 })
  t.equal(slots.running('key:a'), 2)
  one()
  one()
  t.equal(slots.running('key:a'), 1, 'a second release of the same slot does nothing')
  t.equal(slots.running(), 1)
  two()
  t.equal(slots.running('key:a'), 0)
  t.equal(slots.running(), 0)
})
