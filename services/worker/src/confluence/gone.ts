import { asJobError } from './errors.ts'
import type { ConfluenceSource } from './types.ts'

// A page missing from a listing is only a candidate for deletion: a listing can miss a live page
// (offsets that shifted mid-walk, a flaky search). Before the index drops a page, its source
// confirms, cheaply and in bulk, that it is really gone from the source's scope.

/** Ids asked about in one request: well inside every list limit and URL length. */
export const GONE_CHUNK = 100

/** Candidates split into content ids to ask about and ids no Confluence page can have (gone). */
export function contentIds(candidates: readonly string[]): { asked: string[]; gone: string[] } {
  const asked: string[] = []
  const gone: string[] = []
  for (const id of candidates) (/^\d{1,19}$/.test(id) ? asked : gone).push(id)
  return { asked, gone }
}

/**
 * The candidates (indexed pages the latest listing left out) that `source` confirms are gone, in
 * their order, each once; then closes the source. A source error fails the caller: nothing is
 * deleted on a guess (a fatal one as BullMQ's UnrecoverableError, like the listing's).
 */
export async function confirmGone(
  source: ConfluenceSource,
  candidates: readonly string[],
  signal?: AbortSignal,
): Promise<string[]> {
  const unique = [...new Set(candidates)]
  const answer = unique.length === 0 ? Promise.resolve([]) : source.confirmGone(unique, signal)
  const gone = new Set(
    await answer
      .finally(() => source.close())
      .catch((err: unknown) => {
        throw asJobError(err)
      }),
  )
  return unique.filter((id) => gone.has(id))
}
