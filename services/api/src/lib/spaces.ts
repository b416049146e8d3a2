import type { FastifyRequest } from 'fastify'

/**
 * The Confluence spaces a search or a grounded answer may read for this request: the spaces it
 * asked for, narrowed to those its API key may see.
 *
 * - `undefined`: no restriction at all (a key of every space that asked for none);
 * - `[]`: nothing is allowed, and the search module matches nothing for it;
 * - else the asked spaces (in their order) that the key may see, or the key's own spaces when
 *   none were asked for.
 *
 * A request that never went through requireRole has no grant yet and is allowed nothing, so a
 * route registered outside the authenticated scopes fails closed rather than open.
 */
export function allowedSpaces(
  request: FastifyRequest,
  asked?: readonly string[],
): readonly string[] | undefined {
  const granted = request.spaces
  if (granted === undefined) return []
  if (granted === null) return asked
  if (asked === undefined) return granted
  const allowed = new Set(granted)
  return asked.filter((space) => allowed.has(space))
}
