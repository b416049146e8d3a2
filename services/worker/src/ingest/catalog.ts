import { QUEUE_PREFIX } from '@confluence-bot/shared'
import type { Redis } from 'ioredis'
import type { PageRef } from '../confluence/types.ts'
import type { PageTarget, UserTarget } from '../convert/index.ts'

// What the crawl has seen of a source, for the page batches that convert its bodies on any
// worker: page title (in its space) → URL for `ac:link`s, and user id → display name for
// mentions. Rewritten whole on each crawl, so a deleted page stops resolving.

const catalogKey = (sourceId: string) => `${QUEUE_PREFIX}:catalog:${sourceId}`

const titleField = (spaceKey: string, title: string) => `t:${spaceKey}:${title.normalize('NFC')}`

export async function saveCatalog(
  redis: Redis,
  sourceId: string,
  pages: readonly PageRef[],
): Promise<void> {
  const fields: string[] = []
  for (const page of pages) {
    fields.push(titleField(page.spaceKey, page.title), page.url)
    if (page.author) fields.push(`u:${page.author.id}`, page.author.name)
  }
  const key = catalogKey(sourceId)
  const tx = redis.multi().del(key)
  // In slices: one HSET with a hundred thousand arguments would block Redis for too long.
  for (let i = 0; i < fields.length; i += 2_000) tx.hset(key, ...fields.slice(i, i + 2_000))
  await tx.exec()
}

export async function dropCatalog(redis: Redis, sourceId: string): Promise<void> {
  await redis.del(catalogKey(sourceId))
}

export type Resolvers = {
  resolvePage(target: PageTarget, ownSpace: string): string | undefined
  resolveUser(target: UserTarget): { displayName: string } | undefined
}

export async function loadCatalog(redis: Redis, sourceId: string): Promise<Resolvers> {
  const all = await redis.hgetall(catalogKey(sourceId))
  return {
    resolvePage: (target, ownSpace) => all[titleField(target.spaceKey ?? ownSpace, target.title)],
    resolveUser: (target) => {
      for (const id of [target.accountId, target.userKey, target.username]) {
        const name = id === undefined ? undefined : all[`u:${id}`]
        if (name !== undefined) return { displayName: name }
      }
      return undefined
    },
  }
}
