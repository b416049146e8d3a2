import { ConfluenceError } from './errors.ts'
import type { SourceSpec } from './types.ts'

// CQL for a narrowed source scope (v1 `content/search`, on Cloud and DC alike). Values always go
// in as quoted literals, so a space key or label can never change the query's structure; the
// source's own `cql` is the one piece taken as written, wrapped in parentheses.

export type CqlScope = Pick<SourceSpec, 'spaces' | 'cql' | 'root_page_id' | 'labels'>

/** A CQL string literal: double quotes, with `\` and `"` escaped by a backslash. */
export function cqlString(value: string): string {
  return `"${value.replace(/[\\"]/g, (ch) => `\\${ch}`)}"`
}

/** A content id for CQL: digits only (ids are int64), refused otherwise. */
export function cqlId(id: string, what = 'page id'): string {
  if (!/^\d{1,19}$/.test(id)) {
    throw new ConfluenceError(
      'config',
      `The ${what} "${id}" is not a Confluence content id (digits)`,
    )
  }
  return id
}

function list(values: readonly string[]): string {
  return `(${values.map(cqlString).join(',')})`
}

/** True when the source narrows its spaces by cql, a root page or labels (listing goes by CQL). */
export function isNarrowed(scope: CqlScope): boolean {
  return (
    (scope.cql ?? '').trim() !== '' ||
    (scope.root_page_id ?? '') !== '' ||
    (scope.labels?.include?.length ?? 0) > 0 ||
    (scope.labels?.exclude?.length ?? 0) > 0
  )
}

/**
 * Whether a CQL result lies in the scope's spaces. The source's cql is checked when it is
 * registered (its parentheses balance, so `space = … AND (cql)` keeps to the spaces), but a source
 * stored before that check, or a server that reads CQL otherwise, could still answer with pages
 * of other spaces: the walk leaves them out. A result without its space cannot be shown in scope.
 * A scope that names no space leaves the choice of spaces to its cql: every result is in it.
 */
export function inSpaces(
  scope: Pick<CqlScope, 'spaces'>,
  item: { space?: { key: string } },
): boolean {
  if (scope.spaces.length === 0) return true
  return item.space !== undefined && scope.spaces.includes(item.space.key)
}

/**
 * `type = page AND space in ("A","B") AND (user cql) AND (id = 1 OR ancestor = 1)
 * AND label in ("x") AND label not in ("y")`. The root page itself is part of its tree.
 */
export function scopeCql(scope: CqlScope): string {
  const parts = ['type = page']
  if (scope.spaces.length === 1) parts.push(`space = ${cqlString(scope.spaces[0] as string)}`)
  else if (scope.spaces.length > 1) parts.push(`space in ${list(scope.spaces)}`)
  const user = (scope.cql ?? '').trim()
  if (user !== '') parts.push(`(${user})`)
  if (scope.root_page_id) {
    const root = cqlId(scope.root_page_id, 'root_page_id')
    parts.push(`(id = ${root} OR ancestor = ${root})`)
  }
  const include = scope.labels?.include ?? []
  const exclude = scope.labels?.exclude ?? []
  if (include.length > 0) parts.push(`label in ${list(include)}`)
  if (exclude.length > 0) parts.push(`label not in ${list(exclude)}`)
  return parts.join(' AND ')
}

/** `type = page AND id in (1,2,3)`. */
export function idsCql(ids: readonly string[]): string {
  return `type = page AND id in (${ids.map((id) => cqlId(id)).join(',')})`
}
