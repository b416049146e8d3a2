import { AppError, ErrorCode } from '@confluence-bot/shared'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyRequest } from 'fastify'
import Type from 'typebox'
import { refuseQuotedOutside } from '../../lib/spaces.ts'
import { errorResponses } from '../../schemas/common.ts'
import {
  ConversationIdParams,
  ConversationListQuery,
  ConversationListSchema,
  ConversationSchema,
} from '../../schemas/conversations.ts'

// The caller's own conversations (reader). Each key sees only what it owns: another key's
// conversation id answers 404 like an unknown one, so ids leak nothing about other keys.

// requireRole runs first on this scope and always sets the owner.
const ownerOf = (request: FastifyRequest) => request.owner as string

const notFound = () =>
  new AppError(
    404,
    ErrorCode.conversationNotFound,
    'No such conversation for this API key (it may have expired after CONVERSATION_TTL_S)',
  )

const conversations: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.get(
    '/conversations',
    {
      schema: {
        tags: ['conversations'],
        summary: 'Your conversations, newest first',
        description:
          'The conversations of the API key sending the request (with auth off, all of them), ' +
          'most recently updated first. A conversation is kept CONVERSATION_TTL_S seconds after ' +
          'its last turn.',
        querystring: ConversationListQuery,
        response: { 200: ConversationListSchema, ...errorResponses(400, 401, 503) },
      },
    },
    async (request) => ({
      conversations: await fastify.conversations.list(ownerOf(request), request.query.limit),
    }),
  )

  fastify.get(
    '/conversations/:id',
    {
      schema: {
        tags: ['conversations'],
        summary: 'One of your conversations, with its messages',
        description:
          'Its messages oldest first (at most CONVERSATION_MAX_TURNS); each answer lists the ' +
          'sources its citations point to. Another key’s conversation answers 404.',
        params: ConversationIdParams,
        response: { 200: ConversationSchema, ...errorResponses(400, 401, 404, 503) },
      },
    },
    async (request) => {
      const found = await fastify.conversations.load(ownerOf(request), request.params.id)
      if (found === null) throw notFound()
      refuseQuotedOutside(request, found)
      return found
    },
  )

  fastify.delete(
    '/conversations/:id',
    {
      schema: {
        tags: ['conversations'],
        summary: 'Delete one of your conversations',
        description: 'Another key’s conversation answers 404 and stays.',
        params: ConversationIdParams,
        response: {
          204: Type.Null({ description: 'Deleted' }),
          ...errorResponses(400, 401, 404, 503),
        },
      },
    },
    async (request, reply) => {
      if (!(await fastify.conversations.remove(ownerOf(request), request.params.id))) {
        throw notFound()
      }
      return reply.code(204).send(null)
    },
  )
}

export default conversations
