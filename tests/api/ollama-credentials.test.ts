import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Writable } from 'node:stream'
import { buildApp } from '@confluence-bot/api'
import t, { type Test } from 'tap'
import { request } from 'undici'
import { ADMIN_KEY, bearer, testConfig } from '../helpers/api.ts'
import { ndjson, standIn } from '../helpers/ollama.ts'

// OLLAMA_URL may carry the gateway's own credential for an Ollama behind an authenticating
// proxy: user info becomes `Authorization: Basic` and the query rides on every upstream call;
// neither is printed by any route or log line.

const PASSWORD = 'pa55-w0rd'
const TOKEN = 'tok-3cr3t'
const BASIC = `Basic ${Buffer.from(`gw user:${PASSWORD}`).toString('base64')}`

/** The api on a real socket with every log line (trace level) kept in `logs`. */
async function listen(t: Test, ollamaUrl: string) {
  const logs: string[] = []
  const stream = new Writable({
    write(chunk, _encoding, done) {
      logs.push(chunk.toString())
      done()
    },
  })
  const config = await testConfig(t, {
    OLLAMA_URL: ollamaUrl,
    ADMIN_API_KEYS: ADMIN_KEY,
    HEALTH_TIMEOUT_MS: '300',
  })
  const app = buildApp({ config, logger: { level: 'trace', stream } })
  t.teardown(() => app.close())
  const url = await app.listen({ host: '127.0.0.1', port: 0 })
  return { app, url, logs }
}

const json = (body: object) => ({
  method: 'POST' as const,
  headers: { 'content-type': 'application/json', ...bearer(ADMIN_KEY) },
  body: JSON.stringify(body),
})
const messages = [{ role: 'user', content: 'hi' }]

t.test('every upstream call carries the Basic credential and the query', async (t) => {
  const ollama = await standIn(t)
  const host = ollama.url.replace('http://', '')
  const { url, logs } = await listen(t, `http://gw%20user:${PASSWORD}@${host}/?token=${TOKEN}`)

  const chat = await request(`${url}/api/chat`, json({ messages }))
  t.equal(chat.statusCode, 200)
  await chat.body.dump()
  const streamed = await request(`${url}/api/chat`, json({ messages, stream: true }))
  t.match(ndjson(await streamed.body.text()).at(-1), { done: true })
  const generate = await request(`${url}/api/generate`, json({ prompt: 'x' }))
  t.equal(generate.statusCode, 200)
  await generate.body.dump()
  const pull = await request(`${url}/api/pull`, json({ model: 'tinyllama', stream: true }))
  t.match(ndjson(await pull.body.text()).at(-1), { status: 'success' })
  const models = await request(`${url}/api/models`, { headers: bearer(ADMIN_KEY) })
  t.equal(models.statusCode, 200)
  await models.body.dump()
  const health = await request(`${url}/api/health`)
  const checks = ((await health.body.json()) as { checks: { ollama: { status: string } } }).checks
  t.equal(checks.ollama.status, 'ok')

  t.same(
    ollama.requests.map((sent) => sent.path),
    ['/api/chat', '/api/chat', '/api/generate', '/api/pull', '/api/tags', '/api/version'],
  )
  for (const sent of ollama.requests) {
    t.equal(sent.headers.authorization, BASIC, `${sent.path}: Basic credential`)
    t.equal(sent.query, `?token=${TOKEN}`, `${sent.path}: query kept`)
  }

  const config = await request(`${url}/admin/config`, { headers: bearer(ADMIN_KEY) })
  const shown = (await config.body.json()) as { ollama_url: string }
  t.equal(shown.ollama_url, `http://***:***@${host}/?token=***`)
  t.ok(logs.length > 0, 'logs were written')
  t.notMatch(logs.join(''), PASSWORD)
  t.notMatch(logs.join(''), TOKEN)
})

