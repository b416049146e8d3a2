import type { ApiConfig } from '@confluence-bot/shared'
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'

declare module 'fastify' {
  interface FastifyInstance {
    config: ApiConfig
  }
}

async function config(fastify: FastifyInstance, opts: { config: ApiConfig }) {
  fastify.decorate('config', opts.config)
}

export default fp(config, { name: 'config', fastify: '5.x' })
