// What the sync pipeline needs from a Confluence source, whatever its kind: Cloud (REST v2, CQL
// through v1), Server/Data Center (REST v1) or an offline HTML space export zip. Every id is a
// string; `version` is the page's version number on REST and a content hash for an export, so
// "same version" always means "nothing to do".

// The source records themselves are shared with the api (packages/shared/src/sources).
export type {
  SourceAuth,
  SourceKind,
  SourceSpec,
  SourceTls,
} from '@confluence-bot/shared'

import type { SourceKind } from '@confluence-bot/shared'

export type PageRef = {
  id: string
  spaceKey: string
  title: string
  /** Version number as a string on REST; a content hash for an export. */
  version: string
  parentId?: string
  labels: string[]
  /** ISO time of the current version. */
  updatedAt?: string
  /** Web URL to cite: `${base}/spaces/KEY/pages/ID…` or `${base}/pages/viewpage.action?pageId=ID`. */
  url: string
  /** Last editor, when the listing says (DC/v1 `version.by`), for resolving user mentions. */
  author?: { id: string; name: string }
}

export type PageBody = PageRef & {
  /** Storage-format XHTML (REST) or the export's rendered `#main-content` HTML. */
  body: string
  format: 'storage' | 'view'
}

/** Why one page could not be read; recorded and skipped, never aborting the space. */
export type PageFailure = { id: string; message: string; status?: number }

export interface ConfluenceSource {
  readonly kind: SourceKind
  /**
   * Every page in scope (spaces, then narrowed by cql / root page / labels), without bodies, each
   * id once (listings can repeat a page: shifting offsets, overlapping cursor pages).
   */
  listPages(signal?: AbortSignal): AsyncIterable<PageRef>
  /**
   * Which of these page ids (indexed, but left out of the latest listing) are really gone from
   * the source's scope: deleted, trashed, restricted, moved out of its spaces or its narrowing.
   * Anything not confirmed gone stays indexed. Call it through gone.ts `confirmGone`.
   */
  confirmGone(ids: readonly string[], signal?: AbortSignal): Promise<string[]>
  /**
   * The source's space keys that Confluence no longer shows it (after listPages): deleted, or
   * hidden from the source's user. Confluence answers both alike (v2 leaves the key out, v1
   * says 404), so they are one case. The other spaces are listed as usual; the gone ones are out
   * of scope, so their indexed pages are confirmed gone.
   */
  goneSpaces(): Promise<string[]>
  /** Space key → space name, for breadcrumbs (after or during listPages). */
  spaceNames(): Promise<Map<string, string>>
  /**
   * Bodies of these pages, each id once (a repeated ref is read and answered once). A page that
   * cannot be read comes back as a PageFailure.
   */
  fetchBodies(
    refs: readonly PageRef[],
    signal?: AbortSignal,
  ): Promise<Array<PageBody | PageFailure>>
  close(): Promise<void>
}
