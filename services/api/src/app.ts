import { randomUUID } from 'node:crypto'
import type { Socket } from 'node:net'
import type { ApiConfig } from '@confluence-bot/shared'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import Fastify, {
  type FastifyInstance,
  type FastifyReply,
  type FastifyServerOptions,
} from 'fastify'
import { answerClientError } from './lib/client-errors.ts'
import { OneLineRequestLog } from './lib/request-log.ts'
import { routerErrorBody } from './lib/router-errors.ts'
import answerLimits from './plugins/app/answer-limits.ts'
import auth from './plugins/app/auth.ts'
import backPressure from './plugins/app/back-pressure.ts'
import chunkIndex from './plugins/app/chunk-index.ts'
import config from './plugins/app/config.ts'
import conversations from './plugins/app/conversations.ts'
import cors from './plugins/app/cors.ts'
import errors from './plugins/app/errors.ts'
import lancedb from './plugins/app/lancedb.ts'
import metrics from './plugins/app/metrics.ts'
import ollama from './plugins/app/ollama.ts'
import queues from './plugins/app/queues.ts'
import rateLimit from './plugins/app/rate-limit.ts'
import readiness from './plugins/app/readiness.ts'
import redis from './plugins/app/redis.ts'
import requestGuard from './plugins/app/request-guard.ts'
import securityHeaders from './plugins/app/security-headers.ts'
import validation from './plugins/app/validation.ts'
import swagger from './plugins/external/swagger.ts'
import admin from './routes/admin/index.ts'
import api from './routes/api/index.ts'
import mcp from './routes/mcp/index.ts'
import ollamaCompatible from './routes/ollama/index.ts'
import chatPage from './routes/page/index.ts'
import openaiCompatible from './routes/v1/index.ts'
import { RetrievalSchema, SourceSchema, UsageSchema } from './schemas/chat.ts'
import { ErrorSchema } from './schemas/common.ts'
import { CheckSchema } from './schemas/health.ts'
import { ModelSchema } from './schemas/models.ts'
import { SearchHitSchema } from './schemas/search.ts'
import { ConfluenceSourceSchema, JobSchema } from './schemas/sources.ts'

export type BuildOptions = {
  config: ApiConfig
  /** pino options; tests usually leave logging off. */
  logger?: FastifyServerOptions['logger']
}

const REQUEST_ID = /^[A-Za-z0-9._-]{1,128}$/

/**
 * Node cuts a request that is not received within requestTimeout when it next checks its
 * connections; checking a few times per timeout keeps the cut close to the setting. Headers
 * get at most a minute, as by Node's default, and never more than the whole request.
 */
function httpOptions(requestTimeout: number) {
  // A request without Host is refused by the request guard, in the API's error shape.
  if (requestTimeout === 0) return { requireHostHeader: false }
  return {
    requireHostHeader: false,
    headersTimeout: Math.min(60_000, requestTimeout),
    connectionsCheckingInterval: Math.min(30_000, Math.max(100, Math.floor(requestTimeout / 4))),
  }
}

/**
 * Browsers preconnect and HTTP clients keep a spare connection before they send on it. Node
 * counts such a connection as a request under way, so close() would wait for it until
 * headersTimeout and a rollout would sit out its shutdown grace. Nothing was asked on it: it
 * is ended when the server starts closing (answers under way are still waited for).
 */
function endUnusedConnectionsOnClose(app: FastifyInstance) {
  const open = new Set<Socket>()
  app.server.on('connection', (socket: Socket) => {
    open.add(socket)
    socket.once('close', () => open.delete(socket))
  })
  app.addHook('preClose', async () => {
    for (const socket of open) if (socket.bytesRead === 0) socket.destroy()
  })
}

const ROUTER_ERROR_HEADERS = {
  'content-security-policy':
    "default-src 'none';base-uri 'none';form-action 'none';frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
}

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
    // A client has REQUEST_TIMEOUT_MS to send its whole request; the answer is not limited
    // (model loads and pulls take minutes, and a socket may sit idle while Ollama loads).
    requestTimeout: options.config.REQUEST_TIMEOUT_MS,
    http: httpOptions(options.config.REQUEST_TIMEOUT_MS),
    connectionTimeout: 0,
    // Job ids may be 200 characters (their schema says so); the router's default stops at 100.
    routerOptions: { maxParamLength: 256 },
    clientErrorHandler: answerClientError,
    // A path the router cannot read (`%ff`, a parameter past maxParamLength) gets a 400 in the
    // error shape of its surface like every other 400.
    frameworkErrors: (error, request, reply) => {
      // No hook runs for a path the router refused: the headers every answer carries are
      // written here (it is data, like every error: nothing may render or frame it).
      ;(reply as unknown as FastifyReply)
        .headers(ROUTER_ERROR_HEADERS)
        .header('x-request-id', request.id)
        .code(400)
        .type('application/json; charset=utf-8')
        .send(routerErrorBody(request.url, error.code))
    },
    return503OnClosing: true,
    logController: new OneLineRequestLog(),
  }).withTypeProvider<TypeBoxTypeProvider>()

  for (const schema of [
    ErrorSchema,
    SourceSchema,
    RetrievalSchema,
    UsageSchema,
    ModelSchema,
    CheckSchema,
    ConfluenceSourceSchema,
    JobSchema,
    SearchHitSchema,
  ]) {
    app.addSchema(schema)
  }
  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id)
  })

  endUnusedConnectionsOnClose(app)
  app.register(config, { config: options.config })
  app.register(errors)
  // Headers first, so that even a refusal carries them; CORS after the guard, which refuses
  // a foreign Origin (a preflight too) before CORS would answer it.
  app.register(securityHeaders)
  app.register(requestGuard)
  app.register(cors)
  app.register(validation)
  app.register(readiness)
  app.register(swagger)
  app.register(ollama)
  app.register(redis)
  app.register(conversations)
  app.register(lancedb)
  app.register(chunkIndex)
  app.register(queues)
  app.register(auth)
  // Before the routes, so their hooks cover every route; probes are exempt from shedding.
  app.register(backPressure)
  app.register(metrics)
  // Route hooks, in this order, on the routes registered below: the rate limit counts a
  // request once its key is known, then an answer takes its slot.
  app.register(rateLimit)
  app.register(answerLimits)
  app.register(api, { prefix: '/api' })
  app.register(admin, { prefix: '/admin' })
  app.register(openaiCompatible, { prefix: '/v1' })
  app.register(ollamaCompatible, { prefix: '/ollama' })
  app.register(mcp, { prefix: '/mcp' })
  app.register(chatPage)
  return app
}
