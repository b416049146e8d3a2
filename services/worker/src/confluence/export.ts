import { createHash } from 'node:crypto'
import { type ExportZip, openExportZip, readZipEntry } from '@confluence-bot/shared'
import type { Entry, ZipFile } from 'yauzl'
import { uniqueRefs } from './bodies.ts'
import { type ExportLinks, type IndexPage, indexTree, parsePage } from './export-html.ts'
import type { ConfluenceSource, PageBody, PageFailure, PageRef, SourceSpec } from './types.ts'

// A Confluence HTML space export zip as a ConfluenceSource (reference §8). The zip is read in
// place with yauzl: its directory once (names and offsets only), then one page file at a time,
// both when listing (the version is a hash of the page's title and body, so every page is read)
// and when fetching bodies; nothing is unpacked to disk and no body is kept. The files may sit at
// the zip's root or under one folder (`KEY/index.html`, what Confluence writes).

export class ExportError extends Error {
  override name = 'ExportError'
}

/** Where warnings go: a pino Logger, or anything with its `warn(obj, msg)`. */
export type ExportLog = { warn(obj: object, msg: string): void }

export type ExportSourceOptions = {
  log?: ExportLog
  /** A page file larger than this is a PageFailure, not a read. */
  maxPageBytes?: number
}

export type ExportSummary = { spaceKey: string; spaceName: string; pages: number }

export const DEFAULT_MAX_PAGE_BYTES = 32 * 1024 * 1024

/** Marks a page listed without being read (its file is unreadable): fetchBodies says why. */
export const UNREADABLE_VERSION = 'unreadable'

type Export = {
  zip: ZipFile
  spaceKey: string
  spaceName: string
  index: Map<string, IndexPage>
  /** Page id → its file's entry (metadata only), in the zip's order. */
  files: Map<string, Entry>
}

/** A Unix symbolic link stored as such (file type in the high 16 bits of its attributes). */
const isSymlink = (entry: Entry) => ((entry.externalFileAttributes >>> 16) & 0o170000) === 0o120000

const notAnExport = (path: string, why: string) =>
  new ExportError(`${path} is not a Confluence HTML space export: ${why}`)

/** Opens the zip, reads its header (shared with the api) and the space's page tree. */
async function openExport(path: string): Promise<Export> {
  let ex: ExportZip
  try {
    ex = await openExportZip(path)
  } catch (err) {
    // openExportZip's errors (ExportZipError) say why; this adds which file.
    throw notAnExport(path, (err as Error).message)
  }
  return {
    zip: ex.zip,
    spaceKey: ex.spaceKey,
    spaceName: ex.spaceName,
    index: new Map(indexTree(ex.index).map((p) => [p.id, p])),
    files: ex.files,
  }
}

/** What an upload must pass before it is accepted: the zip is an export; its space and size. */
export async function inspectExport(path: string): Promise<ExportSummary> {
  const ex = await openExport(path)
  ex.zip.close()
  return { spaceKey: ex.spaceKey, spaceName: ex.spaceName, pages: ex.files.size }
}

