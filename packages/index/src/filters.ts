import { ChunkColumn, sqlString, sqlStringList } from '@confluence-bot/shared'
import type { SearchFilters } from './search.ts'

// Filters become one SQL predicate that LanceDB applies inside every leg of a search (a
// prefilter), so k allowed hits come back however many better ones the filter excludes. Every
// value reaches the SQL through sqlString: a crafted space key or label stays a literal.

/** A request the search cannot run as given (the api answers 400 with its message). */
export class SearchRequestError extends Error {
  override name = 'SearchRequestError'
  readonly statusCode = 400
}

/**
 * A list filter given as `[]` allows nothing: `spaces: []` is a key limited to no space, not
 * "any space". The search answers such a request without reading the index.
 */
export function matchesNothing(filters: SearchFilters): boolean {
  return [filters.spaces, filters.source_ids, filters.labels].some((list) => list?.length === 0)
}

/**
 * ISO 8601 (any offset, with or without time) as UTC with milliseconds; throws
 * SearchRequestError on anything else.
 */
export function normaliseTime(value: string): string {
  // Date.parse also reads forms like "May 1, 2024": only an ISO 8601 date (and time) is taken.
  const iso = /^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$/i
  const time = Date.parse(value)
  // A day the month does not have (2024-02-30) parses as a later one in some forms: refused.
  const [year, month, day] = value.slice(0, 10).split('-').map(Number) as [number, number, number]
  const real = new Date(Date.UTC(year, month - 1, day)).getUTCDate() === day
  if (!iso.test(value) || Number.isNaN(time) || !real) {
    throw new SearchRequestError(`updated_after must be an ISO 8601 time, not "${value}"`)
  }
  return new Date(time).toISOString()
}

/** The predicate for `filters`, or undefined when nothing is filtered. */
export function filterSql(filters: SearchFilters): string | undefined {
  const parts: string[] = []
  const { spaces, source_ids: sources, labels, updated_after: after } = filters
  if (spaces !== undefined) parts.push(`${ChunkColumn.space} IN ${sqlStringList(spaces)}`)
  if (sources !== undefined) parts.push(`${ChunkColumn.sourceId} IN ${sqlStringList(sources)}`)
  if (labels !== undefined) {
    parts.push(`array_has_any(${ChunkColumn.labels}, make_array${sqlStringList(labels)})`)
  }
  if (after !== undefined) {
    // updated_at is text as Confluence wrote it ("…Z" from Cloud, "…+09:00" from a Data Center
    // server, '' when unknown): compared as instants, not as strings. TRY_CAST makes an
    // unreadable one NULL (no match) instead of failing the query.
    const at = sqlString(normaliseTime(after))
    parts.push(`TRY_CAST(${ChunkColumn.updatedAt} AS TIMESTAMP) > TIMESTAMP ${at}`)
  }
  return parts.length === 0 ? undefined : parts.map((p) => `(${p})`).join(' AND ')
}
