import { fetchBodiesInBulk } from './bodies.ts'
import { idsCql, inSpaces, isNarrowed, scopeCql } from './cql.ts'
import { ConfluenceError } from './errors.ts'
import { contentIds, GONE_CHUNK } from './gone.ts'
import { type ConfluenceHttp, mapLimit } from './http.ts'
import { listByOffsets } from './offsets.ts'
import type { ConfluenceSource, PageBody, PageRef, SourceSpec } from './types.ts'
import { uniqueById, V1_REF_EXPAND, type V1Content, v1Ref, walkV1 } from './v1.ts'

// Confluence Server / Data Center: REST v1 only, under the base URL exactly as configured (it
// carries the context path; `/wiki` is Cloud's and never added here, reference §1).

/** DC clamps `limit` to 200 with expansions other than the body, and to 50 with a body (§3.2). */
const LIST_LIMIT = 200
const BODY_LIMIT = 50
const BODY_EXPAND = `body.storage,${V1_REF_EXPAND}`

export function createDataCenterSource(spec: SourceSpec, http: ConfluenceHttp): ConfluenceSource {
  const { base } = http
  const narrowed = isNarrowed(spec)
  let spaces: Promise<Map<string, string>> | undefined
  const seenNames = new Map<string, string>()

  // Rename-proof, unlike `/display/KEY/Title` (reference §6).
  const pageUrl = (id: string) => `${base}/pages/viewpage.action?pageId=${id}`

  async function loadSpaces(signal?: AbortSignal): Promise<Map<string, string>> {
    const names = new Map<string, string>()
    let notFound: unknown
    for (const key of spec.spaces) {
      const url = `${base}/rest/api/space/${encodeURIComponent(key)}`
      try {
        names.set(key, (await http.getJson<{ name: string }>(url, signal)).name)
      } catch (err) {
        // Only a 404 (deleted, or no view permission: v1 answers both alike, reference §2) makes
        // a space gone; anything else (403, 5xx after the retries, a timeout) fails the sync.
        if (!(err instanceof ConfluenceError && err.code === 'not_found')) throw err
        notFound = err
      }
    }
    // A gone space is reported (goneSpaces) while the others sync on. Not one found: nothing to
    // sync, and more likely the source's settings (a base_url without its context path).
    if (names.size === 0 && spec.spaces.length > 0) {
      throw new ConfluenceError(
        'not_found',
        `Confluence at ${http.host} has no space ${spec.spaces.join(', ')}, or the source's user cannot see it: check the source's spaces (keys are case-sensitive), its base_url (with the context path, e.g. /confluence) and that user's permissions`,
        { status: 404, fatal: true, cause: notFound },
      )
    }
    return names
  }

  /** The source's scope without its gone spaces: what is listed, and what stays in scope. */
  async function presentScope(signal?: AbortSignal): Promise<SourceSpec> {
    const names = await resolveSpaces(signal)
    return { ...spec, spaces: spec.spaces.filter((key) => names.has(key)) }
  }

  // Also proves every key exists before a listing could come back empty for a typo (and have the
  // sync delete the space's pages).
  function resolveSpaces(signal?: AbortSignal): Promise<Map<string, string>> {
    spaces ??= loadSpaces(signal).catch((err: unknown) => {
      spaces = undefined
      throw err
    })
    return spaces
  }

  function search(cql: string, expand: string, limit: number): string {
    const fields = expand === '' ? '' : `&expand=${expand}`
    return `${base}/rest/api/content/search?cql=${encodeURIComponent(cql)}${fields}&limit=${limit}&start=0`
  }

  function ref(item: V1Content): PageRef {
    const out = v1Ref(item, pageUrl)
    if (item.space?.name !== undefined) seenNames.set(out.spaceKey, item.space.name)
    return out
  }

  function withBody(item: V1Content): PageBody {
    return { ...ref(item), body: item.body?.storage?.value ?? '', format: 'storage' }
  }

  async function* listPages(signal?: AbortSignal): AsyncGenerator<PageRef> {
    const scope = await presentScope(signal)
    const firsts = narrowed
      ? [search(scopeCql(scope), V1_REF_EXPAND, LIST_LIMIT)]
      : scope.spaces.map(
          (key) =>
            `${base}/rest/api/content?spaceKey=${encodeURIComponent(key)}&type=page&status=current&expand=${V1_REF_EXPAND}&limit=${LIST_LIMIT}&start=0`,
        )
    async function* all(): AsyncGenerator<PageRef> {
      // Offsets shift when pages come and go mid-walk: each listing is read as a snapshot.
      for (const first of firsts) {
        for (const item of await listByOffsets(http, first, signal)) {
          // A CQL listing may answer pages of other spaces: they are left out (see inSpaces).
          if (!narrowed || inSpaces(scope, item)) yield ref(item)
        }
      }
    }
    yield* uniqueById(all())
  }

  /**
   * Which of these indexed pages are really gone from the scope: CQL `id in (…)` with the scope's
   * own query finds those still in it, a page at a time. The search index can lag behind the
   * database, so for a whole-space source an id it leaves out is read alone: 404 (gone or
   * hidden) or a page now in another space is gone, anything else is not. A narrowed source is
   * listed through that same search, so its answer stands (but for pages of other spaces).
   */
  async function confirmGone(candidates: readonly string[], signal?: AbortSignal) {
    // A gone space is out of scope: its pages are gone with it (under the sync's deletion guard).
    const scope = await presentScope(signal)
    const { asked, gone } = contentIds(candidates)
    const live = new Set<string>()
    for (let i = 0; i < asked.length; i += GONE_CHUNK) {
      const ids = asked.slice(i, i + GONE_CHUNK)
      const cql = `${scopeCql(scope)} AND id in (${ids.join(',')})`
      // A narrowed scope's own cql could reach other spaces: their pages are not in scope.
      const expand = narrowed ? 'space' : ''
      for (const item of await listByOffsets(http, search(cql, expand, LIST_LIMIT), signal)) {
        if (!narrowed || inSpaces(scope, item)) live.add(String(item.id))
      }
    }
    const unsure = asked.filter((id) => !live.has(id))
    if (narrowed) return [...gone, ...unsure]
    const checked = await mapLimit(unsure, 4, async (id) => {
      const url = `${base}/rest/api/content/${id}?expand=space`
      try {
        const item = await http.getJson<V1Content>(url, signal)
        // Still readable in a space the lookup called gone: the lookup was wrong this time (the
        // source's spaces, not the present ones), and the page stays.
        const inScope = item.status === 'current' && spec.spaces.includes(item.space?.key ?? '')
        return inScope ? undefined : id
      } catch (err) {
        if (err instanceof ConfluenceError && err.code === 'not_found') return id
        throw err
      }
    })
    return [...gone, ...checked.filter((id): id is string => id !== undefined)]
  }

  return {
    kind: 'datacenter',
    listPages,
    confirmGone,
    async goneSpaces() {
      const names = await resolveSpaces()
      return spec.spaces.filter((key) => !names.has(key))
    },
    async spaceNames() {
      // The names of the source's own spaces win over names met in search results.
      return new Map([...seenNames, ...(await resolveSpaces())])
    },
    fetchBodies(refs, signal) {
      // CQL `id in (…)` brings 50 bodies a request where the per-page GET brings one. The search
      // index can lag behind a new page, so an id it leaves out is asked for alone (the per-page
      // GET reads the database and says 404 only for a page that is really gone or hidden).
      return fetchBodiesInBulk(
        refs,
        {
          chunkSize: BODY_LIMIT,
          async bulk(chunk, signal) {
            const cql = idsCql(chunk.map((page) => page.id))
            const found = new Map<string, PageBody>()
            for await (const item of walkV1(http, search(cql, BODY_EXPAND, BODY_LIMIT), signal)) {
              found.set(String(item.id), withBody(item))
            }
            return found
          },
          async single(page, signal) {
            const url = `${base}/rest/api/content/${encodeURIComponent(page.id)}?expand=${BODY_EXPAND}`
            return withBody(await http.getJson<V1Content>(url, signal))
          },
          recheckMissing: true,
        },
        signal,
      )
    },
    close: () => http.close(),
  }
}
