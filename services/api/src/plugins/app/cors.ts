import cors from '@fastify/cors'
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { originPolicy } from './request-guard.ts'

// CORS: which other sites' pages may read the API's answers in a browser. Closed unless
// API_ALLOWED_ORIGINS names them, the same list the request guard lets in: the guard runs first
// and refuses any other Origin with 403, a preflight included, so the two never disagree. The
// API's own origin needs no CORS (a browser sends it no preflight) and gets no CORS headers.
//
// Keys travel as `Authorization: Bearer`, never as cookies, so credentials stay off: a page of
// an allowed origin must hold a key of its own to do anything.

/** Methods the API's routes use. */
export const CORS_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE']

/** Request headers a page may send: the key, JSON bodies, request ids and MCP's session headers. */
export const CORS_REQUEST_HEADERS = [
  'Authorization',
  'Content-Type',
  'X-Request-Id',
  'Mcp-Session-Id',
  'Mcp-Protocol-Version',
  'Last-Event-ID',
]

/** Response headers a page may read: what to wait after a 429/503, and the request id. */
export const CORS_EXPOSED_HEADERS = [
  'Retry-After',
  'X-Request-Id',
  'X-RateLimit-Limit',
  'X-RateLimit-Remaining',
  'X-RateLimit-Reset',
  'Mcp-Session-Id',
]

async function corsPolicy(fastify: FastifyInstance) {
  // Without a Host to compare with, the policy allows the listed origins (or `*`) alone.
  const listed = originPolicy(fastify.config.API_ALLOWED_ORIGINS)
  await fastify.register(cors, {
    origin: (origin, callback) => callback(null, origin !== undefined && listed(origin, undefined)),
    methods: CORS_METHODS,
    allowedHeaders: CORS_REQUEST_HEADERS,
    exposedHeaders: CORS_EXPOSED_HEADERS,
    credentials: false,
    // A browser may reuse a preflight's answer for ten minutes.
    maxAge: 600,
  })
}

export default fp(corsPolicy, {
  name: 'cors',
  dependencies: ['config', 'request-guard'],
  fastify: '5.x',
})
