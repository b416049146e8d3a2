import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { OllamaUpstream } from '../../lib/ollama-upstream.ts'

declare module 'fastify' {
  interface FastifyInstance {
    ollama: OllamaUpstream
  }
}

async function ollama(fastify: FastifyInstance) {
  const upstream = new OllamaUpstream(fastify.config.OLLAMA_URL, {
    connectTimeoutMs: fastify.config.OLLAMA_CONNECT_TIMEOUT_MS,
    answerMaxMs: fastify.config.ANSWER_MAX_MS,
    responseTimeoutMs: fastify.config.OLLAMA_RESPONSE_TIMEOUT_MS,
  })
  fastify.decorate('ollama', upstream)
  fastify.addHook('onClose', () => upstream.close())
}

export default fp(ollama, { name: 'ollama', dependencies: ['config'], fastify: '5.x' })
