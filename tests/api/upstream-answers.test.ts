import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import t, { type Test } from 'tap'
import { listenTestApp } from '../helpers/api.ts'
import { ndjson } from '../helpers/ollama.ts'
import { jsonHeaders, wire } from '../helpers/wire.ts'

// What an upstream may answer besides a textbook Ollama reply: fields Ollama leaves out (they
// are omitempty), an answer cut mid-way, a 200 from some other server. The client always gets
// an answer in the contract: the reply, or a 502 naming Ollama; never a 500.

type Handler = (req: IncomingMessage, res: ServerResponse) => void

async function upstream(t: Test, handler: Handler): Promise<string> {
  const server = createServer((req, res) => {
    req.resume()
    req.on('end', () => handler(req, res))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    server.closeAllConnections()
    return new Promise((resolve) => server.close(resolve))
  })
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

const chat = (stream: boolean) =>
  JSON.stringify({ messages: [{ role: 'user', content: 'hi' }], stream })

t.test(
  'a final line without done_reason, counts or model is still a complete answer',
  async (t) => {
    const ollama = await upstream(t, (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/x-ndjson' })
      // Only what Ollama must write: model and done; message on the token line.
      res.write(
        `${JSON.stringify({ model: 'm', message: { role: 'assistant', content: 'Hi' }, done: false })}\n`,
      )
      res.end(`${JSON.stringify({ model: 'm', done: true, eval_count: 3 })}\n`)
    })
    const { url } = await listenTestApp(t, { OLLAMA_URL: ollama })
    const streamed = await wire(`${url}/api/chat`, {
      method: 'POST',
      headers: jsonHeaders(),
      body: chat(true),
    })
    t.equal(streamed.status, 200)
    t.match(ndjson(streamed.text).at(-1), {
      done: true,
      usage: { prompt_tokens: 0, completion_tokens: 3, total_tokens: 3 },
    })
    const one = await upstream(t, (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ done: true }))
    })
    const bare = await listenTestApp(t, { OLLAMA_URL: one })
    const answer = await wire(`${bare.url}/api/chat`, {
      method: 'POST',
      headers: jsonHeaders(),
      body: chat(false),
    })
    t.equal(answer.status, 200, answer.text)
    t.match(answer.json, {
      object: 'chat.completion',
      model: 'llama3.2',
      choices: [{ message: { role: 'assistant', content: '' }, finish_reason: 'stop' }],
      usage: { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 },
    })
  },
)

t.test("a non-streamed answer cut mid-way, or not Ollama's, is a 502 naming Ollama", async (t) => {
  const cut = await upstream(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': '400' })
    res.write('{"model":"m","respon')
    setTimeout(() => res.destroy(), 20)
  })
  const foreign = await upstream(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' })
    res.end('<html>It works!</html>')
  })
  for (const [label, ollama] of [
    ['cut', cut],
    ['foreign', foreign],
  ] as const) {
    const { url } = await listenTestApp(t, { OLLAMA_URL: ollama })
    for (const [path, body] of [
      ['/api/chat', chat(false)],
      ['/api/generate', '{"prompt":"hi"}'],
    ] as const) {
      const res = await wire(`${url}${path}`, { method: 'POST', headers: jsonHeaders(), body })
      t.equal(res.status, 502, `${label} ${path}: ${res.text}`)
      t.match(res.json, {
        error: 'ollama_error',
        message: label === 'cut' ? /stopped before it was complete/ : /not an Ollama answer/,
        statusCode: 502,
      })
    }
  }
})

t.test('a non-streamed generate answer is passed on as written, white space and all', async (t) => {
  const written = '\n  {"model":"m","response":"Hi","done":true}\r\n'
  const ollama = await upstream(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(written)
  })
  const { url } = await listenTestApp(t, { OLLAMA_URL: ollama })
  const res = await wire(`${url}/api/generate`, {
    method: 'POST',
    headers: jsonHeaders(),
    body: '{"prompt":"hi"}',
  })
  t.equal(res.status, 200)
  t.equal(res.text, written)
})

t.test('a body nested too deeply to pass on is a 400, not a 500', async (t) => {
  const ollama = await upstream(t, (_req, res) => res.end('{}'))
  const { url } = await listenTestApp(t, { OLLAMA_URL: ollama })
  const depth = 200_000
  const body = `{"prompt":"hi","options":{"a":${'['.repeat(depth)}${']'.repeat(depth)}}}`
  const res = await wire(`${url}/api/generate`, { method: 'POST', headers: jsonHeaders(), body })
  t.equal(res.status, 400)
  t.match(res.json, { error: 'validation_failed', message: 'The body is nested too deeply' })
})
