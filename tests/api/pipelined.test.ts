import { once } from 'node:events'
import { connect } from 'node:net'
import { buildApp } from '@confluence-bot/api'
import t from 'tap'
import { listenTestApp, READER_KEY, testConfig } from '../helpers/api.ts'
import { standIn } from '../helpers/ollama.ts'

// HTTP/1.1 pipelining: a client sends two requests on one connection and goes away while the
// first is answered. Node never tells the second, queued response that its connection ended
// (review 6, D1): its Ollama request ran to the end for nobody. Both are cancelled.

t.test('a pipelined request whose client went away cancels its Ollama request', async (t) => {
  const ollama = await standIn(t)
  ollama.options.firstByteDelayMs = 1_000
  const { app, url } = await listenTestApp(t, { API_KEYS: READER_KEY, OLLAMA_URL: ollama.url })
  t.teardown(() => app.server.closeAllConnections())
  const { port } = new URL(url)
  const body = JSON.stringify({
    model: 'llama3.2',
    messages: [{ role: 'user', content: 'hi' }],
    stream: true,
  })
  const one =
    `POST /ollama/api/chat HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAuthorization: Bearer ${READER_KEY}\r\n` +
    `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`
  const socket = connect(Number(port), '127.0.0.1')
  await once(socket, 'connect')
  socket.write(one + one)
  // Both have reached Ollama (which takes a second to answer): then the client leaves.
  for (let i = 0; i < 200 && ollama.requests.length < 2; i++) {
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
  t.equal(ollama.requests.length, 2, 'both requests were sent on')
  socket.destroy()
  const first = await ollama.waitForAbort(5_000)
  const second = await ollama.waitForAbort(5_000)
  t.equal(first.path, '/api/chat')
  t.equal(second.path, '/api/chat', 'the queued one too')
  for (let i = 0; i < 200 && app.answerSlots.running() > 0; i++) {
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
  t.equal(app.answerSlots.running(), 0, 'both answer slots are given back')
})

t.test('a client gone before its handler ran: Ollama is not asked at all', async (t) => {
  const ollama = await standIn(t)
  const app = buildApp({
    config: await testConfig(t, { API_KEYS: READER_KEY, OLLAMA_URL: ollama.url }),
  })
  // Runs once the body is read, before the handler: holds the request until its client has gone.
  let late = 0
  app.addHook('preHandler', async (request) => {
    const socket = request.raw.socket
    if (!socket.destroyed) await once(socket, 'close')
    late += 1
  })
  t.teardown(() => app.close())
  const url = await app.listen({ host: '127.0.0.1', port: 0 })
  const { port } = new URL(url)
  const socket = connect(Number(port), '127.0.0.1')
  await once(socket, 'connect')
  const body = JSON.stringify({ model: 'llama3.2', messages: [{ role: 'user', content: 'hi' }] })
  socket.end(
    `POST /ollama/api/chat HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAuthorization: Bearer ${READER_KEY}\r\n` +
      `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  )
  socket.destroy()
  for (let i = 0; i < 200 && late === 0; i++) await new Promise((r) => setTimeout(r, 10))
  t.equal(late, 1, 'the request reached its handler')
  // Whatever the api would still do for it, it has done by now.
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.same(
    ollama.requests.map((r) => r.path),
    [],
    'no request to Ollama for a client that has gone',
  )
})
