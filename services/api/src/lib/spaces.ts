import { AppError, canonicalSpaceKey, ErrorCode } from '@confluence-bot/shared'
import type { FastifyRequest } from 'fastify'

/** `eng` is the space `ENG`, as in API_KEYS; what is no space key stays as asked (and matches nothing). */
const canonical = (space: string) => canonicalSpaceKey(space) ?? space

/**
 * The Confluence spaces a search or a grounded answer may read for this request: the spaces it
 * asked for, narrowed to those its API key may see.
 *
 * - `undefined`: no restriction at all (a key of every space that asked for none);
 * - `[]`: nothing is allowed, and the search module matches nothing for it;
 * - else the asked spaces (in their order, global keys in capitals as Confluence stores them:
 *   `eng` is `ENG`) that the key may see, or the key's own spaces when none were asked for.
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
  if (asked === undefined) return granted ?? undefined
  const wanted = [...new Set(asked.map(canonical))]
  if (granted === null) return wanted
  const allowed = new Set(granted)
  return wanted.filter((space) => allowed.has(space))
}

/**
 * The spaces a conversation's answers cited that this request's key may not read (a key's
 * spaces were narrowed, or a page moved, since): such a conversation is not shown or continued.
 */
function quotedOutside(
  request: FastifyRequest,
  conversation: { messages: ReadonlyArray<{ sources?: ReadonlyArray<{ space: string }> }> },
): string[] {
  const granted = allowedSpaces(request)
  if (granted === undefined) return []
  const allowed = new Set(granted)
  const outside = new Set<string>()
  for (const message of conversation.messages) {
    for (const source of message.sources ?? []) {
      if (!allowed.has(source.space)) outside.add(source.space)
    }
  }
  return [...outside].sort()
}

/**
 * Refuses (403) a conversation whose answers cited spaces this request's key may not read: it
 * is neither shown nor continued.
 */
export function refuseQuotedOutside(
  request: FastifyRequest,
  conversation: Parameters<typeof quotedOutside>[1],
): void {
  const outside = quotedOutside(request, conversation)
  if (outside.length > 0) {
    throw new AppError(
      403,
      ErrorCode.forbidden,
      `This conversation quotes spaces this API key may not read (${outside.join(', ')})`,
    )
  }
}
