import { QUEUE_PREFIX } from '@confluence-bot/shared'
import type { Redis } from 'ioredis'
import type { PageRef } from '../confluence/types.ts'
import type { PageTarget, UserTarget } from '../convert/index.ts'

// What the crawl has seen of a source, for the page batches that convert its bodies on any
// worker: page title (in its space) → URL for `ac:link`s, and user id → display name for
// mentions; and, for the sync's finish step, the ids of the pages listed. Rewritten whole on each
// crawl, so a deleted page stops resolving.

const catalogKey = (sourceId: string) => `${QUEUE_PREFIX}:catalog:${sourceId}`
const listedKey = (sourceId: string) => `${QUEUE_PREFIX}:catalog-ids:${sourceId}`

/** Members per SADD/SMISMEMBER: one command with a hundred thousand would block Redis too long. */
const SLICE = 2_000

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
  const ids = pages.map((p) => p.id)
  const tx = redis.multi().del(key, listedKey(sourceId))
  for (let i = 0; i < fields.length; i += SLICE) tx.hset(key, ...fields.slice(i, i + SLICE))
  for (let i = 0; i < ids.length; i += SLICE)
    tx.sadd(listedKey(sourceId), ...ids.slice(i, i + SLICE))
  await tx.exec()
}

/** Those of `ids` that the source's latest crawl listed (a page there exists now). */
export async function listedPages(
  redis: Redis,
  sourceId: string,
  ids: readonly string[],
): Promise<Set<string>> {
  const listed = new Set<string>()
  for (let i = 0; i < ids.length; i += SLICE) {
    const slice = ids.slice(i, i + SLICE)
    const found = await redis.smismember(listedKey(sourceId), ...slice)
    slice.forEach((id, j) => {
      if (found[j] === 1) listed.add(id)
    })
  }
  return listed
}

export async function dropCatalog(redis: Redis, sourceId: string): Promise<void> {
  await redis.del(catalogKey(sourceId), listedKey(sourceId))
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
