import { once } from 'node:events'
import { connect } from 'node:net'
import t from 'tap'
import { listenTestApp } from '../helpers/api.ts'

// Browsers preconnect and HTTP clients keep a spare connection open before they send on it. Node
// counts such a connection as a request under way and, when the server closes, waits for it
// until headersTimeout (a minute here): every rollout would sit out its whole shutdown grace.

t.test('closing does not wait for a connection that never sent a request', async (t) => {
  t.setTimeout(30_000)
  const { app, url } = await listenTestApp(t, { REQUEST_TIMEOUT_MS: '300000' })
  const { port } = new URL(url)
  const idle = connect(Number(port), '127.0.0.1')
  await once(idle, 'connect')
  // A connection that has asked something and is now idle between requests.
  const used = connect(Number(port), '127.0.0.1')
  await once(used, 'connect')
  used.write(`GET /api/health/live HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`)
  await once(used, 'data')
  const ended = Promise.all([once(idle, 'close'), once(used, 'close')])
  await app.close()
  await ended
  t.ok(idle.destroyed, 'the connection that asked nothing is ended by the server')
  t.ok(used.destroyed, 'the idle keep-alive connection too')
})
