import { createHash, timingSafeEqual } from 'node:crypto'
import { AppError, authEnabled, ErrorCode } from '@confluence-bot/shared'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { refuse } from './request-guard.ts'

export type Role = 'reader' | 'admin'

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * An onRequest hook that lets a request through only with a key of at least `role`.
     * `basic`: the key may also come as an HTTP Basic password (the queue dashboard, which a
     * browser opens); everywhere else a browser's cached Basic credentials are worth nothing.
     */
    requireRole(
      role: Role,
      options?: { basic?: boolean },
    ): (request: FastifyRequest, reply: FastifyReply) => Promise<FastifyReply | undefined>
  }
  interface FastifyRequest {
    /** The role the request's API key carries; `admin` when auth is off. */
    role?: Role
  }
}

/**
 * The API key a request presents: `Bearer <key>`, or (where `basic` is allowed) HTTP Basic with
 * the key as the password, what a browser can send so an operator can open the queue dashboard.
 */
function presentedKey(header: string | undefined, basic: boolean): string | undefined {
  if (typeof header !== 'string') return undefined
  const match = /^(Bearer|Basic)[ \t]+(\S+)[ \t]*$/i.exec(header)
  if (!match?.[1] || !match[2]) return undefined
  if (match[1].toLowerCase() === 'bearer') return match[2]
  if (!basic) return undefined
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

async function auth(fastify: FastifyInstance) {
  const enabled = authEnabled(fastify.config)
  const admins = fastify.config.apiKeys.admins.map(digest)
  const readers = fastify.config.apiKeys.readers.map(digest)

  const roleOf = (request: FastifyRequest, basic: boolean): Role | undefined => {
    const key = presentedKey(request.headers.authorization, basic)
    if (key === undefined) return undefined
    const token = digest(key)
    if (matches(token, admins)) return 'admin'
    if (matches(token, readers)) return 'reader'
    return undefined
  }

  const requireRole = (needed: Role, options: { basic?: boolean } = {}) => {
    const basic = options.basic === true
    const challenge = basic
      ? 'Basic realm="confluence-bot", charset="UTF-8"'
      : 'Bearer realm="confluence-bot"'
    const howTo = basic
      ? 'Sign in with any user name and an admin API key as the password, or send "Authorization: Bearer <key>"'
      : 'Send a valid API key as "Authorization: Bearer <key>"'
    return async (request: FastifyRequest, reply: FastifyReply) => {
      if (!enabled) {
        request.role = 'admin'
        return
      }
      const role = roleOf(request, basic)
      // The refusal is sent from here rather than thrown: scopes with an error handler of their
      // own (the queue dashboard's) must still answer 401/403 in the API's error shape.
      if (role === undefined) {
        reply.header('www-authenticate', challenge)
        return refuse(reply, new AppError(401, ErrorCode.unauthorized, howTo))
      }
      if (needed === 'admin' && role !== 'admin') {
        return refuse(
          reply,
          new AppError(403, ErrorCode.forbidden, 'This operation needs an admin API key'),
        )
      }
      request.role = role
    }
  }
  fastify.decorate('requireRole', requireRole)
}

export default fp(auth, { name: 'auth', dependencies: ['config'], fastify: '5.x' })
