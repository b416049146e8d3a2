import { authEnabled } from '@confluence-bot/shared'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import Type from 'typebox'
import dashboard from './queues.ts'

const ConfigViewSchema = Type.Object(
  {
    ollama_url: Type.String(),
    chat_model: Type.String(),
    embed_model: Type.String(),
    lancedb_uri: Type.String(),
    auth: Type.Object({
      enabled: Type.Boolean(),
      reader_keys: Type.Integer({ description: 'How many reader keys are configured' }),
      admin_keys: Type.Integer({ description: 'How many admin keys are configured' }),
    }),
  },
  { title: 'ConfigView' },
)

// Everything under /admin needs an admin key (the queue dashboard joins it with ingestion).
const admin: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.addHook('onRequest', fastify.requireRole('admin'))
  await fastify.register(dashboard)

  fastify.get(
    '/config',
    {
      schema: {
        tags: ['admin'],
        summary: 'The effective configuration, without secrets',
        response: { 200: ConfigViewSchema },
      },
    },
    async () => {
      const { config } = fastify
      return {
        ollama_url: fastify.ollama.url,
        chat_model: config.CHAT_MODEL,
        embed_model: config.EMBED_MODEL,
        lancedb_uri: config.LANCEDB_URI,
        auth: {
          enabled: authEnabled(config),
          reader_keys: config.apiKeys.readers.length,
          admin_keys: config.apiKeys.admins.length,
        },
      }
    },
  )
}

export default admin
