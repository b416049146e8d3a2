import { AppError, type ErrorBody, ErrorCode } from '@confluence-bot/shared'
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'

// One error handler for the whole API: every error leaves as {error, message, statusCode};
// 4xx keep their message, 5xx are logged with the request and answered generically, and no
// stack trace ever reaches a client.

const STATUS_CODES: Record<number, string> = {
  400: ErrorCode.validation,
  401: ErrorCode.unauthorized,
  403: ErrorCode.forbidden,
  404: ErrorCode.notFound,
  413: ErrorCode.payloadTooLarge,
  415: ErrorCode.unsupportedMediaType,
}

/** The media type of a Content-Type header, lower-cased, without parameters. */
export function mediaType(header: string | undefined): string {
  const value = header ?? ''
  const semicolon = value.indexOf(';')
  return (semicolon === -1 ? value : value.slice(0, semicolon)).trim().toLowerCase()
}

// Types read as JSON besides application/json (which Fastify's own parser reads).
const JSON_LIKE = new Set(['', 'text/plain', 'application/x-www-form-urlencoded'])

// Refusals that shed load: /metrics counts them, and a line each would be thousands a second
// under the very flood they answer.
const SHEDDING = new Set<string>([
  ErrorCode.overloaded,
  ErrorCode.answersBusy,
  ErrorCode.tooManyAnswers,
  ErrorCode.rateLimited,
])

const REDIS_DOWN = /Stream isn't writeable|Connection is closed|enableOfflineQueue/

function toBody(error: FastifyError, request: FastifyRequest, bodyLimit: number): ErrorBody {
  if (error instanceof AppError) return error.toBody()
  if (error.validation) {
    if (error.validationContext === 'body' && request.body === undefined) {
      return missingBody
    }
    return { error: ErrorCode.validation, message: error.message, statusCode: 400 }
  }
  switch (error.code) {
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return missingBody
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return {
        error: ErrorCode.payloadTooLarge,
        message: `Request body is larger than BODY_LIMIT (${bodyLimit} bytes)`,
        statusCode: 413,
      }
  }
  if (REDIS_DOWN.test(error.message) || error.name === 'MaxRetriesPerRequestError') {
    // The fail-fast Redis connection refuses commands while Redis is unreachable.
    return {
      error: ErrorCode.redisUnavailable,
      message:
        'Redis is unreachable (REDIS_URL); sources, jobs and conversations cannot be read or stored',
      statusCode: 503,
    }
  }
  const status = error.statusCode ?? 500
  if (status >= 400 && status < 500) {
    return {
      /* c8 ignore next: every 4xx Fastify raises here is listed; the fallback is for new ones */
      error: STATUS_CODES[status] ?? 'bad_request',
      message: error.message,
      statusCode: status,
    }
  }
  return {
    error: ErrorCode.internal,
    message: `Internal error (request id ${request.id})`,
    statusCode: 500,
  }
}

const missingBody: ErrorBody = {
  error: ErrorCode.missingBody,
  message: 'missing request body',
  statusCode: 400,
}

async function errors(fastify: FastifyInstance) {
  const bodyLimit = fastify.config.BODY_LIMIT

  // JSON bodies. `curl -d` declares a form type and some clients send text/plain or nothing, so
  // those are read as JSON too, as Ollama reads them; any other type is refused (415), so a
  // stream or a file never reaches a JSON route. Cross-site forms are stopped by the Origin check.
  fastify.removeContentTypeParser('text/plain')
  fastify.addContentTypeParser('*', { parseAs: 'string' }, (request, body, done) => {
    const type = mediaType(request.headers['content-type'])
    if (!JSON_LIKE.has(type)) {
      return done(
        new AppError(
          415,
          ErrorCode.unsupportedMediaType,
          `Content-Type ${type} is not accepted here; send a JSON body with Content-Type: application/json`,
        ),
      )
    }
    const text = body as string
    if (text.trim() === '') return done(null, undefined)
    try {
      done(null, JSON.parse(text))
    } catch (err) {
      done(new AppError(400, ErrorCode.validation, `Body is not JSON: ${(err as Error).message}`))
    }
  })

  fastify.setErrorHandler((error: FastifyError, request: FastifyRequest, reply: FastifyReply) => {
    // Only the response says whether an answer can still be written: a request reports
    // `destroyed` as soon as its body has been read to the end, with its client still waiting.
    if (reply.sent || reply.raw.destroyed || reply.raw.socket?.destroyed === true) {
      // The client went away (and its upstream request was cancelled): nobody to answer.
      request.log.info({ err: error.message }, 'client went away before the answer')
      return reply
    }
    const body = toBody(error, request, bodyLimit)
    if (SHEDDING.has(body.error)) {
      request.log.debug({ error: body.error, statusCode: body.statusCode }, body.message)
    } else if (error instanceof AppError && body.statusCode >= 500) {
      // A known dependency failure: its message says it all, a stack adds nothing.
      request.log.warn({ error: body.error, statusCode: body.statusCode }, body.message)
    } else if (body.statusCode >= 500) {
      request.log.error({ err: error }, 'request failed')
    } else {
      request.log.info({ error: body.error, statusCode: body.statusCode }, body.message)
    }
    return reply.code(body.statusCode).type('application/json; charset=utf-8').send(body)
  })

  fastify.setNotFoundHandler((request, reply) => {
    reply.code(404).send({
      error: ErrorCode.notFound,
      message: `Route ${request.method} ${request.url.split('?')[0]} not found`,
      statusCode: 404,
    } satisfies ErrorBody)
  })
}

export default fp(errors, { name: 'errors', dependencies: ['config'], fastify: '5.x' })
