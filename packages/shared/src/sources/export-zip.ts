import { type ChildNode, type Document, DomHandler, type Element } from 'domhandler'
import { DomUtils, Parser, parseDocument } from 'htmlparser2'
import yauzl, { type Entry, type ZipFile } from 'yauzl'

// The one reader of a Confluence HTML space export's header (reference §8): which folder of the
// zip holds the export, its index.html, and the space key and name in its space details table.
// The worker syncs an export through it, and the api reads an uploaded zip's space through it,
// so both always agree on what a zip holds. The page tree and the pages are the worker's.

/** Why a zip is not an export (its message names no path: callers add theirs). */
export class ExportZipError extends Error {
  override name = 'ExportZipError'
}

/** A page file: `My-article_9568346.html`, or `9273380.html` when the title is not plain ASCII. */
export const PAGE_FILE = /^(?:[^/]*_)?(\d+)\.html$/

/** index.html lists every page once: it may be larger than any page. */
export const MAX_INDEX_BYTES = 64 * 1024 * 1024

const HTML_OPTIONS = { decodeEntities: true, lowerCaseTags: true, lowerCaseAttributeNames: true }

/** HTML as exports are read: entities decoded, names lower-cased. */
export const parseExportHtml = (html: string): Document => parseDocument(html, HTML_OPTIONS)

/**
 * Elements index.html may nest: a space's page tree is a few dozen levels deep. Building a DOM of
 * deeper nesting costs time that grows with the square of the depth (a 1 KB zip holding a
 * megabyte of unclosed tags held the api for minutes), so such a file is refused as it is read.
 */
export const MAX_INDEX_DEPTH = 1_000

/**
 * Nodes index.html may hold: a page costs it a few (li, a, its title, ul, whitespace between), so
 * this is well over 100,000 pages. Each node of the DOM costs about 0.5 KB of heap, and 30 MB of
 * `<p>x</p>` zips to 46 KB: that upload held 1.8 GB of heap for 4 s; the 64 MB an index.html may
 * be would have run the process out of memory.
 */
export const MAX_INDEX_NODES = 1_000_000

class DepthBoundHandler extends DomHandler {
  private depth = 0
  private nodes = 0
  protected override addNode(node: ChildNode): void {
    if (++this.nodes > MAX_INDEX_NODES) {
      throw new ExportZipError(`index.html holds over ${MAX_INDEX_NODES} nodes`)
    }
    super.addNode(node)
  }
  override onopentag(name: string, attribs: Record<string, string>): void {
    if (++this.depth > MAX_INDEX_DEPTH) {
      throw new ExportZipError(`index.html nests elements over ${MAX_INDEX_DEPTH} levels deep`)
    }
    super.onopentag(name, attribs)
  }
  override onclosetag(): void {
    this.depth--
    super.onclosetag()
  }
}

/** An export's index.html, parsed; ExportZipError when it nests too deep. */
function parseIndexHtml(html: string): Document {
  const handler = new DepthBoundHandler()
  new Parser(handler, HTML_OPTIONS).end(html)
  return handler.root
}

const collapse = (s: string) => s.replace(/\s+/g, ' ').trim()

export type SpaceDetails = {
  /** False when index.html has no space details table (then it is not an export's index). */
  details: boolean
  key: string
  name: string
}

/**
 * The space details table of an index.html: the first table of the page, its "Key" and "Name"
 * rows, or (the labels are in the exporter's language) its first and second rows.
 */
export function spaceDetails(doc: Document): SpaceDetails {
  const table = DomUtils.findOne((el) => el.name === 'table', doc.children)
  if (table === null) return { details: false, key: '', name: '' }
  const cell = (row: Element, name: string) => {
    const found = DomUtils.findOne((el) => el.name === name, row.children)
    return found ? collapse(DomUtils.textContent(found)) : ''
  }
  const rows = DomUtils.findAll((el) => el.name === 'tr', table.children).map((tr) => ({
    label: cell(tr, 'th').replace(/:$/, '').toLowerCase(),
    value: cell(tr, 'td'),
  }))
  const row = (label: string, position: number) =>
    (rows.find((r) => r.label === label) ?? rows[position])?.value ?? ''
  return { details: true, key: row('key', 0), name: row('name', 1) }
}

