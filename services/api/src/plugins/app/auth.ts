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
    /**
     * The Confluence spaces the request's key may see; null: every space (also when auth is
     * off). Undefined until requireRole has run: read it through allowedSpaces(), which then
     * allows nothing.
     */
    spaces?: readonly string[] | null
    /**
     * A stable id of the request's key, for what a key owns (its conversations): the first 16
     * hex digits of the key's SHA-256, never the key; `local` when auth is off.
     */
    owner?: string
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

/** What a configured key grants once it matches. */
type Grant = { digest: Buffer; role: Role; spaces: readonly string[] | null; owner: string }

async function auth(fastify: FastifyInstance) {
  const enabled = authEnabled(fastify.config)
  const { readers, admins, spaces } = fastify.config.apiKeys
  const grant = (role: Role) => (key: string) => {
    const d = digest(key)
    return {
      digest: d,
      role,
      spaces: spaces.get(key) ?? null,
      owner: d.toString('hex').slice(0, 16),
    }
  }
  // Admin grants last: a key listed in both lists gets the admin one (its spaces are the same,
  // the config refuses anything else).
  const grants: readonly Grant[] = [...readers.map(grant('reader')), ...admins.map(grant('admin'))]

  /** The grant of the request's key. Every grant's digest is compared, in constant time. */
  const grantOf = (request: FastifyRequest, basic: boolean): Grant | undefined => {
    const key = presentedKey(request.headers.authorization, basic)
    if (key === undefined) return undefined
    const token = digest(key)
    let found: Grant | undefined
    for (const g of grants) if (timingSafeEqual(token, g.digest)) found = g
    return found
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
        request.spaces = null
        request.owner = 'local'
        return
      }
      const found = grantOf(request, basic)
      // The refusal is sent from here rather than thrown: scopes with an error handler of their
      // own (the queue dashboard's) must still answer 401/403 in the API's error shape.
      if (found === undefined) {
        reply.header('www-authenticate', challenge)
        return refuse(reply, new AppError(401, ErrorCode.unauthorized, howTo))
      }
      if (needed === 'admin' && found.role !== 'admin') {
        return refuse(
          reply,
          new AppError(403, ErrorCode.forbidden, 'This operation needs an admin API key'),
        )
      }
      request.role = found.role
      request.spaces = found.spaces
      request.owner = found.owner
    }
  }
  fastify.decorate('requireRole', requireRole)
}

export default fp(auth, { name: 'auth', dependencies: ['config'], fastify: '5.x' })
