import { parseExportHtml } from '@confluence-bot/shared'
import { render } from 'dom-serializer'
import { type AnyNode, type Document, Element, Text } from 'domhandler'
import { DomUtils } from 'htmlparser2'
import { textOf } from '../convert/storage.ts'

// The HTML of a Confluence HTML space export (reference §8), read without I/O: `index.html` (space
// details table, "Available Pages" tree) and one page file (title, breadcrumbs, metadata line,
// `div#main-content`). The page body is rendered view HTML; it is cleaned here so the storage
// converter reads it well: code blocks become `<pre><code class="language-x">` with their text
// kept byte for byte, links between exported pages point at the pages' URLs, attachment images
// and links point at attachment URLs, and what only the export's chrome needs goes.

/** A link to a page file, with an optional `#fragment`. */
const PAGE_HREF = /^(?:[^/?#]*_)?(\d+)\.html(#.*)?$/s
/** An attachment or image the export ships: `attachments/<pageId>/<attachmentId>.<ext>`. */
const ATTACHMENT_HREF = /^attachments\/(\d+)\/([^?#]+)$/

/** Where a rewritten link points: a page by id, an attachment by its owner page and file name. */
export type ExportLinks = {
  page(id: string): string
  attachment(pageId: string, filename: string): string
  /** The site's base URL, to resolve server-relative links (`/display/KEY/Title`); '' for none. */
  base: string
}

export type IndexPage = { id: string; title: string; parentId?: string }

export type Crumb = { title: string; id?: string }

export type ExportPage = {
  title: string
  /** `ol#breadcrumbs`, the space (index.html) first. */
  crumbs: Crumb[]
  /** The nearest page in the breadcrumbs. */
  parentId?: string
  /** Midnight UTC of the date in `.page-metadata` (the last modification), when it parses. */
  updatedAt?: string
  /** The cleaned inner HTML of `div#main-content`. */
  body: string
}

export const parseHtml = parseExportHtml

const collapse = (s: string) => s.replace(/\s+/g, ' ').trim()
const elements = (root: AnyNode, test: (el: Element) => boolean): Element[] =>
  DomUtils.findAll(test, [root])
const byId = (root: AnyNode, id: string) => elements(root, (el) => el.attribs.id === id)[0]
const hasClass = (el: Element, name: string) => (el.attribs.class ?? '').split(/\s+/).includes(name)

function closest(node: AnyNode, name: string): Element | undefined {
  for (let p = node.parent; p; p = p.parent) {
    if (p instanceof Element && p.name === name) return p
  }
  return undefined
}

/** The page id a link points at, when it is a link to a page file. */
export function pageIdOf(href: string): string | undefined {
  return PAGE_HREF.exec(href)?.[1]
}

// ---------------------------------------------------------------------------------------------
// index.html

/** The "Available Pages" tree of a parsed index.html. */
export function indexTree(doc: Document): IndexPage[] {
  // The tree: each page is the first page link in a list item; its parent is the page of the
  // list item around that one (exports nest a <ul> per child, or one <ul> for all children).
  const idOf = new Map<Element, IndexPage>()
  const anchors = elements(
    doc,
    (el) => el.name === 'a' && pageIdOf(el.attribs.href ?? '') !== undefined,
  )
  for (const a of anchors) {
    const li = closest(a, 'li')
    if (li && !idOf.has(li)) {
      idOf.set(li, { id: pageIdOf(a.attribs.href as string) as string, title: collapse(textOf(a)) })
    }
  }
  const tree: IndexPage[] = []
  const seen = new Set<string>()
  for (const [li, page] of idOf) {
    if (seen.has(page.id)) continue
    seen.add(page.id)
    const outer = closest(li, 'li')
    const parentId = outer ? idOf.get(outer)?.id : undefined
    tree.push(parentId ? { ...page, parentId } : page)
  }
  return tree
}

// ---------------------------------------------------------------------------------------------
// A page file

const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec']

/** Date formats in metadata lines, with the group holding the year, the month and the day. */
const DATE_FORMATS: Array<{ re: RegExp; y: number; m: number; d: number }> = [
  // 24.02.2015 (most European locales)
  { re: /\b(\d{1,2})\.\s?(\d{1,2})\.\s?(\d{4})\b/g, y: 3, m: 2, d: 1 },
  // 2015-02-24
  { re: /\b(\d{4})-(\d{2})-(\d{2})\b/g, y: 1, m: 2, d: 3 },
  // Feb 24, 2015 (English)
  { re: /\b([A-Za-z]{3,9})\.? (\d{1,2}), (\d{4})\b/g, y: 3, m: 1, d: 2 },
  // 24 Feb 2015
  { re: /\b(\d{1,2}) ([A-Za-z]{3,9})\.? (\d{4})\b/g, y: 3, m: 2, d: 1 },
]

/** A month number or an English month name → 1…12 (0 when it is neither). */
function monthOf(text: string): number {
  if (/^\d+$/.test(text)) return Number(text)
  return MONTHS.indexOf(text.slice(0, 3).toLowerCase()) + 1
}

/**
 * The last date in a metadata line ("Created by A, last modified by B on 24.02.2015"), as an ISO
 * time at midnight UTC; undefined when no date in a known format is there. The export writes the
 * date in the exporting user's locale: dotted day-month-year, ISO, and English month names are read.
 */
export function parseMetadataDate(text: string): string | undefined {
  let best: { at: number; iso: string } | undefined
  for (const format of DATE_FORMATS) {
    for (const m of text.matchAll(format.re)) {
      const y = Number(m[format.y])
      const mo = monthOf(String(m[format.m]))
      const d = Number(m[format.d])
      const date = new Date(Date.UTC(y, mo - 1, d))
      const valid = mo >= 1 && date.getUTCMonth() === mo - 1 && date.getUTCDate() === d
      if (valid && (best === undefined || m.index > best.at)) {
        best = { at: m.index, iso: date.toISOString() }
      }
    }
  }
  return best?.iso
}

/**
 * The page title from "Space name : Page title": the prefix is the space's name as the page's
 * breadcrumbs or index.html give it; failing both, the title index.html lists, or the text after
 * the first " : ".
 */
function pageTitle(text: string, spaceNames: string[], listed: string | undefined): string {
  for (const name of spaceNames) {
    if (name && text.startsWith(`${name} : `)) return text.slice(name.length + 3)
  }
  if (listed) return listed
  const at = text.indexOf(' : ')
  return at === -1 ? text : text.slice(at + 3)
}

export function parsePage(
  html: string,
  opts: { id: string; spaceName: string; listedTitle?: string; links: ExportLinks },
): ExportPage {
  const doc = parseHtml(html)
  const titleEl = byId(doc, 'title-text') ?? elements(doc, (el) => el.name === 'title')[0]
  const crumbs: Crumb[] = []
  const ol = byId(doc, 'breadcrumbs')
  for (const a of ol ? elements(ol, (el) => el.name === 'a') : []) {
    const id = pageIdOf(a.attribs.href ?? '')
    crumbs.push(id ? { title: collapse(textOf(a)), id } : { title: collapse(textOf(a)) })
  }
  const rawTitle = titleEl ? collapse(textOf(titleEl)) : ''
  const spaceNames = [crumbs[0] && !crumbs[0].id ? crumbs[0].title : '', opts.spaceName]
  const title = rawTitle
    ? pageTitle(rawTitle, spaceNames, opts.listedTitle)
    : (opts.listedTitle ?? opts.id)
  const parentId = crumbs.findLast((c) => c.id !== undefined && c.id !== opts.id)?.id
  const metadata = elements(doc, (el) => hasClass(el, 'page-metadata'))[0]
  const updatedAt = metadata ? parseMetadataDate(collapse(textOf(metadata))) : undefined
  const page: ExportPage = { title, crumbs, body: cleanBody(doc, opts.links) }
  if (parentId) page.parentId = parentId
  if (updatedAt) page.updatedAt = updatedAt
  return page
}

// ---------------------------------------------------------------------------------------------
// The body

/** Export chrome: never page content, whether inside the body or around it. */
const CHROME_IDS = new Set([
  'attachments',
  'comments',
  'footer',
  'breadcrumb-section',
  'likes-and-labels-container',
  'labels-section',
])
const isChrome = (el: Element) =>
  CHROME_IDS.has(el.attribs.id ?? '') ||
  hasClass(el, 'pageSection') ||
  hasClass(el, 'page-metadata') ||
  el.name === 'script' ||
  el.name === 'style'

/** `brush: java; gutter: false` → `java` (only a plain language name is kept). */
function brushOf(params: string): string {
  const brush = /(?:^|;)\s*brush:\s*([^;]*)/.exec(params)?.[1]?.trim() ?? ''
  return /^[\w+#.-]+$/.test(brush) ? brush : ''
}

/** The attachment's own file name (the export names the file by the attachment's id). */
const filenameOf = (el: Element, fallback: string) =>
  el.attribs['data-linked-resource-default-alias'] || fallback

function link(a: Element, links: ExportLinks): string | undefined {
  const href = a.attribs.href as string
  const page = PAGE_HREF.exec(href)
  if (page) return links.page(page[1] as string) + (page[2] ?? '')
  const attachment = ATTACHMENT_HREF.exec(href)
  if (attachment)
    return links.attachment(attachment[1] as string, filenameOf(a, attachment[2] as string))
  if (/^(?:[a-z][a-z0-9+.-]*:|#)/i.test(href)) return href // absolute, or an anchor on the page
  if (href.startsWith('/') && !href.startsWith('//') && links.base) {
    return new URL(href, `${links.base}/`).href
  }
  if (href.startsWith('/')) return href
  return undefined // another file of the export (index.html, styles, icons): no page to link
}

/** The page's content: `div#main-content` (or `#content` without its chrome), cleaned. */
export function cleanBody(doc: Document, links: ExportLinks): string {
  const main = byId(doc, 'main-content') ?? byId(doc, 'content')
  if (!main) return ''
  for (const el of elements(main, isChrome)) DomUtils.removeElement(el)

  for (const pre of elements(
    main,
    (el) =>
      el.name === 'pre' &&
      (hasClass(el, 'syntaxhighlighter-pre') ||
        el.attribs['data-syntaxhighlighter-params'] !== undefined),
  )) {
    const language = brushOf(pre.attribs['data-syntaxhighlighter-params'] ?? '')
    const code = new Element('code', language ? { class: `language-${language}` } : {}, [
      new Text(textOf(pre)),
    ])
    DomUtils.replaceElement(pre, new Element('pre', {}, [code]))
  }

  for (const a of elements(main, (el) => el.name === 'a' && el.attribs.href !== undefined)) {
    const href = link(a, links)
    if (href === undefined) {
      // Its text stays, as plain text.
      a.name = 'span'
      a.attribs = {}
    } else a.attribs.href = href
  }

  for (const img of elements(main, (el) => el.name === 'img')) {
    const src = img.attribs.src ?? ''
    const attachment = ATTACHMENT_HREF.exec(src)
    const filename = filenameOf(img, attachment?.[2] ?? '')
    const alt = img.attribs.alt || img.attribs.title || filename
    if (attachment) {
      const url = links.attachment(attachment[1] as string, filename)
      DomUtils.replaceElement(img, new Element('img', { src: url, alt }))
    } else if (!/^(?:https?:|data:)/i.test(src)) {
      // An icon or emoticon the export ships: its text stands in for it.
      DomUtils.replaceElement(img, new Text(alt))
    }
  }
  return render(main.children, { encodeEntities: 'utf8' }).trim()
}
