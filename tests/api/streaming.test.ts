import t from 'tap'
import { request } from 'undici'
import { listenTestApp } from '../helpers/api.ts'
import { ndjson, standIn } from '../helpers/ollama.ts'

// Real HTTP through the gateway: what a client sees on the socket.

const chatBody = (extra: object = {}) =>
  JSON.stringify({ messages: [{ role: 'user', content: 'hi' }], stream: true, ...extra })

async function post(url: string, body: string, signal?: AbortSignal) {
  return request(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body,
    signal,
  })
}

t.test('tokens reach the client as Ollama writes them, not at the end', async (t) => {
  const ollama = await standIn(t, { tokens: ['one', ' two', ' three'], tokenDelayMs: 150 })
  const { url } = await listenTestApp(t, { OLLAMA_URL: ollama.url })
  const res = await post(`${url}/api/chat`, chatBody())
  t.equal(res.statusCode, 200)
  t.equal(res.headers['content-type'], 'application/x-ndjson')
  t.equal(res.headers['x-accel-buffering'], 'no')
  t.equal(res.headers['content-encoding'], undefined)
  const arrivals: Array<{ at: number; text: string }> = []
  for await (const chunk of res.body)
    arrivals.push({ at: performance.now(), text: chunk.toString() })
  const tokenChunks = arrivals.filter((a) => a.text.includes('"done":false'))
  t.ok(tokenChunks.length >= 3, `each token arrived on its own (${tokenChunks.length} chunks)`)
  const first = tokenChunks[0]?.at ?? 0
  const end = arrivals.at(-1)?.at ?? 0
  t.ok(end - first >= 2 * 100, 'the first token came while later ones were still being generated')
  const lines = ndjson(arrivals.map((a) => a.text).join(''))
  t.same(lines[0], { sources: [] })
  t.match(lines.at(-1), { done: true, usage: { completion_tokens: 3 } })
})

t.test('lines split across TCP packets and HTML-escaped JSON pass through intact', async (t) => {
  const tokens = ['<b>', ' & ', '</b>', ' ü€𝄞']
  const ollama = await standIn(t, { tokens, splitWrites: true })
  const { url } = await listenTestApp(t, { OLLAMA_URL: ollama.url })

  const gen = await post(`${url}/api/generate`, JSON.stringify({ prompt: 'x', stream: true }))
  const raw = await gen.body.text()
  t.match(raw, /"response":"\\u003cb\\u003e"/, 'Go escaping is kept byte for byte')
  t.match(raw, /"response":" \\u0026 "/)
  const lines = ndjson(raw)
  t.same(
    lines.slice(0, -1).map((l) => l.response),
    tokens,
  )
  t.equal(lines.at(-1)?.done, true)

  const chat = await post(`${url}/api/chat`, chatBody())
  const chatLines = ndjson(await chat.body.text())
  t.same(
    chatLines.slice(1, -1).map((l) => (l.message as { content: string }).content),
    tokens,
  )
})

t.test('a client that goes away mid-stream aborts the request to Ollama', async (t) => {
  const ollama = await standIn(t, { tokens: Array(50).fill('x'), tokenDelayMs: 100 })
  const { url } = await listenTestApp(t, { OLLAMA_URL: ollama.url })
  const controller = new AbortController()
  const res = await post(`${url}/api/chat`, chatBody(), controller.signal)
  const aborted = ollama.waitForAbort(5_000)
  for await (const chunk of res.body) {
    if (chunk.toString().includes('"done":false')) break
  }
  controller.abort()
  const seen = await aborted
  t.equal(seen.path, '/api/chat')
})

t.test('a client that gives up during a model load aborts the load', async (t) => {
  const ollama = await standIn(t, { firstByteDelayMs: 10_000 })
  const { url } = await listenTestApp(t, { OLLAMA_URL: ollama.url })
  const controller = new AbortController()
  const pending = post(`${url}/api/generate`, JSON.stringify({ prompt: 'x' }), controller.signal)
  const aborted = ollama.waitForAbort(5_000)
  setTimeout(() => controller.abort(), 200)
  await t.rejects(pending)
  t.equal((await aborted).path, '/api/generate')
})

t.test('a slow model load is not cut by a timeout', async (t) => {
  const ollama = await standIn(t, { firstByteDelayMs: 1_500 })
  // The connect timeout is far shorter than the load: it must only govern connecting.
  const { url } = await listenTestApp(t, {
    OLLAMA_URL: ollama.url,
    OLLAMA_CONNECT_TIMEOUT_MS: '200',
  })
  const res = await post(`${url}/api/generate`, JSON.stringify({ prompt: 'x' }))
  t.equal(res.statusCode, 200)
  t.equal(((await res.body.json()) as { done: boolean }).done, true)
})

t.test('a crash mid-stream ends with an error line on a cleanly closed response', async (t) => {
  const ollama = await standIn(t, { truncateAfterTokens: 2, truncateMode: 'destroy' })
  const { url } = await listenTestApp(t, { OLLAMA_URL: ollama.url })
  const res = await post(`${url}/api/generate`, JSON.stringify({ prompt: 'x', stream: true }))
  const lines = ndjson(await res.body.text())
  t.equal(lines.length, 3)
  t.match(lines.at(-1), {
    error: 'ollama_stream_interrupted',
    message: /stopped before it was complete/,
  })
})
