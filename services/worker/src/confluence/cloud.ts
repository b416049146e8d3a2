import { fetchBodiesInBulk } from './bodies.ts'
import { cqlString, idsCql, inSpaces, isNarrowed, scopeCql } from './cql.ts'
import { ConfluenceError } from './errors.ts'
import { contentIds } from './gone.ts'
import { type ConfluenceHttp, mapLimit } from './http.ts'
import type { ConfluenceSource, PageBody, PageRef, SourceSpec } from './types.ts'
import { v2Link } from './urls.ts'
import { uniqueById, V1_REF_EXPAND, type V1Content, v1Ref, walkV1 } from './v1.ts'

// Confluence Cloud: content through REST v2 (v1 content routes are being removed, reference §1.1),
// CQL through v1 `content/search`, which has no v2 equivalent. Listing never asks for bodies (they
// can be hundreds of kB each); bodies come 250 ids to a request.

/** The v2 maximum for `limit`, and for ids in one `GET /pages?id=…`. */
const V2_LIMIT = 250
/** CQL search page size; Cloud clamps it silently if it wants fewer. */
const SEARCH_LIMIT = 200

type V2Page = {
  id: string
  status?: string
  spaceId?: string
  title: string
  parentId?: string | null
  version: { number: number; createdAt?: string }
  body?: { storage?: { value: string } }
}
type V2List<T> = { results: T[]; _links?: { next?: string } }
type V2Space = { id: string; key: string; name: string }

