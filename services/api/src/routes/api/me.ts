import { authEnabled } from '@confluence-bot/shared'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { errorResponses } from '../../schemas/common.ts'
import { type Me, MeSchema } from '../../schemas/me.ts'

// What the caller's key may do, so a client (the chat page) can show what it offers and ask
// for a key when there is none. The key itself is never echoed: the caller has it already,
// and a response is logged and cached in places a key must not be.
const me: FastifyPluginAsyncTypebox = async (fastify) => {
  const auth = authEnabled(fastify.config)
  fastify.get(
    '/me',
    {
      schema: {
        tags: ['keys'],
        summary: 'What your API key may do',
        description:
          'The role of the key sending the request and the Confluence spaces it may read ' +
          '(null: every space). With auth off (no keys configured) every request is an admin ' +
          'of every space and `auth` is false.',
        response: { 200: MeSchema, ...errorResponses(401) },
      },
    },
    // requireRole runs first on this scope and always sets role and spaces.
    async (request): Promise<Me> => ({
      role: request.role as Me['role'],
      spaces: request.spaces === null ? null : [...(request.spaces as readonly string[])],
      auth,
    }),
  )
}

export default me