export function openExportSource(
  spec: SourceSpec,
  opts: ExportSourceOptions = {},
): ConfluenceSource {
  if (spec.kind !== 'export') {
    throw new ExportError(`source ${spec.id} is a ${spec.kind} source, not an export`)
  }
  const path = spec.export_path
  if (!path) throw new ExportError(`export source ${spec.id} has no export_path`)
  const base = spec.base_url.replace(/\/+$/, '')
  const maxPageBytes = opts.maxPageBytes ?? DEFAULT_MAX_PAGE_BYTES
  const log = opts.log

  let opening: Promise<Export> | undefined
  const open = () => {
    opening ??= openExport(path).catch((err: unknown) => {
      opening = undefined
      throw err
    })
    return opening
  }

  const linksFor = (key: string): ExportLinks => {
    const space = encodeURIComponent(key)
    return {
      base,
      page: (id) =>
        base ? `${base}/pages/viewpage.action?pageId=${id}` : `export://${space}/${id}`,
      attachment: (pageId, filename) =>
        base
          ? `${base}/download/attachments/${pageId}/${encodeURIComponent(filename)}`
          : `export://${space}/attachments/${pageId}/${encodeURIComponent(filename)}`,
    }
  }

  type RefFields = { title: string; version: string; parentId?: string; updatedAt?: string }
  const refOf = (ex: Export, id: string, fields: RefFields): PageRef => {
    const { parentId, updatedAt, ...rest } = fields
    return {
      id,
      spaceKey: ex.spaceKey,
      ...rest,
      ...(parentId === undefined ? {} : { parentId }),
      labels: [],
      ...(updatedAt === undefined ? {} : { updatedAt }),
      url: linksFor(ex.spaceKey).page(id),
    }
  }

  async function readPage(ex: Export, id: string, entry: Entry): Promise<PageBody> {
    // A link's data is the path it names: indexing that as the page would be wrong, and nothing
    // here ever resolves it (the zip is never unpacked), so the page is refused, saying why.
    if (isSymlink(entry)) {
      throw new ExportError(`${entry.fileName} is a symbolic link, not a page file`)
    }
    const listed = ex.index.get(id)
    const html = await readZipEntry(ex.zip, entry, maxPageBytes)
    const page = parsePage(html, {
      id,
      spaceName: ex.spaceName,
      listedTitle: listed?.title,
      links: linksFor(ex.spaceKey),
    })
    const version = createHash('sha256')
      .update(page.title)
      .update('\0')
      .update(page.body)
      .digest('hex')
    // index.html's tree is the structure; breadcrumbs stand in for pages it does not list.
    const parentId = listed ? listed.parentId : page.parentId
    return {
      ...refOf(ex, id, { title: page.title, version, parentId, updatedAt: page.updatedAt }),
      body: page.body,
      format: 'view',
    }
  }

  /** A page at or under `root_page_id` (through the tree, then the page's own parent). */
  const inScope = (ex: Export, ref: PageRef): boolean => {
    const root = spec.root_page_id
    if (!root) return true
    const seen = new Set<string>()
    for (let id: string | undefined = ref.id; id && !seen.has(id); ) {
      if (id === root) return true
      seen.add(id)
      id = id === ref.id ? ref.parentId : ex.index.get(id)?.parentId
    }
    return false
  }

  return {
    kind: 'export',

    async *listPages(signal?: AbortSignal): AsyncIterable<PageRef> {
      const ex = await open()
      if (spec.cql || spec.labels?.include?.length || spec.labels?.exclude?.length) {
        log?.warn(
          { source: spec.id },
          'cql and label filters do not apply to an HTML export (it carries no labels): ignored',
        )
      }
      // Tree order first (parents before children), then pages index.html does not list.
      const ids = [...ex.index.keys(), ...ex.files.keys()]
      const done = new Set<string>()
      for (const id of ids) {
        if (done.has(id)) continue
        done.add(id)
        signal?.throwIfAborted()
        const entry = ex.files.get(id)
        if (entry === undefined) {
          log?.warn(
            { source: spec.id, pageId: id },
            'page listed in index.html has no file: skipped',
          )
          continue
        }
        let ref: PageRef
        try {
          const { body: _body, format: _format, ...listed } = await readPage(ex, id, entry)
          ref = listed
        } catch (err) {
          // Listed all the same: fetchBodies reports the failure for this page.
          log?.warn({ source: spec.id, pageId: id, err }, 'page file cannot be read')
          const listed = ex.index.get(id)
          ref = refOf(ex, id, {
            title: listed?.title ?? id,
            version: UNREADABLE_VERSION,
            parentId: listed?.parentId,
          })
        }
        if (inScope(ex, ref)) yield ref
      }
    },

    // The zip is the whole listing: a page its listing left out is not in the export, so gone.
    async confirmGone(ids: readonly string[]) {
      return [...ids]
    },

    // An export holds its one space: it cannot lose it.
    async goneSpaces() {
      return []
    },

    async spaceNames() {
      const ex = await open()
      return new Map([[ex.spaceKey, ex.spaceName]])
    },

    async fetchBodies(refs: readonly PageRef[], signal?: AbortSignal) {
      const ex = await open()
      const out: Array<PageBody | PageFailure> = []
      // One page at a time: memory holds one page file, whatever the batch.
      for (const ref of uniqueRefs(refs)) {
        signal?.throwIfAborted()
        const entry = ex.files.get(ref.id)
        if (entry === undefined) {
          out.push({ id: ref.id, message: `page ${ref.id} has no file in the export ${path}` })
          continue
        }
        try {
          out.push({ ...ref, ...(await readPage(ex, ref.id, entry)) })
        } catch (err) {
          out.push({ id: ref.id, message: `page ${ref.id}: ${(err as Error).message}` })
        }
      }
      return out
    },

    async close() {
      const current = opening
      opening = undefined
      if (current) (await current.catch(() => undefined))?.zip.close()
    },
  }
}