export type ExportZip = {
  zip: ZipFile
  /** The folder the export sits in (`KEY/`), '' at the zip's root. */
  prefix: string
  /** Its index.html, parsed. */
  index: Document
  spaceKey: string
  spaceName: string
  /** Page id → its file's entry (metadata only), in the zip's order. */
  files: Map<string, Entry>
}

/** One file of the zip as text, refused when it is over `limit` bytes. */
export async function readZipEntry(zip: ZipFile, entry: Entry, limit: number): Promise<string> {
  if (entry.uncompressedSize > limit) {
    throw new Error(
      `${entry.fileName} is ${entry.uncompressedSize} bytes, over the ${limit}-byte limit`,
    )
  }
  const chunks: Buffer[] = []
  for await (const chunk of await zip.openReadStreamPromise(entry)) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString('utf8')
}

/**
 * Opens an export zip and reads its header: the files may sit at the zip's root or under one
 * folder (`KEY/index.html`, what Confluence writes); a root index.html wins. The caller closes
 * `zip`. Throws ExportZipError when the zip is not an export.
 */
export async function openExportZip(path: string): Promise<ExportZip> {
  let zip: ZipFile
  try {
    zip = await yauzl.openPromise(path, { lazyEntries: true, autoClose: false })
  } catch (err) {
    throw new ExportZipError(`not a readable zip (${(err as Error).message})`)
  }
  try {
    // Only files at the root or one folder down matter; pages are grouped by that folder.
    type Folder = { index?: Entry; files: Map<string, Entry> }
    const folders = new Map<string, Folder>()
    try {
      for await (const entry of zip.eachEntry()) {
        const match = /^(?:([^/]+)\/)?([^/]+)$/.exec(entry.fileName)
        if (!match) continue
        const prefix = match[1] === undefined ? '' : `${match[1]}/`
        const name = match[2] as string
        const folder: Folder = folders.get(prefix) ?? { files: new Map() }
        folders.set(prefix, folder)
        if (name === 'index.html') folder.index = entry
        const id = PAGE_FILE.exec(name)?.[1]
        if (id !== undefined && !folder.files.has(id)) folder.files.set(id, entry)
      }
    } catch (err) {
      throw new ExportZipError(`not a readable zip (${(err as Error).message})`)
    }
    const withIndex = [...folders].filter(([, f]) => f.index !== undefined)
    const root = withIndex.find(([prefix]) => prefix === '')
    if (!root && withIndex.length > 1) {
      const names = withIndex.map(([prefix]) => prefix.slice(0, -1)).join(', ')
      throw new ExportZipError(`several space folders (${names}); export one space per zip`)
    }
    const [prefix, folder] = root ?? withIndex[0] ?? []
    if (prefix === undefined || folder?.index === undefined) {
      throw new ExportZipError('no index.html')
    }
    let html: string
    try {
      html = await readZipEntry(zip, folder.index, MAX_INDEX_BYTES)
    } catch (err) {
      throw new ExportZipError(`index.html cannot be read (${(err as Error).message})`)
    }
    const index = parseIndexHtml(html)
    const details = spaceDetails(index)
    if (!details.details) throw new ExportZipError('index.html has no space details table')

    const spaceKey = details.key || prefix.slice(0, -1)
    if (!spaceKey) throw new ExportZipError('index.html names no space key')
    return {
      zip,
      prefix,
      index,
      spaceKey,
      spaceName: details.name || spaceKey,
      files: folder.files,
    }
  } catch (err) {
    zip.close()
    throw err
  }
}
