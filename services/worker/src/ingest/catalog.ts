import { QUEUE_PREFIX } from '@confluence-bot/shared'
import type { Redis } from 'ioredis'
import type { PageRef } from '../confluence/types.ts'
import type { PageTarget, UserTarget } from '../convert/index.ts'

// What the crawl has seen of a source, for the page batches that convert its bodies on any
// worker: page title (in its space) → URL for `ac:link`s, and user id → display name for
// mentions; and, for the sync's finish step, the ids of the pages listed. Rewritten whole on each
// crawl, so a deleted page stops resolving.
//
// Beside it, each converted page's lookups: the catalog fields its conversion read and what they
// held (a URL, a name, or nothing). A page whose text is unchanged is converted again when one
// of them changed: the page it links to was created, renamed, moved or deleted since.

const catalogKey = (sourceId: string) => `${QUEUE_PREFIX}:catalog:${sourceId}`
const listedKey = (sourceId: string) => `${QUEUE_PREFIX}:catalog-ids:${sourceId}`
const lookupsKey = (sourceId: string) => `${QUEUE_PREFIX}:catalog-lookups:${sourceId}`

/** Members per SADD/SMISMEMBER: one command with a hundred thousand would block Redis too long. */
const SLICE = 2_000

const titleField = (spaceKey: string, title: string) => `t:${spaceKey}:${title.normalize('NFC')}`

const userField = (id: string) => `u:${id}`

/** A source's catalog: field → value, as the crawl builds it from the listing. */
export type Catalog = ReadonlyMap<string, string>

export function catalogOf(pages: readonly PageRef[]): Catalog {
  const fields = new Map<string, string>()
  for (const page of pages) {
    fields.set(titleField(page.spaceKey, page.title), page.url)
    if (page.author) fields.set(userField(page.author.id), page.author.name)
  }
  return fields
}

export async function saveCatalog(
  redis: Redis,
  sourceId: string,
  pages: readonly PageRef[],
  catalog: Catalog = catalogOf(pages),
): Promise<void> {
  const fields = [...catalog].flat()
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
  await redis.del(catalogKey(sourceId), listedKey(sourceId), lookupsKey(sourceId))
}

export type Resolvers = {
  resolvePage(target: PageTarget, ownSpace: string): string | undefined
  resolveUser(target: UserTarget): { displayName: string } | undefined
}

/** The catalog fields one page's conversion read, each with what it held (null: nothing). */
export type Lookups = Record<string, string | null>

export async function loadCatalog(redis: Redis, sourceId: string): Promise<Catalog> {
  return new Map(Object.entries(await redis.hgetall(catalogKey(sourceId))))
}

/** Resolvers over `catalog` that note in `lookups` each field they read and what it held. */
export function resolversOf(catalog: Catalog, lookups: Lookups = {}): Resolvers {
  const read = (field: string) => {
    const value = catalog.get(field)
    lookups[field] = value ?? null
    return value
  }
  return {
    resolvePage: (target, ownSpace) => read(titleField(target.spaceKey ?? ownSpace, target.title)),
    resolveUser: (target) => {
      for (const id of [target.accountId, target.userKey, target.username]) {
        const name = id === undefined ? undefined : read(userField(id))
        if (name !== undefined) return { displayName: name }
      }
      return undefined
    },
  }
}

/** Records what the conversion of each page read from the catalog (none: nothing kept). */
export async function saveLookups(
  redis: Redis,
  sourceId: string,
  pages: ReadonlyMap<string, Lookups>,
): Promise<void> {
  const key = lookupsKey(sourceId)
  const set: string[] = []
  const none: string[] = []
  for (const [id, lookups] of pages) {
    if (Object.keys(lookups).length === 0) none.push(id)
    else set.push(id, JSON.stringify(lookups))
  }
  const tx = redis.multi()
  if (set.length > 0) tx.hset(key, ...set)
  if (none.length > 0) tx.hdel(key, ...none)
  await tx.exec()
}

/** Forgets the lookups of pages deleted from the index. */
export async function dropLookups(redis: Redis, sourceId: string, ids: readonly string[]) {
  for (let i = 0; i < ids.length; i += SLICE) {
    await redis.hdel(lookupsKey(sourceId), ...ids.slice(i, i + SLICE))
  }
}

/**
 * Those of `ids` whose conversion read a catalog field that now holds something else: a link
 * to a page created, renamed, moved or deleted since, a user whose name changed. A page with no
 * lookups recorded read nothing (or was converted before lookups were kept).
 */
export async function relinkedPages(
  redis: Redis,
  sourceId: string,
  ids: readonly string[],
  catalog: Catalog,
): Promise<Set<string>> {
  const relinked = new Set<string>()
  for (let i = 0; i < ids.length; i += SLICE) {
    const slice = ids.slice(i, i + SLICE)
    const found = await redis.hmget(lookupsKey(sourceId), ...slice)
    slice.forEach((id, j) => {
      const recorded = found[j]
      if (!recorded) return
      const lookups = JSON.parse(recorded) as Lookups
      for (const [field, value] of Object.entries(lookups)) {
        if ((catalog.get(field) ?? null) !== value) {
          relinked.add(id)
          return
        }
      }
    })
  }
  return relinked
}
