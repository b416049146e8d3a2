import { once } from 'node:events'
import { connect } from 'node:net'
import { Ollama } from 'ollama'
import OpenAI from 'openai'
import t from 'tap'
import { answersStopped, ollamaErrors } from '../../../services/api/src/lib/metrics.ts'
import { ADMIN_KEY, bearer, listenTestApp, READER_KEY, tempDir } from '../../helpers/api.ts'
import { ndjson, standIn } from '../../helpers/ollama.ts'
import { startRedis } from '../../helpers/redis.ts'

// ANSWER_MAX_MS over real sockets: an answer that runs too long ends with the terminal error of
// its wire format and its Ollama request is cancelled; a model pull is never cut. And the
// request limits (BODY_LIMIT, EXPORT_UPLOAD_LIMIT) answer 413 with a message over a socket.

const MANY = Array.from({ length: 400 }, (_, i) => ` t${i}`)
// The api's own limit, named as such: not an Ollama failure, and no OLLAMA_URL in it (D9).
const LIMIT = /^The answer took longer than ANSWER_MAX_MS \(400 ms\) and was stopped$/

/** A counter's value for one label set (0 before its first count). */
async function count(
  counter: typeof ollamaErrors | typeof answersStopped,
  labels: Record<string, string>,
): Promise<number> {
  const { values } = await counter.get()
  const found = values.find((v) =>
    Object.entries(labels).every(([k, x]) => (v.labels as Record<string, unknown>)[k] === x),
  )
  return found?.value ?? 0
}

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
  const cutsBefore = await count(ollamaErrors, { kind: 'stream_cut' })
  const stoppedBefore = await count(answersStopped, { reason: 'answer_max_ms' })

  const chat = await post(url, '/api/chat', { messages: question, stream: true })
  t.equal(chat.status, 200)
  const lines = ndjson(await chat.text())
  t.ok(lines.length > 2, 'tokens arrived first')
  t.same(
    Object.keys(lines.at(-1) as object),
    ['error', 'message'],
    '/api/chat: an {error, message} line',
  )
  t.match(lines.at(-1), { error: 'answer_too_long', message: LIMIT }, '/api/chat')
  t.notOk(
    lines.some((line) => line.done === true),
    'no line claims the answer done',
  )
  await ollama.waitForAbort()
  t.pass('the Ollama request was cancelled')

  const generate = await post(url, '/api/generate', { prompt: 'hi', stream: true })
  t.match(
    ndjson(await generate.text()).at(-1),
    { error: 'answer_too_long', message: LIMIT },
    '/api/generate',
  )
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
  t.match(failure, { error: { code: 'answer_too_long', type: 'server_error' } }, '/v1: its code')
  t.match((failure as Error).message, /The answer took longer than ANSWER_MAX_MS \(400 ms\)/)
  t.notMatch((failure as Error).message, /Ollama|127\.0\.0\.1/, '/v1: no OLLAMA_URL')
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
  t.match(
    (cut as Error).message,
    LIMIT,
    "/ollama: Ollama's {error} line (the limit's message only), raised by its SDK",
  )
  await ollama.waitForAbort()
  const line = await post(url, '/ollama/api/generate', { model: 'llama3.2', prompt: 'hi' })
  t.same(
    ndjson(await line.text()).at(-1),
    { error: 'The answer took longer than ANSWER_MAX_MS (400 ms) and was stopped' },
    "/ollama: Ollama's {error} line, nothing more",
  )
  await ollama.waitForAbort()
  t.equal(
    await count(ollamaErrors, { kind: 'stream_cut' }),
    cutsBefore,
    'no cut is counted as an Ollama error',
  )
  t.equal(
    await count(answersStopped, { reason: 'answer_max_ms' }),
    stoppedBefore + 5,
    'each is counted as stopped by ANSWER_MAX_MS',
  )

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

t.test('D5: a client that stops reading loses its connection and its slot', async (t) => {
  // Long enough for the stream to begin on a busy machine (a 504 before any output would
  // finish the response and prove nothing); the connection goes at ANSWER_MAX_MS + its grace.
  // 1.5 s was not enough on a machine shared with another running system: the stream had not
  // begun, the 504 finished the response, and the connection rightly stayed open.
  const { app, url, ollama } = await rig(t, { ANSWER_MAX_MS: '4000' })
  // 48 MB in lines of 1 MB, sent as fast as the sockets take them: far more than the kernel
  // buffers between the api and a client that reads nothing hold, so the api's response cannot
  // finish, even on a machine too busy to send much before ANSWER_MAX_MS cuts the answer.
  ollama.options.tokens = Array.from({ length: 48 }, () => 'x'.repeat(1 << 20))
  ollama.options.tokenDelayMs = 0
  const { port } = new URL(url)
  const before = await count(answersStopped, { reason: 'undelivered' })
  const paths = ['/api/chat', '/v1/chat/completions']
  const body = JSON.stringify({ model: 'llama3.2', messages: question, stream: true })
  const sockets = await Promise.all(
    paths.map(async (path) => {
      const socket = connect(Number(port), '127.0.0.1')
      await once(socket, 'connect')
      socket.pause()
      socket.write(
        `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAuthorization: Bearer ${READER_KEY}\r\n` +
          `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
      )
      return socket
    }),
  )
  await until(() => app.answerSlots.running() === 2, 'both answers to take their slots')
  await until(() => app.answerSlots.running() === 0, 'the slots to come back')
  await Promise.all(
    sockets.map(async (socket, i) => {
      const path = paths[i]
      // What the kernel still held reaches the client, then the server's close: the answer
      // began (200) and never got the chunked body's last chunk.
      let head = ''
      let tail = ''
      socket.on('data', (chunk: Buffer) => {
        if (head.length < 16) head += chunk.toString('latin1')
        tail = (tail + chunk.toString('latin1')).slice(-64)
      })
      socket.on('error', () => {})
      const closed = once(socket, 'close')
      socket.resume()
      // A response that did finish would leave the connection open until keep-alive ends it.
      // Generous: on a loaded machine draining what the kernel held can take seconds.
      const timeout = setTimeout(() => socket.destroy(new Error('still open')), 30_000)
      await closed
      clearTimeout(timeout)
      t.notOk(socket.errored?.message === 'still open', `${path}: the server closed it`)
      t.match(head, /^HTTP\/1\.1 200 /, `${path}: the answer had begun`)
      t.notMatch(tail, /\r\n0\r\n\r\n$/, `${path}: the server closed it unfinished`)
    }),
  )
  t.equal(
    await count(answersStopped, { reason: 'undelivered' }),
    before + paths.length,
    'each is counted as undelivered',
  )
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

/** Waits until `check` holds, or fails after 10 s. */
async function until(check: () => boolean, what: string) {
  for (let i = 0; i < 400 && !check(); i++) await new Promise((r) => setTimeout(r, 25))
  if (!check()) throw new Error(`timed out waiting: ${what}`)
}
