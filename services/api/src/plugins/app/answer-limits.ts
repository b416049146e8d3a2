import type { FastifyInstance, FastifyReply, FastifyRequest, RouteOptions } from 'fastify'
import fp from 'fastify-plugin'
import { AnswerRefused, AnswerSlots, type Release } from '../../lib/answer-slots.ts'
import { callerOf } from '../../lib/caller.ts'
import { countAnswerStopped } from '../../lib/metrics.ts'
import { onceClosed } from '../../lib/proxy.ts'

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * Takes a slot for the request's caller (lib/answer-slots.ts): its release, or the refusal
     * to throw (429/503, with `retryAfterS`). For model calls not served by one of the
     * MODEL_CALL_ROUTES, whose slots are taken and released here: MCP's `ask`.
     */
    takeAnswerSlot(request: FastifyRequest): Release | AnswerRefused
    answerSlots: AnswerSlots
  }
}

// The routes that hold a connection to Ollama for a client's model call: answers from the chat
// model and embeddings. Each takes a slot when its request arrives (after its key is checked
// and counted by the rate limit, before its body is read) and gives it back when its response
// closes: whether the call completed, failed, was cut upstream or the client went away, the
// response closes exactly once. MCP's `ask` tool shares the POST /mcp route with cheap calls; it
// takes its slot itself (routes/mcp/tools.ts). Model pulls are an admin's, long by nature, and
// model lists and details are short: they take none.
export const MODEL_CALL_ROUTES = new Set([
  'POST /api/chat',
  'POST /api/generate',
  'POST /v1/chat/completions',
  'POST /v1/embeddings',
  'POST /ollama/api/chat',
  'POST /ollama/api/generate',
  'POST /ollama/api/embed',
  'POST /ollama/api/embeddings',
])

/**
 * How long past ANSWER_MAX_MS a response may still take to reach its client: the smaller of
 * ANSWER_MAX_MS and 10 s. It covers what runs before the model is asked (the search of a
 * grounded answer) and the last lines of an answer cut at ANSWER_MAX_MS.
 */
export const deliveryGraceMs = (answerMaxMs: number): number => Math.min(answerMaxMs, 10_000)

async function answerLimits(fastify: FastifyInstance) {
  const slots = new AnswerSlots({
    overall: fastify.config.ANSWER_CONCURRENCY,
    perCaller: fastify.config.ANSWER_CONCURRENCY_PER_KEY,
  })
  const take = (request: FastifyRequest) => slots.take(callerOf(request))
  fastify.decorate('answerSlots', slots)
  fastify.decorate('takeAnswerSlot', take)
  const maxMs = fastify.config.ANSWER_MAX_MS

  // A client that stops reading keeps its response unfinished, so its slot held and the rest of
  // the answer buffered in this process, for as long as it keeps the socket open; ANSWER_MAX_MS
  // ends the call at Ollama, not the delivery. Past it and its grace the connection is closed,
  // which closes the response and gives the slot back.
  const deadline = (request: FastifyRequest, reply: FastifyReply) => {
    const timer = setTimeout(() => {
      countAnswerStopped('undelivered')
      request.log.info(
        { answerMaxMs: maxMs },
        'response not taken by its client within ANSWER_MAX_MS and its grace; closing the connection',
      )
      reply.raw.destroy()
    }, maxMs + deliveryGraceMs(maxMs))
    timer.unref()
    onceClosed(request, reply, () => clearTimeout(timer))
  }

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
    onceClosed(request, reply, slot)
    if (maxMs > 0) deadline(request, reply)
  }

  fastify.addHook('onRoute', (route: RouteOptions) => {
    if (!MODEL_CALL_ROUTES.has(`${route.method} ${route.url}`)) return
    route.onRequest = [route.onRequest ?? []].flat().concat(holdSlot)
  })
}

export default fp(answerLimits, { name: 'answer-limits', dependencies: ['config'], fastify: '5.x' })
