import { authEnabled } from '@confluence-bot/shared'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import Type from 'typebox'
import { errorResponses } from '../../schemas/common.ts'
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

// The effective settings (admin, Bearer keys only).
const settings: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.addHook('onRequest', fastify.requireRole('admin'))

  fastify.get(
    '/config',
    {
      schema: {
        tags: ['admin'],
        summary: 'The effective configuration, without secrets',
        response: { 200: ConfigViewSchema, ...errorResponses(401, 403) },
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

// Everything under /admin needs an admin key. The queue dashboard, which a browser opens,
// also takes it as a Basic password; the rest takes Bearer keys only.
const admin: FastifyPluginAsyncTypebox = async (fastify) => {
  await fastify.register(async (browser) => {
    browser.addHook('onRequest', browser.requireRole('admin', { basic: true }))
    await browser.register(dashboard)
  })
  await fastify.register(settings)
}

export default admin
