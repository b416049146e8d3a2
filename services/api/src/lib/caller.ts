import type { FastifyRequest } from 'fastify'

/**
 * Who a request counts against for limits: its API key, as the key's `owner` label (16 hex
 * digits of the key's SHA-256, set by requireRole), never the key itself, since the label is
 * stored in Redis; a request without a key (auth off, or a route that needs none) counts
 * against its IP address.
 */
export function callerOf(request: FastifyRequest): string {
  const { owner } = request
  return owner !== undefined && owner !== 'local' ? `key:${owner}` : `ip:${request.ip}`
}
