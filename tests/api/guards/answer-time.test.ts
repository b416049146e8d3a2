import { Ollama } from 'ollama'
import OpenAI from 'openai'
import t from 'tap'
import { ADMIN_KEY, bearer, listenTestApp, READER_KEY, tempDir } from '../../helpers/api.ts'
import { ndjson, standIn } from '../../helpers/ollama.ts'
import { startRedis } from '../../helpers/redis.ts'

// ANSWER_MAX_MS over real sockets: an answer that runs too long ends with the terminal error of
// its wire format and its Ollama request is cancelled; a model pull is never cut. And the
// request limits (BODY_LIMIT, EXPORT_UPLOAD_LIMIT) answer 413 with a message over a socket.

const MANY = Array.from({ length: 400 }, (_, i) => ` t${i}`)
const LIMIT = /took longer than ANSWER_MAX_MS \(400 ms\)/

const redis = await startRedis()
t.teardown(() => redis.stop())

type T = { teardown(fn: () => unknown): void }

async function rig(t: T, env: Record<string, string>) {
  const ollama = await standIn(t, { tokens: MANY, tokenDelayMs: 50 })
  const { app, url } = await listenTestApp(t, {
    API_KEYS: READER_KEY,
    ADMIN_API_KEYS: ADMIN_KEY,
    REDIS_URL: redis.url,
    OLLAMA_URL: ollama.url,
    ...env,
  })
  // The cut answers leave keep-alive connections that app.close() would wait out.
  t.teardown(() => app.server.closeAllConnections())
  return { app, url, ollama }
}

const post = (url: string, path: string, body: unknown, key = READER_KEY) =>
  fetch(`${url}${path}`, {
    method: 'POST',
    headers: { ...bearer(key), 'content-type': 'application/json' },
    body: JSON.stringify(body),
  })

const question = [{ role: 'user' as const, content: 'hi' }]

t.test('an answer past ANSWER_MAX_MS ends with an error in its wire format', async (t) => {
  const { url, ollama } = await rig(t, { ANSWER_MAX_MS: '400' })

  const chat = await post(url, '/api/chat', { messages: question, stream: true })
  t.equal(chat.status, 200)
  const lines = ndjson(await chat.text())
  t.ok(lines.length > 2, 'tokens arrived first')
  t.match(lines.at(-1), { error: 'ollama_stream_interrupted', message: LIMIT }, '/api/chat')
  t.notOk(
    lines.some((line) => line.done === true),
    'no line claims the answer done',
  )
  await ollama.waitForAbort()
  t.pass('the Ollama request was cancelled')

  const generate = await post(url, '/api/generate', { prompt: 'hi', stream: true })
  t.match(ndjson(await generate.text()).at(-1), { message: LIMIT }, '/api/generate')
  await ollama.waitForAbort()

  const openai = new OpenAI({ baseURL: `${url}/v1`, apiKey: READER_KEY, maxRetries: 0 })
  const failure = await (async () => {
    const stream = await openai.chat.completions.create({
      model: 'llama3.2',
      messages: question,
      stream: true,
    })
    for await (const _chunk of stream);
  })().then(
    () => undefined,
    (err: unknown) => err,
  )
  t.ok(failure instanceof OpenAI.APIError, '/v1: the SDK raises the SSE error event')
  t.match((failure as Error).message, LIMIT)
  await ollama.waitForAbort()

  const client = new Ollama({ host: `${url}/ollama`, headers: bearer(READER_KEY) })
  const cut = await (async () => {
    for await (const _part of await client.chat({
      model: 'llama3.2',
      messages: question,
      stream: true,
    }));
  })().then(
    () => undefined,
    (err: unknown) => err,
  )
  t.match(String(cut), LIMIT, "/ollama: Ollama's {error} line, raised by its SDK")
  await ollama.waitForAbort()

  const whole = await post(url, '/api/chat', { messages: question, stream: false })
  t.equal(whole.status, 504, 'a non-streamed answer not begun in time: 504')
  t.match(await whole.json(), { error: 'answer_too_long', message: LIMIT, statusCode: 504 })
  await ollama.waitForAbort()

  // A pull streams longer than the limit and completes.
  ollama.options.pullTickMs = 60
  ollama.options.pullLayers = 4
  const pull = await post(url, '/api/pull', { name: 'tinyllama', stream: true }, ADMIN_KEY)
  const statuses = ndjson(await pull.text()).map((line) => line.status)
  t.equal(statuses.at(-1), 'success', 'a model pull is not cut')
})

t.test('Ollama unreachable under ANSWER_MAX_MS: 503 naming it, the clock stopped', async (t) => {
  const { url } = await rig(t, { ANSWER_MAX_MS: '400', OLLAMA_URL: 'http://127.0.0.1:1' })
  const res = await post(url, '/api/chat', { messages: question, stream: true })
  t.equal(res.status, 503)
  t.match(await res.json(), { error: 'ollama_unavailable' })
})

t.test('ANSWER_MAX_MS=0: no limit', async (t) => {
  const { url, ollama } = await rig(t, { ANSWER_MAX_MS: '0' })
  ollama.options.tokens = MANY.slice(0, 12)
  const chat = await post(url, '/api/chat', { messages: question, stream: true })
  t.match(ndjson(await chat.text()).at(-1), { done: true })
})

t.test('request and upload limits answer 413 with a message', async (t) => {
  const exports = await tempDir(t)
  const { url } = await rig(t, {
    BODY_LIMIT: '16384',
    EXPORT_UPLOAD_LIMIT: '65536',
    EXPORTS_DIR: exports,
  })
  const big = await post(url, '/api/search', { query: 'x'.repeat(20_000) })
  t.equal(big.status, 413)
  t.same(await big.json(), {
    error: 'payload_too_large',
    message: 'Request body is larger than BODY_LIMIT (16384 bytes)',
    statusCode: 413,
  })
  const upload = await fetch(`${url}/api/sources/export?name=big`, {
    method: 'POST',
    headers: { ...bearer(ADMIN_KEY), 'content-type': 'application/zip' },
    body: Buffer.alloc(70_000, 1),
  })
  t.equal(upload.status, 413)
  t.match(await upload.json(), {
    error: 'payload_too_large',
    message: /over 65536 bytes \(EXPORT_UPLOAD_LIMIT\)/,
  })
})