export function createCloudSource(spec: SourceSpec, http: ConfluenceHttp): ConfluenceSource {
  const { base } = http
  const narrowed = isNarrowed(spec)
  /** key → v2 space id and name, for the keys the source names. */
  let spaces: Promise<Map<string, V2Space>> | undefined
  /** Space names met in CQL results (a source that names no space leaves them to its cql). */
  const seenNames = new Map<string, string>()

  const pageUrl = (id: string, spaceKey: string) =>
    `${base}/spaces/${encodeURIComponent(spaceKey)}/pages/${id}`

  async function* walkV2<T>(first: string, signal?: AbortSignal): AsyncGenerator<T> {
    let url: string | undefined = first
    while (url !== undefined) {
      const page: V2List<T> = await http.getJson<V2List<T>>(url, signal)
      yield* page.results
      const next = page._links?.next
      url = next ? v2Link(base, next) : undefined
    }
  }

  async function loadSpaces(signal?: AbortSignal): Promise<Map<string, V2Space>> {
    const found = new Map<string, V2Space>()
    for (let i = 0; i < spec.spaces.length; i += V2_LIMIT) {
      const keys = spec.spaces
        .slice(i, i + V2_LIMIT)
        .map(encodeURIComponent)
        .join(',')
      const first = `${base}/api/v2/spaces?keys=${keys}&limit=${V2_LIMIT}`
      try {
        for await (const space of walkV2<V2Space>(first, signal)) found.set(space.key, space)
      } catch (err) {
        if (!(err instanceof ConfluenceError && err.code === 'not_found')) throw err
        // No v2 at all: the base is missing /wiki, or this is not Confluence Cloud.
        throw new ConfluenceError(
          'not_found',
          `Confluence at ${http.host} has no REST v2 under ${base}: check the source's base_url (Cloud: https://<site>.atlassian.net/wiki) and its kind (Server/Data Center is 'datacenter')`,
          { status: 404, fatal: true, cause: err },
        )
      }
    }
    // An empty answer means missing or hidden (reference §3.1): a space deleted, or its user's
    // access withdrawn, is reported as gone (goneSpaces) while the others sync on. Only when
    // none is left is there nothing to sync: that is the source's settings (or its user) to fix.
    if (found.size === 0 && spec.spaces.length > 0) {
      throw new ConfluenceError(
        'not_found',
        `Confluence at ${http.host} has no space ${spec.spaces.join(', ')}, or the source's user cannot see it: check the source's spaces (keys are case-sensitive) and that user's permissions`,
        { fatal: true },
      )
    }
    return found
  }

  /** The source's scope without its gone spaces: what is listed, and what stays in scope. */
  async function presentScope(signal?: AbortSignal): Promise<SourceSpec> {
    const bySpace = await resolveSpaces(signal)
    return { ...spec, spaces: spec.spaces.filter((key) => bySpace.has(key)) }
  }

  function resolveSpaces(signal?: AbortSignal): Promise<Map<string, V2Space>> {
    spaces ??= loadSpaces(signal).catch((err: unknown) => {
      spaces = undefined
      throw err
    })
    return spaces
  }

  function v2Ref(item: V2Page, spaceKey: string): PageRef {
    const ref: PageRef = {
      id: item.id,
      spaceKey,
      title: item.title,
      version: String(item.version.number),
      labels: [],
      url: pageUrl(item.id, spaceKey),
    }
    if (item.parentId) ref.parentId = item.parentId
    if (item.version.createdAt !== undefined) ref.updatedAt = item.version.createdAt
    return ref
  }

  function search(cql: string, expand: string): string {
    return `${base}/rest/api/content/search?cql=${encodeURIComponent(cql)}&expand=${expand}&limit=${SEARCH_LIMIT}`
  }

  /** The pages of a CQL listing, those of other spaces left out (see inSpaces). */
  async function* refs(
    scope: SourceSpec,
    items: AsyncIterable<V1Content>,
  ): AsyncGenerator<PageRef> {
    for await (const item of items) {
      if (!inSpaces(scope, item)) continue
      const ref = v1Ref(item, pageUrl)
      if (item.space?.name !== undefined) seenNames.set(ref.spaceKey, item.space.name)
      yield ref
    }
  }

  async function* listPages(signal?: AbortSignal): AsyncGenerator<PageRef> {
    const scope = await presentScope(signal)
    const bySpace = await resolveSpaces(signal)
    if (narrowed) {
      yield* uniqueById(refs(scope, walkV1(http, search(scopeCql(scope), V1_REF_EXPAND), signal)))
      return
    }
    async function* all(): AsyncGenerator<PageRef> {
      for (const key of scope.spaces) {
        const space = bySpace.get(key) as V2Space
        // v2 lists no labels, and a label change makes no new version: the space's labels come
        // from one CQL walk (200 pages a request); a page the search index lacks asks alone.
        const labels = await spaceLabels(key, signal)
        // status=current: the v2 default also lists archived pages.
        const first = `${base}/api/v2/spaces/${space.id}/pages?status=current&limit=${V2_LIMIT}`
        for await (const item of walkV2<V2Page>(first, signal)) {
          const ref = v2Ref(item, key)
          ref.labels = labels.get(ref.id) ?? (await pageLabels(ref.id, signal))
          yield ref
        }
      }
    }
    // Cursor pages have been seen to overlap (a page at the end of one and the start of the
    // next): a page listed twice would be fetched, converted and written twice in one batch.
    yield* uniqueById(all())
  }

  /**
   * Which of these indexed pages are really gone from the scope. A whole-space source asks v2,
   * which reads the database, 250 ids a request: an id it leaves out, or a page that is no longer
   * current or now lives in another space, is gone. A narrowed source is listed through CQL, so
   * the same CQL with `id in (…)` says which are still in scope (a page of another space is not).
   */
  async function confirmGone(candidates: readonly string[], signal?: AbortSignal) {
    // A gone space is out of scope: its pages are gone with it (under the sync's deletion guard).
    const scope = await presentScope(signal)
    const bySpace = await resolveSpaces(signal)
    const { asked, gone } = contentIds(candidates)
    const live = new Set<string>()
    for (let i = 0; i < asked.length; i += V2_LIMIT) {
      const ids = asked.slice(i, i + V2_LIMIT)
      if (narrowed) {
        const cql = `${scopeCql(scope)} AND id in (${ids.join(',')})`
        for await (const item of walkV1(http, search(cql, 'space'), signal)) {
          if (inSpaces(scope, item)) live.add(String(item.id))
        }
        continue
      }
      const spaceIds = new Set([...bySpace.values()].map((space) => space.id))
      const first = `${base}/api/v2/pages?id=${ids.join(',')}&status=current&limit=${V2_LIMIT}`
      for await (const item of walkV2<V2Page>(first, signal)) {
        if (item.status === 'current' && spaceIds.has(item.spaceId as string)) live.add(item.id)
      }
    }
    return [...gone, ...asked.filter((id) => !live.has(id))]
  }

  /** Page id → labels, for the pages of a space that the search index holds. */
  async function spaceLabels(key: string, signal?: AbortSignal): Promise<Map<string, string[]>> {
    const labels = new Map<string, string[]>()
    const cql = `type = page AND space = ${cqlString(key)}`
    for await (const item of walkV1(http, search(cql, 'metadata.labels'), signal)) {
      labels.set(String(item.id), v1Ref(item, pageUrl).labels)
    }
    return labels
  }

  /** One page's labels through v2; none for a page gone since it was listed. */
  async function pageLabels(id: string, signal?: AbortSignal): Promise<string[]> {
    const first = `${base}/api/v2/pages/${id}/labels?limit=${V2_LIMIT}`
    const names: string[] = []
    try {
      for await (const label of walkV2<{ name: string }>(first, signal)) names.push(label.name)
    } catch (err) {
      // Gone since it was listed (or its body read): the next sync drops the page anyway.
      if (!(err instanceof ConfluenceError && err.code === 'not_found')) throw err
    }
    return names
  }

  function withBody(ref: PageRef, item: V2Page): PageBody {
    // The answer is newer than the listing: its title, version and parent win.
    return {
      ...v2Ref(item, ref.spaceKey),
      labels: ref.labels,
      body: item.body?.storage?.value ?? '',
      format: 'storage',
    }
  }

  /**
   * Labels for pages listed through v2 (which carries none): one CQL request per 250 pages rather
   * than one request per page. A page too new for the search index is asked for alone.
   */
  async function addLabels(bodies: PageBody[], signal?: AbortSignal): Promise<void> {
    const labels = new Map<string, string[]>()
    for (let i = 0; i < bodies.length; i += V2_LIMIT) {
      const cql = idsCql(bodies.slice(i, i + V2_LIMIT).map((body) => body.id))
      for await (const item of walkV1(http, search(cql, 'metadata.labels'), signal)) {
        labels.set(String(item.id), v1Ref(item, pageUrl).labels)
      }
    }
    await mapLimit(bodies, 4, async (body) => {
      body.labels = labels.get(body.id) ?? (await pageLabels(body.id, signal))
    })
  }

  return {
    kind: 'cloud',
    listPages,
    confirmGone,
    async goneSpaces() {
      const bySpace = await resolveSpaces()
      return spec.spaces.filter((key) => !bySpace.has(key))
    },
    async spaceNames() {
      const own = [...(await resolveSpaces()).values()].map((space): [string, string] => [
        space.key,
        space.name,
      ])
      // The names of the source's own spaces win over names met in search results.
      return new Map([...seenNames, ...own])
    },
    async fetchBodies(refs, signal) {
      const results = await fetchBodiesInBulk(
        refs,
        {
          chunkSize: V2_LIMIT,
          async bulk(chunk, signal) {
            const byId = new Map(chunk.map((ref) => [ref.id, ref]))
            const ids = chunk.map((ref) => encodeURIComponent(ref.id)).join(',')
            const first = `${base}/api/v2/pages?id=${ids}&body-format=storage&limit=${V2_LIMIT}`
            const found = new Map<string, PageBody>()
            for await (const item of walkV2<V2Page>(first, signal)) {
              const ref = byId.get(item.id)
              if (ref !== undefined) found.set(item.id, withBody(ref, item))
            }
            return found
          },
          async single(ref, signal) {
            const url = `${base}/api/v2/pages/${encodeURIComponent(ref.id)}?body-format=storage`
            return withBody(ref, await http.getJson<V2Page>(url, signal))
          },
          // v2 reads the database, not the search index: an id it leaves out is gone or hidden.
          recheckMissing: false,
        },
        signal,
      )
      // A narrowed listing came through CQL and already carries each page's labels.
      if (!narrowed) {
        const bodies = results.filter((result): result is PageBody => 'body' in result)
        await addLabels(bodies, signal)
      }
      return results
    },
    close: () => http.close(),
  }
}
