import { isIP } from 'node:net'
import { AppError, authEnabled, ErrorCode } from '@confluence-bot/shared'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'

// Who may talk to the API from a browser. Two checks run before anything else, on every route:
// - Host: a page on another site can rebind its own DNS name to this machine and then read it as
//   "same origin" (DNS rebinding). A server bound to loopback therefore answers only to loopback
//   names and IP addresses, unless API_ALLOWED_HOSTS names more.
// - Origin: a browser sends it with every cross-origin request, so a page of another site
//   cannot POST here (with a browser's cached credentials or not) unless API_ALLOWED_ORIGINS
//   lists it. Clients that are not browsers send no Origin and are not affected.

const LOOPBACK_BIND = new Set(['127.0.0.1', 'localhost', '::1', '[::1]'])

const list = (raw: string) =>
  raw
    .split(',')
    .map((entry) => entry.trim().toLowerCase().replace(/\/+$/, ''))
    .filter((entry) => entry !== '')

/**
 * The host name of a Host header (`name:port`, `[v6]:port`), lower-cased, without the port or
 * the trailing dot of a fully qualified name (`localhost.`).
 */
function hostName(header: string): string {
  const host = header.trim().toLowerCase()
  if (host.startsWith('[')) return host.slice(1, host.indexOf(']'))
  const colon = host.lastIndexOf(':')
  return (colon === -1 ? host : host.slice(0, colon)).replace(/\.$/, '')
}

const isLocalName = (name: string) => name === 'localhost' || name.endsWith('.localhost')

export type HostPolicy = (host: string | undefined) => boolean

/**
 * Which Host headers the API answers: see API_ALLOWED_HOSTS. A rebinding site's page sends its
 * own name as Host (and as Origin), so only a name check stops it. With keys it would still need
 * one, so a server listening beyond loopback answers any name; without keys (`auth`: false)
 * it would act as an admin for that page, so it answers local names and IPs alone there too.
 */
export function hostPolicy(bind: string, allowedHosts: string, auth = true): HostPolicy {
  const names = list(allowedHosts)
  if (names.includes('*')) return () => true
  const loopbackOnly = LOOPBACK_BIND.has(bind.toLowerCase()) || bind.startsWith('127.')
  if (names.length === 0 && !loopbackOnly && auth) return () => true
  return (host) => {
    // HTTP/1.0 may omit Host (HTTP/1.1 without one is refused before this check).
    if (host === undefined) return true
    const name = hostName(host)
    // IP literals cannot be rebound; probes and port-forwards use them.
    return isIP(name) !== 0 || isLocalName(name) || names.includes(name)
  }
}

export type OriginPolicy = (origin: string, host: string | undefined) => boolean

/** Which Origin headers may call the API: its own, and those of API_ALLOWED_ORIGINS. */
export function originPolicy(allowedOrigins: string): OriginPolicy {
  const origins = list(allowedOrigins)
  if (origins.includes('*')) return () => true
  return (origin, host) => {
    let parsed: URL
    try {
      parsed = new URL(origin)
    } catch {
      return false // includes "null": sandboxed frames, file: pages, redirects
    }
    if (host !== undefined && parsed.host === host.trim().toLowerCase()) return true
    return origins.includes(parsed.origin)
  }
}

/** Sends a refusal and closes the connection: a body the client may still be sending is unread. */
export function refuse(reply: FastifyReply, error: AppError): FastifyReply {
  return reply
    .code(error.statusCode)
    .header('connection', 'close')
    .type('application/json; charset=utf-8')
    .send(error.toBody())
}

/** Whether a request says a body follows (chunked, or a length above 0). */
const hasBody = (request: FastifyRequest) =>
  request.headers['transfer-encoding'] !== undefined ||
  Number(request.headers['content-length'] ?? 0) > 0

async function requestGuard(fastify: FastifyInstance) {
  const { config } = fastify
  const hostAllowed = hostPolicy(config.HOST, config.API_ALLOWED_HOSTS, authEnabled(config))
  const originAllowed = originPolicy(config.API_ALLOWED_ORIGINS)

  // `Expect: 100-continue`: Node would invite the body at once, before the key or the origin is
  // checked. The invitation is sent only once the request is let in (preParsing runs after the
  // onRequest checks, just before the body is read); a refused one gets its refusal instead.
  fastify.server.on('checkContinue', (req, res) => fastify.server.emit('request', req, res))
  fastify.addHook('preParsing', async (request, reply) => {
    if (request.headers.expect?.toLowerCase() === '100-continue') reply.raw.writeContinue()
  })

  fastify.addHook('onRequest', async (request: FastifyRequest, reply: FastifyReply) => {
    const host = request.headers.host
    if (host === undefined && request.raw.httpVersion !== '1.0') {
      return refuse(
        reply,
        new AppError(400, ErrorCode.malformedRequest, 'An HTTP/1.1 request needs a Host header'),
      )
    }
    if (!hostAllowed(host)) {
      return refuse(
        reply,
        new AppError(
          403,
          ErrorCode.hostNotAllowed,
          `This API does not answer to the host name "${hostName(host as string)}"; add it to API_ALLOWED_HOSTS`,
        ),
      )
    }
    const origin = request.headers.origin
    if (origin !== undefined && !originAllowed(origin, host)) {
      return refuse(
        reply,
        new AppError(
          403,
          ErrorCode.originNotAllowed,
          `Requests from web pages of ${origin.slice(0, 200)} are not allowed; add the origin to API_ALLOWED_ORIGINS`,
        ),
      )
    }
    // A path no route serves is answered before its body is read, and the connection closed:
    // otherwise the answer waits for the whole body, which may take REQUEST_TIMEOUT_MS (an hour
    // in the cluster, for model imports) if its sender trickles it.
    if (request.is404 && hasBody(request)) {
      reply.header('connection', 'close')
      // The scope's own not-found handler (each surface answers in its shape); callNotFound()
      // would see it is already in one and send a bare default.
      await request.routeOptions.handler.call(fastify, request, reply)
      return reply
    }
  })
}

export default fp(requestGuard, { name: 'request-guard', dependencies: ['config'], fastify: '5.x' })
