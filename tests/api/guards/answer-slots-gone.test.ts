import { once } from 'node:events'
import { connect } from 'node:net'
import { buildApp } from '@confluence-bot/api'
import t from 'tap'
import { READER_KEY, testConfig } from '../../helpers/api.ts'
import { standIn } from '../../helpers/ollama.ts'

// A client may send its whole request and close its socket before the api has read its key
// (auth and the rate limit are async: a Redis round trip). The close has then happened before
// the answer took its slot, so a slot released "when the response closes" was never released:
// a few such requests held every slot of their key, then of the api, until a restart (review
// 6, D1). A root hook that waits until the client has gone makes that order certain here.

t.test('a client gone before its answer took a slot gives the slot back', async (t) => {
  const ollama = await standIn(t)
  ollama.options.firstByteDelayMs = 2_000
  const app = buildApp({
    config: await testConfig(t, {
      API_KEYS: READER_KEY,
      OLLAMA_URL: ollama.url,
      ANSWER_CONCURRENCY_PER_KEY: '2',
    }),
  })
  // Runs before every route's own hooks: holds the request until its client has gone.
  let late = 0
  let arrived = 0
  app.addHook('onRequest', async (request) => {
    arrived += 1
    if (request.headers['x-test-late'] === undefined) return
    const socket = request.raw.socket
    if (!socket.destroyed) await once(socket, 'close')
    late += 1
  })
  t.teardown(() => app.close())
  const url = await app.listen({ host: '127.0.0.1', port: 0 })
  const { port } = new URL(url)
  const body = JSON.stringify({
    model: 'llama3.2',
    messages: [{ role: 'user', content: 'hi' }],
    stream: true,
  })
  /** The whole request, then a FIN and the socket closed: a client that has gone. */
  const send = async (path: string, late: boolean) => {
    const socket = connect(Number(port), '127.0.0.1')
    await once(socket, 'connect')
    socket.end(
      `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAuthorization: Bearer ${READER_KEY}\r\n` +
        `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
        `${late ? 'X-Test-Late: 1\r\n' : ''}\r\n${body}`,
    )
    socket.destroy()
  }
  for (const path of ['/api/chat', '/ollama/api/chat', '/v1/chat/completions']) {
    const sent = arrived + 4
    for (let i = 0; i < 4; i++) await send(path, false)
    // Each has reached the api, and none holds a slot any more; the pause lets one that has
    // arrived but not yet reached its slot (its key is being checked) ask Ollama before the
    // count below, which the late request must leave unchanged.
    await until(() => arrived >= sent, `${path}: the requests to arrive`)
    await until(
      () => app.answerSlots.running() === 0,
      `${path}: the slots come back (FIN while loading)`,
    )
    await new Promise((resolve) => setTimeout(resolve, 300))
    await until(() => app.answerSlots.running() === 0, `${path}: the slots stay back`)
    const before = ollama.requests.length
    const seen = late
    await send(path, true)
    await until(() => late > seen, `${path}: the late request reaches the answer's hooks`)
    // Whatever the api would still do for it, it has done by now.
    await new Promise((resolve) => setTimeout(resolve, 300))
    t.equal(app.answerSlots.running(), 0, `${path}: no slot held`)
    t.equal(ollama.requests.length, before, `${path}: Ollama is not asked for a client gone`)
  }
})

/** Waits until `check` holds, or fails after 5 s. */
async function until(check: () => boolean, what: string) {
  for (let i = 0; i < 200 && !check(); i++) await new Promise((r) => setTimeout(r, 25))
  if (!check()) throw new Error(`timed out waiting: ${what}`)
}
