import { Writable } from 'node:stream'
import { loggerOptions } from '@confluence-bot/shared'
import { pino } from 'pino'
import t from 'tap'

t.test('secrets are redacted wherever they appear in a log line', async (t) => {
  const lines: string[] = []
  const sink = new Writable({
    write(chunk, _enc, done) {
      lines.push(chunk.toString())
      done()
    },
  })
  const log = pino(loggerOptions({ level: 'info', service: 'test' }), sink)
  log.info({ req: { headers: { authorization: 'Bearer top-secret-key-1' } } }, 'request')
  log.info({ source: { auth: { token: 'top-secret-token-2', username: 'me' } } }, 'source')
  log.info({ token: 'top-secret-token-3', password: 'top-secret-pass-4' }, 'flat')
  const out = lines.join('')
  t.notMatch(out, /top-secret/)
  t.match(out, /\[redacted\]/)
  const first = JSON.parse(lines[0] as string)
  t.equal(first.service, 'test')
  t.match(first.time, /^\d{4}-\d\d-\d\dT/)
})