t.test('an unreachable or wrong upstream is named without its secrets', async (t) => {
  const ollama = await standIn(t)
  for (const target of [
    `http://user:${PASSWORD}@127.0.0.1:1/?token=${TOKEN}`, // nothing listens
    `${ollama.url.replace('http://', `http://user:${PASSWORD}@`)}/nowhere?token=${TOKEN}`, // 404s
  ]) {
    const { url, logs, app } = await listen(t, target)
    const health = await request(`${url}/api/health`)
    const text = await health.body.text()
    t.match(text, /OLLAMA_URL=http:\/\/\*\*\*:\*\*\*@127\.0\.0\.1:\d+\/(nowhere)?\?token=\*\*\*/)
    const chat = await app.inject({
      method: 'POST',
      url: '/api/chat',
      headers: bearer(ADMIN_KEY),
      payload: { messages },
    })
    t.match(chat.json().message, /\/\/\*\*\*:\*\*\*@.*token=\*\*\*/)
    for (const seen of [text, chat.body, logs.join('')]) {
      t.notMatch(seen, PASSWORD)
      t.notMatch(seen, TOKEN)
    }
  }
})

t.test('a malformed escape in the user info is sent as written', async (t) => {
  const ollama = await standIn(t)
  const { url } = await listen(t, ollama.url.replace('http://', 'http://a%zz:b@'))
  const models = await request(`${url}/api/models`, { headers: bearer(ADMIN_KEY) })
  t.equal(models.statusCode, 200)
  await models.body.dump()
  t.equal(
    ollama.requests[0]?.headers.authorization,
    `Basic ${Buffer.from('a%zz:b').toString('base64')}`,
  )
  t.equal(ollama.requests[0]?.query, '', 'no query: none added')
})

t.test('a foreign error page that echoes the request does not leak the token', async (t) => {
  // A proxy in front of Ollama that does not know the path, Express-style.
  const server = createServer((req, res) => {
    req.resume()
    res.writeHead(404, { 'content-type': 'text/html' })
    res.end(`<pre>Cannot ${req.method} ${req.url}</pre>`)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise((resolve) => server.close(resolve)))
  const port = (server.address() as AddressInfo).port
  const { url, logs } = await listen(t, `http://127.0.0.1:${port}/?token=${TOKEN}&b=2`)
  const models = await request(`${url}/api/models`, { headers: bearer(ADMIN_KEY) })
  t.equal(models.statusCode, 502)
  const text = await models.body.text()
  t.match(text, 'answered 404 (<pre>Cannot GET /api/tags?token=***&b=***</pre>)')
  t.notMatch(text + logs.join(''), TOKEN)
})

t.test('an upstream that echoes the credential in its errors does not leak it', async (t) => {
  // A proxy in front of Ollama that quotes the request it refused, in every shape an error takes:
  // Ollama's JSON error, a foreign page, and an error line in the middle of a stream.
  const echoed = (req: { url?: string; headers: Record<string, unknown> }) =>
    `refused ${req.url} auth=${String(req.headers.authorization)} user=gw user pass=${PASSWORD}`
  const server = createServer((req, res) => {
    req.resume()
    if (req.url?.startsWith('/api/chat')) {
      res.writeHead(401, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ error: echoed(req) }))
    } else if (req.url?.startsWith('/api/generate')) {
      res.writeHead(200, { 'content-type': 'application/x-ndjson' })
      res.write(`${JSON.stringify({ model: 'm', response: 'a', done: false })}\n`)
      res.end(`${JSON.stringify({ error: echoed(req) })}\n`)
    } else {
      res.writeHead(502, { 'content-type': 'text/plain' })
      res.end(echoed(req))
    }
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise((resolve) => server.close(resolve)))
  const port = (server.address() as AddressInfo).port
  const { url, logs } = await listen(
    t,
    `http://gw%20user:${PASSWORD}@127.0.0.1:${port}/?token=${TOKEN}&v=1`,
  )
  const chat = await request(`${url}/api/chat`, json({ messages }))
  t.equal(chat.statusCode, 401)
  const chatText = await chat.body.text()
  t.match(JSON.parse(chatText), {
    error: 'ollama_error',
    message: /refused \/api\/chat\?token=\*\*\*/,
  })
  const streamed = await request(`${url}/api/generate`, json({ prompt: 'x', stream: true }))
  const lines = ndjson(await streamed.body.text())
  t.match(lines.at(-1), { error: 'ollama_error', message: /auth=Basic \*\*\*/ })
  const models = await request(`${url}/api/models`, { headers: bearer(ADMIN_KEY) })
  t.equal(models.statusCode, 502)
  const everything = chatText + JSON.stringify(lines) + (await models.body.text()) + logs.join('')
  t.notMatch(everything, TOKEN, 'the token never appears')
  t.notMatch(everything, PASSWORD, 'nor the password')
  t.notMatch(everything, BASIC.slice(6), 'nor the Basic credential')
})
