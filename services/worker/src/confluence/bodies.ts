import { ConfluenceError } from './errors.ts'
import { mapLimit } from './http.ts'
import type { PageBody, PageFailure, PageRef } from './types.ts'

// Bodies come in bulk (one request per chunk of ids); a page that cannot be read is isolated by
// fetching it alone, so one broken or vanished page is recorded and skipped, never its batch.
// Errors about the source as a whole (credentials, rate limit, outage) are thrown instead: the
// pages are fine, the job should fail and run again later.

/** One page in flight at a time per lane; the limiter sets the pace, this only bounds memory. */
const SINGLE_PARALLELISM = 4

export const MISSING = 'not found or no permission (deleted or restricted since it was listed)'

export type BodyPlan = {
  chunkSize: number
  /** Bodies of these ids keyed by id; ids the server did not return are simply absent. */
  bulk(refs: readonly PageRef[], signal?: AbortSignal): Promise<Map<string, PageBody>>
  /** One page's body; throws ConfluenceError 'not_found' when it is gone or hidden. */
  single(ref: PageRef, signal?: AbortSignal): Promise<PageBody>
  /** true: an id a bulk answer left out is asked for alone (a search index may lag behind). */
  recheckMissing: boolean
}

/** Errors that belong to one page (or one request's ids) rather than to the source. */
function pageLevel(err: unknown): err is ConfluenceError {
  return (
    err instanceof ConfluenceError &&
    (err.code === 'not_found' ||
      err.code === 'bad_request' ||
      (err.code === 'unavailable' && err.status === 500))
  )
}

function failure(id: string, err: ConfluenceError): PageFailure {
  if (err.code === 'not_found') return { id, message: MISSING, status: 404 }
  const out: PageFailure = { id, message: err.message }
  if (err.status !== undefined) out.status = err.status
  return out
}

async function alone(
  ref: PageRef,
  plan: BodyPlan,
  signal: AbortSignal | undefined,
): Promise<PageBody | PageFailure> {
  try {
    return await plan.single(ref, signal)
  } catch (err) {
    if (pageLevel(err)) return failure(ref.id, err)
    throw err
  }
}

/** Each id once, at its first place: a batch never holds one page twice (its rows would clash). */
export function uniqueRefs<T extends { id: string }>(refs: readonly T[]): T[] {
  const byId = new Map<string, T>()
  for (const ref of refs) if (!byId.has(ref.id)) byId.set(ref.id, ref)
  return [...byId.values()]
}

export async function fetchBodiesInBulk(
  all: readonly PageRef[],
  plan: BodyPlan,
  signal?: AbortSignal,
): Promise<Array<PageBody | PageFailure>> {
  const refs = uniqueRefs(all)
  const out: Array<PageBody | PageFailure> = []
  for (let start = 0; start < refs.length; start += plan.chunkSize) {
    const chunk = refs.slice(start, start + plan.chunkSize)
    let found: Map<string, PageBody> | undefined
    try {
      found = await plan.bulk(chunk, signal)
    } catch (err) {
      if (!pageLevel(err)) throw err
    }
    const results = await mapLimit(chunk, SINGLE_PARALLELISM, async (ref) => {
      const body = found?.get(ref.id)
      if (body !== undefined) return body
      if (found === undefined || plan.recheckMissing) return alone(ref, plan, signal)
      return { id: ref.id, message: MISSING, status: 404 }
    })
    out.push(...results)
  }
  return out
}
