import { createServer } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import t, { type Test } from 'tap'
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
  t.match(lines[0], { sources: [], conversation_id: /^conv_/ })
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

/** An upstream that answers every request with `lines`, then holds the stream open. */
async function scriptedUpstream(t: Test, lines: string[]) {
  const sockets = new Set<Socket>()
  let closedAt = 0
  const server = createServer((req, res) => {
    req.resume()
    res.writeHead(200, { 'content-type': 'application/x-ndjson' })
    res.write(lines.join(''))
    // Lines after the terminal one, a while later: a relay that still reads would pass them on.
    const late = setTimeout(() => res.write('{"late":true}\n'), 300)
    res.on('close', () => {
      clearTimeout(late)
      closedAt = performance.now()
    })
  })
  server.on('connection', (socket) => sockets.add(socket))
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    for (const socket of sockets) socket.destroy()
    return new Promise((resolve) => server.close(resolve))
  })
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    closedAt: () => closedAt,
  }
}

const TOKEN =
  '{"model":"m","created_at":"2025-01-01T00:00:00Z","message":{"role":"assistant","content":"hi"},"done":false}\n'

t.test(
  'a complete stream is complete whatever spacing or escapes its last line uses',
  async (t) => {
    const finals = [
      '{"model":"m", "done": true, "done_reason": "stop", "prompt_eval_count": 3, "eval_count": 1}\n',
      '{"eval_count":1,"prompt_eval_count":3,"done_reason":"stop","d\\u006fne":true,"model":"m"}\n',
    ]
    for (const final of finals) {
      const upstream = await scriptedUpstream(t, [TOKEN, final])
      const { url } = await listenTestApp(t, { OLLAMA_URL: upstream.url })
      const res = await post(`${url}/api/chat`, chatBody(), AbortSignal.timeout(5_000))
      const lines = ndjson(await res.body.text())
      t.equal(lines.length, 3, 'sources, the token, the final line; nothing after it')
      t.match(lines.at(-1), { done: true, done_reason: 'stop', usage: { total_tokens: 4 } }, final)
      t.notOk(
        lines.some((line) => 'error' in line),
        'not reported as interrupted',
      )
    }
  },
)

t.test('after the terminal line the relay stops reading upstream and closes it', async (t) => {
  const upstream = await scriptedUpstream(t, [
    TOKEN,
    '{"done":true,"prompt_eval_count":1,"eval_count":1}\n',
  ])
  const { url } = await listenTestApp(t, { OLLAMA_URL: upstream.url })
  const started = performance.now()
  const res = await post(`${url}/api/chat`, chatBody(), AbortSignal.timeout(5_000))
  const text = await res.body.text()
  const ended = performance.now()
  t.notMatch(text, /late/, 'nothing read after the terminal line reaches the client')
  t.ok(
    ended - started < 250,
    `the answer ended at the terminal line (${Math.round(ended - started)} ms)`,
  )
  // The upstream response is closed by the gateway, not left open until Ollama ends it.
  for (let i = 0; i < 50 && upstream.closedAt() === 0; i++) await sleep(10)
  t.ok(
    upstream.closedAt() > 0 && upstream.closedAt() - started < 250,
    'upstream connection released',
  )
})
