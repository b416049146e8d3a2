import { ConfluenceError } from './errors.ts'
import type { ConfluenceHttp } from './http.ts'
import type { V1Content } from './v1.ts'

// Offset paging (DC v1 `content` and `content/search`) read as a snapshot that survives pages
// added or removed during the walk. Offsets shift under a walk: a page removed before the current
// offset moves every later page one place forward, so the next request starts one page late and
// skips a live page (which a sync would then delete from the index as gone); a page added makes
// one come twice. So:
// - consecutive requests overlap by a tenth of a page, and each must start with a page already
//   seen; one that does not means pages before it were removed: step back until one does, so no
//   live page is skipped (the order is the server's own, stable between requests);
// - a pass that saw pages removed (a gap, a page missing from the overlap, or the overlap moved
//   forward) may hold a page that is gone now: the listing runs again, and the last pass stands.
// Requests go by `start` on the first URL (DC's `next` links only change `start`, reference §3.2).

/** Passes at most: a space that keeps changing is listed as the last pass saw it. */
const MAX_PASSES = 3
/** Steps back at most in one pass before giving up on a listing that keeps moving. */
export const MAX_STEPS_BACK = 20

type V1Page = { results: V1Content[]; limit?: number; _links?: { next?: string } }

/** Every item of an offset-paged v1 list, each once, none skipped by a shift (see above). */
export async function listByOffsets(
  http: ConfluenceHttp,
  first: string,
  signal?: AbortSignal,
): Promise<V1Content[]> {
  let last = await walk(http, first, signal)
  for (let pass = 2; last.removed && pass <= MAX_PASSES; pass++) {
    last = await walk(http, first, signal)
  }
  return last.items
}

async function walk(
  http: ConfluenceHttp,
  first: string,
  signal: AbortSignal | undefined,
): Promise<{ items: V1Content[]; removed: boolean }> {
  const url = new URL(first)
  const items: V1Content[] = []
  /** Ids in the order first seen, and each one's place in it. */
  const order: string[] = []
  const place = new Map<string, number>()
  let removed = false
  let stepsBack = 0
  let start = 0
  for (;;) {
    url.searchParams.set('start', String(start))
    const page = await http.getJson<V1Page>(url.href, signal)
    const { results } = page
    const ids = results.map((item) => String(item.id))
    // The limit the server applied (it clamps silently, and echoes it); a page of one cannot
    // overlap, nor can a page whose limit is not echoed (NaN): then offsets are followed as given.
    const limit = Number(page.limit)
    const overlap = limit > 1 ? Math.max(1, Math.floor(limit / 10)) : 0
    if (start > 0 && overlap > 0) {
      // An empty page (pages removed at the end) has no head either.
      const head = place.get(ids[0] as string)
      if (head === undefined) {
        removed = true
        if (++stepsBack > MAX_STEPS_BACK) {
          throw new ConfluenceError(
            'unavailable',
            `The page listing at ${http.host} kept shifting while it was read (pages added or removed all along): the sync runs again later`,
          )
        }
        start = Math.max(0, start - Math.max(1, limit - overlap))
        continue
      }
      const here = new Set(ids)
      if (head > order.length - overlap || order.slice(head).some((id) => !here.has(id))) {
        removed = true
      }
    }
    results.forEach((item, i) => {
      const id = ids[i] as string
      if (place.has(id)) return
      place.set(id, order.length)
      order.push(id)
      items.push(item)
    })
    if (results.length === 0 || !page._links?.next) return { items, removed }
    start += Math.max(1, results.length - overlap)
  }
}
