import { createHash, timingSafeEqual } from 'node:crypto'
import { AppError, authEnabled, ErrorCode } from '@confluence-bot/shared'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'

export type Role = 'reader' | 'admin'

declare module 'fastify' {
  interface FastifyInstance {
    /** An onRequest hook that lets a request through only with a key of at least `role`. */
    requireRole(
      role: Role,
    ): (request: FastifyRequest, reply: FastifyReply) => Promise<FastifyReply | undefined>
  }
  interface FastifyRequest {
    /** The role the request's API key carries; `admin` when auth is off. */
    role?: Role
  }
}

/**
 * The API key a request presents: `Bearer <key>`, or HTTP Basic with the key as the password
 * (what a browser can send, so an operator can open the queue dashboard).
 */
function presentedKey(header: string | undefined): string | undefined {
  if (typeof header !== 'string') return undefined
  const match = /^(Bearer|Basic)[ \t]+(\S+)[ \t]*$/i.exec(header)
  if (!match?.[1] || !match[2]) return undefined
  if (match[1].toLowerCase() === 'bearer') return match[2]
  const decoded = Buffer.from(match[2], 'base64').toString('utf8')
  const colon = decoded.indexOf(':')
  return colon === -1 ? undefined : decoded.slice(colon + 1) || undefined
}

const digest = (key: string) => createHash('sha256').update(key).digest()

/** True when `token` matches one of `digests`. Every digest is compared, in constant time. */
function matches(token: Buffer, digests: readonly Buffer[]): boolean {
  let found = false
  for (const d of digests) found = timingSafeEqual(token, d) || found
  return found
}

function refuse(reply: FastifyReply, error: AppError): FastifyReply {
  return reply.code(error.statusCode).type('application/json; charset=utf-8').send(error.toBody())
}

async function auth(fastify: FastifyInstance) {
  const enabled = authEnabled(fastify.config)
  const admins = fastify.config.apiKeys.admins.map(digest)
  const readers = fastify.config.apiKeys.readers.map(digest)

  const roleOf = (request: FastifyRequest): Role | undefined => {
    const key = presentedKey(request.headers.authorization)
    if (key === undefined) return undefined
    const token = digest(key)
    if (matches(token, admins)) return 'admin'
    if (matches(token, readers)) return 'reader'
    return undefined
  }

  fastify.decorate('requireRole', (needed: Role) => async (request: FastifyRequest, reply) => {
    if (!enabled) {
      request.role = 'admin'
      return
    }
    const role = roleOf(request)
    // The refusal is sent from here rather than thrown: scopes with an error handler of their
    // own (the queue dashboard's) must still answer 401/403 in the API's error shape.
    if (role === undefined) {
      reply.header('www-authenticate', [
        'Bearer realm="confluence-bot"',
        'Basic realm="confluence-bot", charset="UTF-8"',
      ])
      return refuse(
        reply,
        new AppError(
          401,
          ErrorCode.unauthorized,
          'Send a valid API key as "Authorization: Bearer <key>"',
        ),
      )
    }
    if (needed === 'admin' && role !== 'admin') {
      return refuse(
        reply,
        new AppError(403, ErrorCode.forbidden, 'This operation needs an admin API key'),
      )
    }
    request.role = role
  })
}

export default fp(auth, { name: 'auth', dependencies: ['config'], fastify: '5.x' })
