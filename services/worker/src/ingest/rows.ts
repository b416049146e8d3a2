import { type ChunkRow, rowChunkId } from '@confluence-bot/shared'
import { chunkMarkdown } from '../chunk/index.ts'
import type { PageBody, SourceKind } from '../confluence/types.ts'
import { convertStorage } from '../convert/index.ts'
import type { Resolvers } from './catalog.ts'

// One page body → the rows the index keeps for it, one per chunk (vectors come later). A page
// whose body yields no text still gets one row (its title), so the index always knows the
// page and its version, and an unchanged empty page costs nothing on the next sync.

export type PageContext = {
  sourceId: string
  kind: SourceKind
  baseUrl: string
  /** Space name (or key) heading the breadcrumb. */
  spaceName: string
  /** Ancestor titles, root first. */
  ancestors: readonly string[]
  resolvers: Resolvers
}

export type PageRows = { rows: Array<Omit<ChunkRow, 'vector' | 'embed_model'>>; warnings: string[] }

export function pageRows(page: PageBody, ctx: PageContext): PageRows {
  const anchorStyle = ctx.kind === 'cloud' ? 'cloud' : 'server'
  const { markdown, warnings } = convertStorage(page.body, {
    baseUrl: ctx.baseUrl || undefined,
    spaceKey: page.spaceKey,
    pageId: page.id,
    resolvePage: (target) => ctx.resolvers.resolvePage(target, page.spaceKey),
    resolveUser: ctx.resolvers.resolveUser,
    anchorStyle,
    pageTitle: page.title,
  })
  const chunks = chunkMarkdown(
    markdown,
    {
      pageId: page.id,
      title: page.title,
      url: page.url,
      space: ctx.spaceName,
      ancestors: [...ctx.ancestors],
    },
    { anchorStyle },
  )
  const base = {
    source_id: ctx.sourceId,
    space: page.spaceKey,
    page_id: page.id,
    version: page.version,
    title: page.title,
    updated_at: page.updatedAt ?? '',
    labels: [...page.labels],
  }
  if (chunks.length === 0) {
    const breadcrumb = pageTrail(ctx.spaceName, ctx.ancestors, page.title)
    return {
      rows: [
        {
          ...base,
          chunk_id: rowChunkId(ctx.sourceId, page.id, 0),
          chunk_pos: 0,
          breadcrumb,
          heading_path: '',
          url: page.url,
          text: page.title,
        },
      ],
      warnings,
    }
  }
  return {
    rows: chunks.map((chunk) => ({
      ...base,
      chunk_id: rowChunkId(ctx.sourceId, page.id, chunk.position),
      chunk_pos: chunk.position,
      breadcrumb: chunk.breadcrumbText,
      heading_path: chunk.headingPath.join(' › '),
      url: chunk.sectionUrl,
      text: chunk.text,
    })),
    warnings,
  }
}

/** What is embedded for a row: where it sits, then what it says. */
export const embedText = (row: { breadcrumb: string; text: string }) =>
  `${row.breadcrumb}\n\n${row.text}`

/**
 * The input the embedding model gets for rows of a table whose vectors are made with `prefix`
 * (its document prefix, '' for none): the prefix, then embedText.
 */
export const documentInput =
  (prefix: string) =>
  (row: { breadcrumb: string; text: string }): string =>
    `${prefix}${embedText(row)}`

/** The breadcrumb above a page's headings: space name › ancestor titles › page title. */
export const pageTrail = (spaceName: string, ancestors: readonly string[], title: string) =>
  [spaceName, ...ancestors, title].join(' › ')

/** A chunk's breadcrumb, as the chunker writes it: the page's trail, then its heading path. */
export const chunkBreadcrumb = (trail: string, headingPath: string) =>
  headingPath === '' ? trail : `${trail} › ${headingPath}`
