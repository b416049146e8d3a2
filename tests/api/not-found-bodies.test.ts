import { once } from 'node:events'
import { connect } from 'node:net'
import t from 'tap'
import { listenTestApp, READER_KEY } from '../helpers/api.ts'

// A path no route serves gets its 404 at once, in its surface's shape, without the body being
// read, and the connection closes: a sender that trickles a body to a wrong path cannot hold a
// connection for REQUEST_TIMEOUT_MS (an hour in the cluster). Over a raw socket, where the client
// sends headers and one chunk, then waits.

const { url } = await listenTestApp(t, { API_KEYS: READER_KEY, REQUEST_TIMEOUT_MS: '120000' })
const { port } = new URL(url)

/** Sends the head and a first chunk of a body that never ends; resolves with all it got back. */
async function trickle(method: string, path: string, framing: string) {
  const socket = connect(Number(port), '127.0.0.1')
  await once(socket, 'connect')
  socket.write(
    `${method} ${path} HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\n` +
      `authorization: Bearer ${READER_KEY}\r\ncontent-type: application/json\r\n${framing}\r\n`,
  )
  socket.write(framing.startsWith('transfer') ? '5\r\n{"a":\r\n' : '{"a":')
  let raw = ''
  socket.on('data', (chunk: Buffer) => {
    raw += chunk.toString('latin1')
  })
  socket.on('error', () => {})
  // The server ends the connection itself; a test that fails here times out instead.
  await once(socket, 'close')
  const [head = '', body = ''] = raw.split('\r\n\r\n')
  return { head, body }
}

for (const framing of ['transfer-encoding: chunked\r\n', 'content-length: 1000000\r\n']) {
  t.test(`a wrong path with a body that never ends (${framing.split(':')[0]})`, async (t) => {
    const cases: Array<[string, string, RegExp]> = [
      ['POST', '/api/nope', /^\{"error":"not_found"/],
      ['POST', '/v1/nope', /^\{"error":\{"message":/],
      ['POST', '/ollama/api/nope', /^404 page not found/], // Ollama's own plain text
      // A route that exists for another method: the same.
      ['PUT', '/api/search', /^\{"error":"not_found"/],
    ]
    for (const [method, path, shape] of cases) {
      const { head, body } = await trickle(method, path, framing)
      t.match(head, /^HTTP\/1\.1 404 /, `${method} ${path}: 404`)
      t.match(head, /\r\nconnection: close/i, `${method} ${path}: and the connection closed`)
      const text = body.includes('\r\n') ? (body.split('\r\n')[1] ?? '') : body
      t.match(text, shape, `${method} ${path}: in its surface's shape`)
    }
  })
}

t.test('a wrong path without a body keeps its connection', async (t) => {
  const res = await fetch(`${url}/api/nope`, { headers: { authorization: `Bearer ${READER_KEY}` } })
  t.equal(res.status, 404)
  t.not(res.headers.get('connection'), 'close')
})
