import { Duplex } from 'node:stream'
import t from 'tap'
import { answerClientError } from '../../../services/api/src/lib/client-errors.ts'

// The raw-socket corners of answering what Node refused (the answers themselves are proven over
// real sockets in tests/api/front-door.test.ts).

/** A socket stand-in that records what is written to it. */
function socketLike() {
  const written: string[] = []
  const socket = new Duplex({
    read() {},
    write(chunk, _encoding, done) {
      written.push(chunk.toString())
      done()
    },
  })
  return { socket: socket as unknown as import('node:net').Socket, written }
}

const parseError = Object.assign(new Error('Parse Error'), { code: 'HPE_INVALID_METHOD' })

t.test('a socket that is gone or no longer writable gets nothing written', async (t) => {
  const reset = socketLike()
  reset.socket.destroy()
  answerClientError(Object.assign(new Error('reset'), { code: 'ECONNRESET' }), reset.socket)
  t.same(reset.written, [])

  const ended = socketLike()
  ended.socket.end()
  answerClientError(parseError, ended.socket)
  t.same(ended.written, [])
  t.ok(ended.socket.destroyed, 'and it is closed')
})

t.test('a writable socket gets the answer, then is closed', async (t) => {
  const open = socketLike()
  answerClientError(parseError, open.socket)
  t.match(open.written.join(''), /^HTTP\/1\.1 400 Bad Request\r\n[\s\S]*HPE_INVALID_METHOD/)
  t.ok(open.socket.destroyed)
})
