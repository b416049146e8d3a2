import { randomUUID } from 'node:crypto'
import type { ApiConfig } from '@confluence-bot/shared'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import { OneLineRequestLog } from './lib/request-log.ts'
import auth from './plugins/app/auth.ts'
import config from './plugins/app/config.ts'
import errors from './plugins/app/errors.ts'
import lancedb from './plugins/app/lancedb.ts'
import ollama from './plugins/app/ollama.ts'
import queues from './plugins/app/queues.ts'
import readiness from './plugins/app/readiness.ts'
import redis from './plugins/app/redis.ts'
import validation from './plugins/app/validation.ts'
import swagger from './plugins/external/swagger.ts'
import admin from './routes/admin/index.ts'
import api from './routes/api/index.ts'
import { SourceSchema, UsageSchema } from './schemas/chat.ts'
import { ErrorSchema } from './schemas/common.ts'
import { CheckSchema } from './schemas/health.ts'
import { ModelSchema } from './schemas/models.ts'
import { ConfluenceSourceSchema, JobSchema } from './schemas/sources.ts'

export type BuildOptions = {
  config: ApiConfig
  /** pino options; tests usually leave logging off. */
  logger?: FastifyServerOptions['logger']
}

const REQUEST_ID = /^[A-Za-z0-9._-]{1,128}$/

/** Builds the API without listening: the server process and the tests both start here. */
export function buildApp(options: BuildOptions): FastifyInstance {
  const app = Fastify({
    logger: options.logger ?? false,
    bodyLimit: options.config.BODY_LIMIT,
    // A caller's X-Request-Id is kept when it is sane, so logs can be joined across services.
    genReqId: (req) => {
      const given = req.headers['x-request-id']
      return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID()
    },
    // Answers and model loads are not cut by server timeouts (Ollama sets none either).
    requestTimeout: 0,
    connectionTimeout: 0,
    return503OnClosing: true,
    logController: new OneLineRequestLog(),
  }).withTypeProvider<TypeBoxTypeProvider>()

  for (const schema of [
    ErrorSchema,
    SourceSchema,
    UsageSchema,
    ModelSchema,
    CheckSchema,
    ConfluenceSourceSchema,
    JobSchema,
  ]) {
    app.addSchema(schema)
  }
  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id)
  })

  app.register(config, { config: options.config })
  app.register(errors)
  app.register(validation)
  app.register(readiness)
  app.register(swagger)
  app.register(ollama)
  app.register(redis)
  app.register(lancedb)
  app.register(queues)
  app.register(auth)
  app.register(api, { prefix: '/api' })
  app.register(admin, { prefix: '/admin' })
  return app
}
