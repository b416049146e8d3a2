import type { ConfluenceHttp } from './http.ts'
import type { PageRef } from './types.ts'
import { v1Link } from './urls.ts'

// REST v1 content as both clients read it: DC for everything, Cloud for CQL search only.

export type V1User = {
  accountId?: string
  userKey?: string
  username?: string
  displayName?: string
  publicName?: string
}

export type V1Content = {
  id: string | number
  /** `current` for a published page (a GET by id can also answer `trashed`, `draft`…). */
  status?: string
  title: string
  space?: { key: string; name?: string }
  version?: { number: number; when?: string; by?: V1User }
  ancestors?: Array<{ id: string | number }>
  metadata?: { labels?: { results?: Array<{ name: string }> } }
  body?: { storage?: { value: string } }
}

type V1List = { results: V1Content[]; _links?: { next?: string } }

/** Content fields a PageRef needs (and the space, for its name). */
export const V1_REF_EXPAND = 'version,ancestors,metadata.labels,space'

/**
 * Walks a v1 list (`content`, `content/search`) by `_links.next`, which is relative to the base
 * (offsets on DC, a cursor on Cloud search; either way followed as given). Stops on a missing
 * `next` and on an empty `results`, since limits are clamped silently (reference §3.2).
 */
export async function* walkV1(
  http: ConfluenceHttp,
  first: string,
  signal?: AbortSignal,
): AsyncGenerator<V1Content> {
  let url: string | undefined = first
  while (url !== undefined) {
    const page: V1List = await http.getJson<V1List>(url, signal)
    const { results } = page
    yield* results
    const next = page._links?.next
    // The server's own `_links.base` is not used: behind a proxy it names the server's configured
    // address, while the links are relative to the base the source reached it through.
    url = results.length > 0 && next ? v1Link(http.base, next) : undefined
  }
}

/** The last editor, as DC (`userKey`, `username`) or Cloud (`accountId`) names them. */
export function v1Author(by: V1User | undefined): PageRef['author'] {
  const id = by?.userKey ?? by?.accountId ?? by?.username
  if (id === undefined) return undefined
  return { id, name: by?.displayName ?? by?.publicName ?? id }
}

/** A PageRef from v1 content expanded with V1_REF_EXPAND. */
export function v1Ref(item: V1Content, url: (id: string, spaceKey: string) => string): PageRef {
  const id = String(item.id)
  const spaceKey = item.space?.key ?? ''
  const ref: PageRef = {
    id,
    spaceKey,
    title: item.title,
    version: item.version ? String(item.version.number) : '',
    labels: (item.metadata?.labels?.results ?? []).map((label) => label.name),
    url: url(id, spaceKey),
  }
  const parent = item.ancestors?.at(-1)
  if (parent !== undefined) ref.parentId = String(parent.id)
  if (item.version?.when !== undefined) ref.updatedAt = item.version.when
  const author = v1Author(item.version?.by)
  if (author !== undefined) ref.author = author
  return ref
}

/**
 * Each id once: offsets shift when pages are added or removed during a walk (DC), and a search
 * walk is not promised to be stable either, so a page can come twice.
 */
export async function* uniqueById<T extends { id: string }>(
  items: AsyncIterable<T>,
): AsyncGenerator<T> {
  const seen = new Set<string>()
  for await (const item of items) {
    if (seen.has(item.id)) continue
    seen.add(item.id)
    yield item
  }
}
