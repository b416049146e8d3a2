import type { FastifyReply, FastifyRequest } from 'fastify'
import t from 'tap'
import { OneLineRequestLog } from '../../../services/api/src/lib/request-log.ts'

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
