import type { ErrorBody } from '@confluence-bot/shared'
import type { FastifyInstance } from 'fastify'
import answers from './answers.ts'
import models from './models.ts'

// /ollama — an Ollama-compatible API: an Ollama client pointed at http://<host>/ollama works
// unchanged (api/chat, generate, tags, show, embed, embeddings, version, ps and the root it
// probes), with a reader key as `Authorization: Bearer <key>`. Plain models pass through to
// Ollama untouched; `<model>+confluence` answers grounded in the Confluence index (see alias.ts,
// grounded.ts).

/** Paths this scope serves (under its prefix): another method on one of them is a 405. */
const PATHS = [
  '/',
  '/api/chat',
  '/api/generate',
  '/api/tags',
  '/api/show',
  '/api/embed',
  '/api/embeddings',
  '/api/version',
  '/api/ps',
]

export default async function ollamaCompatible(fastify: FastifyInstance) {
  fastify.addHook('onRequest', fastify.requireRole('reader'))

  // Every error leaves this scope as Ollama writes one, `{"error":"<message>"}`: what a route
  // throws (answered by the API's error handler, which logs it and hides a 5xx's details) and
  // what is refused before a route runs (a missing key, a foreign Host) alike. An error handler
  // of this scope's own would miss the refusals: they are sent, not thrown. Both send the API's
  // error object, and each object this scope serializes passes here first (before the route's
  // response schema would drop `message`), so this is the one place the shape changes. Answers
  // are sent as Ollama's bytes or as text, never through here; the model list is an object,
  // and passes unchanged.
  fastify.addHook('preSerialization', async (_request, reply, payload) => {
    if (reply.statusCode < 400) return payload
    return { error: (payload as ErrorBody).message }
  })

  // Ollama's router answers an unknown path or method in plain text, and so does this scope.
  const known = new Set(PATHS.map((path) => `${fastify.prefix}${path}`.replace(/\/$/, '')))
  fastify.setNotFoundHandler((request, reply) => {
    const path = (request.url.split('?')[0] as string).replace(/\/$/, '')
    const [status, text] = known.has(path)
      ? [405, '405 method not allowed']
      : [404, '404 page not found']
    return reply.code(status).type('text/plain').send(text)
  })

  // An OPTIONS request that is no CORS preflight (a preflight is answered by the CORS hook before
  // any route) would fall to the root's catch-all OPTIONS route and leave in the API's shape.
  for (const url of ['/', '/*']) {
    fastify.options(url, { schema: { hide: true } }, (_request, reply) => reply.callNotFound())
  }
  await fastify.register(models)
  await fastify.register(answers)
}
