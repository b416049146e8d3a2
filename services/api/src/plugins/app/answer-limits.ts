import type { FastifyInstance, FastifyReply, FastifyRequest, RouteOptions } from 'fastify'
import fp from 'fastify-plugin'
import { AnswerRefused, AnswerSlots, type Release } from '../../lib/answer-slots.ts'
import { callerOf } from '../../lib/caller.ts'

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * Takes an answer slot for the request's caller (lib/answer-slots.ts): its release, or the
     * refusal to throw (429/503, with `retryAfterS`). For answers not served by one of the
     * ANSWER_ROUTES, whose slots are taken and released here: MCP's `ask`.
     */
    takeAnswerSlot(request: FastifyRequest): Release | AnswerRefused
    answerSlots: AnswerSlots
  }
}

// The routes that ask the chat model for an answer. Each takes a slot when its request arrives
// (after its key is checked and counted by the rate limit, before its body is read) and gives it
// back when its response closes: whether the answer completed, failed, was cut upstream or the
// client went away, the response closes exactly once. MCP's `ask` tool shares the POST /mcp
// route with cheap calls; it takes its slot itself (routes/mcp/tools.ts).
export const ANSWER_ROUTES = new Set([
  'POST /api/chat',
  'POST /api/generate',
  'POST /v1/chat/completions',
  'POST /ollama/api/chat',
  'POST /ollama/api/generate',
])

async function answerLimits(fastify: FastifyInstance) {
  const slots = new AnswerSlots({
    overall: fastify.config.ANSWER_CONCURRENCY,
    perCaller: fastify.config.ANSWER_CONCURRENCY_PER_KEY,
  })
  const take = (request: FastifyRequest) => slots.take(callerOf(request))
  fastify.decorate('answerSlots', slots)
  fastify.decorate('takeAnswerSlot', take)

  const holdSlot = async (request: FastifyRequest, reply: FastifyReply) => {
    const slot = take(request)
    if (slot instanceof AnswerRefused) {
      reply.header('retry-after', String(slot.retryAfterS))
      throw slot
    }
    // The client may have gone while the key was checked (auth and the rate limit wait on
    // Redis): its response has closed already and will not say so again. Nobody is left to
    // answer; the error handler logs it and writes nothing.
    if (reply.raw.destroyed || request.raw.socket.destroyed) {
      slot()
      throw new Error('client closed the connection before its answer began')
    }
    reply.raw.once('close', slot)
  }

  fastify.addHook('onRoute', (route: RouteOptions) => {
    if (!ANSWER_ROUTES.has(`${route.method} ${route.url}`)) return
    route.onRequest = [route.onRequest ?? []].flat().concat(holdSlot)
  })
}

export default fp(answerLimits, { name: 'answer-limits', dependencies: ['config'], fastify: '5.x' })
