import type { FastifyReply, FastifyRequest } from 'fastify'
import t from 'tap'
import { loggableUrl, OneLineRequestLog } from '../../../services/api/src/lib/request-log.ts'

t.test('one line per request: nothing on arrival, the outcome on completion', async (t) => {
  const lines: Array<{ level: string; obj: Record<string, unknown>; msg: string }> = []
  const log = {
    info: (obj: Record<string, unknown>, msg: string) => lines.push({ level: 'info', obj, msg }),
    error: (obj: Record<string, unknown>, msg: string) => lines.push({ level: 'error', obj, msg }),
  }
  const request = { method: 'POST', url: '/api/chat', log } as unknown as FastifyRequest
  const reply = { statusCode: 200, elapsedTime: 12.3456, log } as unknown as FastifyReply
  const controller = new OneLineRequestLog()

  controller.incomingRequest()
  t.equal(lines.length, 0, 'nothing is logged when a request arrives')

  controller.requestCompleted(null, request, reply)
  t.same(lines.pop(), {
    level: 'info',
    obj: { method: 'POST', url: '/api/chat', statusCode: 200, ms: 12.35 },
    msg: 'request completed',
  })

  const err = new Error('stream broke')
  controller.requestCompleted(err, request, reply)
  t.same(lines.pop(), {
    level: 'error',
    obj: { method: 'POST', url: '/api/chat', statusCode: 200, ms: 12.35, err },
    msg: 'request errored',
  })
})

t.test('credential-looking query values are hidden in the logged URL, the rest kept', async (t) => {
  t.equal(loggableUrl('/api/chat'), '/api/chat')
  t.equal(loggableUrl('/mcp?api_key=s3cret'), '/mcp?api_key=***')
  t.equal(
    loggableUrl('/api/jobs?source_id=src_1&limit=5&access_token=abc&Token=x&%6Bey=y&flag'),
    '/api/jobs?source_id=src_1&limit=5&access_token=***&Token=***&%6Bey=***&flag',
  )
  t.equal(loggableUrl('/x?%E0%A4%A=1&sessionId=2'), '/x?%E0%A4%A=1&sessionId=***', 'bad %-escape')
  const lines: Array<Record<string, unknown>> = []
  const log = { info: (obj: Record<string, unknown>) => lines.push(obj), error: () => {} }
  const request = { method: 'POST', url: '/mcp?key=s3cret', log } as unknown as FastifyRequest
  const reply = { statusCode: 401, elapsedTime: 1, log } as unknown as FastifyReply
  new OneLineRequestLog().requestCompleted(null, request, reply)
  t.equal(lines[0]?.url, '/mcp?key=***')
})
