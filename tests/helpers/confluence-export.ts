/**
 * Builds a Confluence HTML space export zip (shared/reference/confluence-rest.md §8) from the same
 * pages the REST stand-in serves, so a test can ingest one space both ways and compare. The layout
 * follows the real 2016 export in shared/fixtures/confluence/bdfinst__confluence2md:
 *
 * - `index.html`: the space details table (Key, Name, Description, Created by) and the
 *   "Available Pages" tree as nested `<ul>`s, roots first in page order;
 * - one `<Title>_<id>.html` per page (spaces → '-', other punctuation dropped), `<id>.html` when the
 *   title is not plain ASCII, with `<title>` and `#title-text` reading "Space name : Title",
 *   `ol#breadcrumbs` (the space, then the ancestors), `.page-metadata` ("… last modified on
 *   DD.MM.YYYY" from `updatedAt`) and the body in `div#main-content.wiki-content`;
 * - `styles/site.css`, and `attachments/<pageId>/<filename>` for every attachment a page shows.
 *
 * The body is a rendered form of the storage XHTML (the real exporter writes the view): plain
 * XHTML is its own view; the code and noformat macros become the syntaxhighlighter `<pre>` panels
 * Confluence writes (code escaped, language as `brush`, `java` when unset as older Confluence
 * renders it); `ac:link` to a page of the export becomes `<a href="Title_ID.html">`, to a page
 * outside it `/display/KEY/Title` (under `baseUrl` when given); images point at `attachments/…`; emoticons are icon images; panels (info, note,
 * tip, warning) are information-macro divs; any other macro is its rich-text body (a plain-text
 * body as `<pre>`). The rendering is string-based: storage from the stand-in is well-formed XHTML.
 *
 * Entries carry a fixed time, so the same pages always give the same zip.
 */
import { createWriteStream } from 'node:fs'
import { pipeline } from 'node:stream/promises'
import { ZipFile } from 'yazl'
import type { StandInPage } from './confluence-stand-in.ts'

export type ExportZipOptions = {
  spaceKey: string
  spaceName: string
  /** Where to write the zip. */
  path: string
  /** Files under `<spaceKey>/` (what Confluence writes) instead of at the zip's root. */
  topFolder?: boolean
  /** Confluence base URL: links to pages outside the export, images' `data-image-src`. */
  baseUrl?: string
  /** Pages listed in index.html whose page file is left out of the zip. */
  omitFiles?: string[]
}

export type ExportZip = {
  path: string
  /** Page id → its file's name in the zip (without the top folder). */
  files: Map<string, string>
}

const FIXED_TIME = new Date('2024-01-01T00:00:00Z')

/** Writes `entries` (name → content) to a zip at `path`, in the order given. */
export async function writeZip(
  path: string,
  entries: Iterable<[string, string | Buffer]>,
): Promise<void> {
  const zip = new ZipFile()
  for (const [name, content] of entries) {
    zip.addBuffer(Buffer.from(content), name, { mtime: FIXED_TIME })
  }
  zip.end()
  await pipeline(zip.outputStream, createWriteStream(path))
}

/** The export's file name for a page: `My-article_9568346.html`, `9273380.html` for non-ASCII. */
export function exportFileName(page: Pick<StandInPage, 'id' | 'title'>): string {
  if (!/^[\x20-\x7e]*$/.test(page.title)) return `${page.id}.html`
  const name = page.title
    .trim()
    .replace(/\s+/g, '-')
    .replace(/[^A-Za-z0-9_-]/g, '')
  return name ? `${name}_${page.id}.html` : `${page.id}.html`
}

const escapeHtml = (s: string) =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
const escapeAttr = (s: string) => escapeHtml(s).replace(/"/g, '&quot;')
const XML_ENTITIES: Record<string, string> = { lt: '<', gt: '>', quot: '"', apos: "'", amp: '&' }
const decodeXml = (s: string) =>
  s.replace(/&(lt|gt|quot|apos|amp);/g, (_all, name: string) => XML_ENTITIES[name] as string)
const attr = (tag: string, name: string) => {
  const value = new RegExp(`\\s${name}="([^"]*)"`).exec(tag)?.[1]
  return value === undefined ? undefined : decodeXml(value)
}
const param = (inner: string, name: string) => {
  const value = new RegExp(`<ac:parameter ac:name="${name}">([^<]*)</ac:parameter>`).exec(
    inner,
  )?.[1]
  return value === undefined ? undefined : decodeXml(value)
}
/** The text of a plain-text body: its CDATA sections joined (`]]>` is split across two). */
const plainText = (inner: string) =>
  [...inner.matchAll(/<!\[CDATA\[([\s\S]*?)\]\]>/g)].map((m) => m[1]).join('')
const plus = (s: string) => encodeURIComponent(s).replace(/%20/g, '+')

const PANELS: Record<string, string> = {
  info: 'information',
  note: 'note',
  tip: 'tip',
  warning: 'warning',
}

type Render = {
  page: StandInPage
  byTitle: Map<string, StandInPage>
  spaceKey: string
  baseUrl: string
  attachments: Set<string>
}

function attachmentHtml(filename: string, ctx: Render): string {
  const file = `attachments/${ctx.page.id}/${filename}`
  ctx.attachments.add(file)
  return file
}

function renderLink(tag: string, inner: string, ctx: Render): string {
  const rich = /<ac:link-body>([\s\S]*?)<\/ac:link-body>/.exec(inner)?.[1]
  const plain = /<ac:plain-text-link-body>([\s\S]*?)<\/ac:plain-text-link-body>/.exec(inner)?.[1]
  const anchor = attr(tag, 'ac:anchor')
  const target = /<ri:([a-z-]+)\b[^>]*>/.exec(inner)
  let href = ''
  let label = anchor ?? ''
  let attrs = ''
  if (target?.[1] === 'page') {
    const title = attr(target[0], 'ri:content-title') as string
    const key = attr(target[0], 'ri:space-key') ?? ctx.spaceKey
    const found = key === ctx.spaceKey ? ctx.byTitle.get(title) : undefined
    href = found ? exportFileName(found) : `${ctx.baseUrl}/display/${plus(key)}/${plus(title)}`
    if (anchor) href += `#${title.replace(/\s+/g, '')}-${anchor}`
    label = title
  } else if (target?.[1] === 'url') {
    href = attr(target[0], 'ri:value') as string
    label = href
  } else if (target?.[1] === 'attachment') {
    const filename = attr(target[0], 'ri:filename') as string
    href = attachmentHtml(filename, ctx)
    attrs = ` data-linked-resource-default-alias="${escapeAttr(filename)}"`
    label = filename
  } else if (target?.[1] === 'user') {
    const user = attr(target[0], 'ri:username') ?? attr(target[0], 'ri:account-id') ?? 'user'
    href = `${ctx.baseUrl}/display/~${encodeURIComponent(user)}`
    attrs = ' class="confluence-userlink user-mention"'
    label = user
  } else if (target === null && anchor) {
    href = `#${ctx.page.title.replace(/\s+/g, '')}-${anchor}`
  }
  const text = rich ?? (plain === undefined ? escapeHtml(label) : escapeHtml(plainText(plain)))
  return href ? `<a href="${escapeAttr(href)}"${attrs}>${text}</a>` : text
}

function renderImage(tag: string, inner: string, ctx: Render): string {
  const alt = attr(tag, 'ac:alt')
  const altAttr = alt === undefined ? '' : ` alt="${escapeAttr(alt)}"`
  const url = /<ri:url\b[^>]*>/.exec(inner)
  if (url) {
    const src = escapeAttr(attr(url[0], 'ri:value') as string)
    return `<img class="confluence-embedded-image confluence-external-resource" src="${src}" data-image-src="${src}"${altAttr}>`
  }
  const attachment = /<ri:attachment\b[^>]*>/.exec(inner)
  if (!attachment) return ''
  const filename = attr(attachment[0], 'ri:filename') as string
  const src = attachmentHtml(filename, ctx)
  const original = `${ctx.baseUrl}/download/attachments/${ctx.page.id}/${encodeURIComponent(filename)}`
  return (
    '<span class="confluence-embedded-file-wrapper"><img class="confluence-embedded-image"' +
    ` src="${escapeAttr(src)}" data-image-src="${escapeAttr(original)}"` +
    ` data-linked-resource-default-alias="${escapeAttr(filename)}"${altAttr}></span>`
  )
}

function codePanel(name: string, inner: string): string {
  const code = escapeHtml(plainText(inner))
  if (name === 'noformat') {
    return `<div class="preformatted panel" style="border-width: 1px;"><div class="preformattedContent panelContent"><pre>${code}</pre></div></div>`
  }
  const language = param(inner, 'language') ?? 'java'
  const title = param(inner, 'title')
  const header = title
    ? `<div class="codeHeader panelHeader pdl" style="border-bottom-width: 1px;"><b>${escapeHtml(title)}</b></div>`
    : ''
  return (
    `<div class="code panel pdl" style="border-width: 1px;">${header}` +
    '<div class="codeContent panelContent pdl">' +
    `<pre class="syntaxhighlighter-pre" data-syntaxhighlighter-params="brush: ${escapeAttr(language)}; gutter: false; theme: Confluence" data-theme="Confluence">${code}</pre>` +
    '</div></div>'
  )
}

/** Storage XHTML → the view HTML an export holds (see the header for what is rendered how). */
export function renderStorage(storage: string, ctx: Render): string {
  let html = storage
    // Code first: its text is escaped here and nothing later looks inside it.
    .replace(
      /<ac:structured-macro\b[^>]*?\bac:name="(code|noformat)"[^>]*>([\s\S]*?)<\/ac:structured-macro>/g,
      (_all, name: string, inner: string) => codePanel(name, inner),
    )
    .replace(/<ac:link\b([^>]*)>([\s\S]*?)<\/ac:link>/g, (all, _attrs, inner: string) =>
      renderLink(all, inner, ctx),
    )
    .replace(/<ac:image\b([^>]*)>([\s\S]*?)<\/ac:image>/g, (all, _attrs, inner: string) =>
      renderImage(all, inner, ctx),
    )
    .replace(/<ac:emoticon\b[^>]*>/g, (tag) => {
      const name = attr(tag, 'ac:name') ?? 'smile'
      return `<img class="emoticon emoticon-${name}" data-emoticon-name="${name}" src="images/icons/emoticons/${name}.svg" alt="(${name})">`
    })
    .replace(/<ac:task-list>/g, '<ul class="inline-task-list">')
    .replace(/<\/ac:task-list>/g, '</ul>')
    .replace(
      /<ac:task>\s*(?:<ac:task-id>[^<]*<\/ac:task-id>\s*)?(?:<ac:task-uuid>[^<]*<\/ac:task-uuid>\s*)?<ac:task-status>([^<]*)<\/ac:task-status>/g,
      (_all, status: string) => (status.trim() === 'complete' ? '<li class="checked">' : '<li>'),
    )
    .replace(/<\/ac:task>/g, '</li>')
    .replace(/<ac:parameter\b[^>]*>[\s\S]*?<\/ac:parameter>/g, '')
    .replace(/<ac:placeholder\b[^>]*>[\s\S]*?<\/ac:placeholder>/g, '')
    .replace(
      /<ac:plain-text-body>([\s\S]*?)<\/ac:plain-text-body>/g,
      (_all, inner: string) => `<pre>${escapeHtml(plainText(inner))}</pre>`,
    )
  // Macro wrappers: a panel is a div around its body; any other macro leaves its body only.
  const open: string[] = []
  html = html.replace(/<ac:structured-macro\b([^>]*?)(\/?)>|<\/ac:structured-macro>/g, (tag) => {
    if (tag.startsWith('</')) return open.pop() ?? ''
    const kind = PANELS[attr(tag, 'ac:name') ?? '']
    if (tag.endsWith('/>')) return ''
    open.push(kind ? '</div></div>' : '')
    return kind
      ? `<div class="confluence-information-macro confluence-information-macro-${kind}"><div class="confluence-information-macro-body">`
      : ''
  })
  return html
    .replace(/<\/?(?:ac|ri):[^>]*>/g, '')
    .replace(/<table\b[^>]*>/g, '<div class="table-wrap"><table class="confluenceTable">')
    .replace(/<\/table>/g, '</table></div>')
    .replace(/<(t[hd])\b([^>]*)>/g, (_all, cell: string, rest: string) =>
      /\sclass="/.test(rest)
        ? `<${cell}${rest.replace(/\sclass="/, ` class="confluence${cell === 'th' ? 'Th' : 'Td'} `)}>`
        : `<${cell} class="confluence${cell === 'th' ? 'Th' : 'Td'}"${rest}>`,
    )
}

const FOOTER = `
    <div id="footer" role="contentinfo">
        <section class="footer-body">
            <p>Document generated by Confluence on 01.01.2024 09:00</p>
            <div id="footer-logo"><a href="http://www.atlassian.com/">Atlassian</a></div>
        </section>
    </div>`

/** `<head>` to the opening `<body>` of an exported page, as Confluence writes it, at `indent`. */
const headAndBody = (title: string, indent: string) =>
  [
    '<head>',
    `    <title>${title}</title>`,
    '    <link rel="stylesheet" href="styles/site.css" type="text/css" />',
    '    <META http-equiv="Content-Type" content="text/html; charset=UTF-8">',
    '</head>',
    '<body class="theme-default aui-theme-default">',
  ]
    .map((line) => indent + line)
    .join('\n')

function indexHtml(
  roots: StandInPage[],
  children: Map<string, StandInPage[]>,
  opts: ExportZipOptions,
) {
  const tree = (pages: StandInPage[], depth: number): string =>
    pages.length === 0
      ? ''
      : `<ul>${pages
          .map((p, i) => {
            const home =
              depth === 0 && i === 0
                ? '<img src="images/icons/contenttypes/home_page_16.png" height="16" width="16" border="0" align="absmiddle"/>'
                : ''
            const sub = tree(children.get(p.id) ?? [], depth + 1)
            return `<li><a href="${exportFileName(p)}">${escapeHtml(p.title)}</a>${home}${sub}</li>`
          })
          .join('\n')}</ul>`
  return `<!DOCTYPE html>
<html>
${headAndBody(escapeHtml(opts.spaceName), '')}
<div id="page">
    <div id="main" class="aui-page-panel">
        <div id="main-header">
            <h1 id="title-heading" class="pagetitle"><span id="title-text">Space Details:</span></h1>
        </div>
        <div id="content">
            <div id="main-content" class="pageSection">
                <table class="confluenceTable">
                    <tr><th class="confluenceTh">Key</th><td class="confluenceTd">${escapeHtml(opts.spaceKey)}</td></tr>
                    <tr><th class="confluenceTh">Name</th><td class="confluenceTd">${escapeHtml(opts.spaceName)}</td></tr>
                    <tr><th class="confluenceTh">Description</th><td class="confluenceTd"></td></tr>
                    <tr><th class="confluenceTh">Created by</th><td class="confluenceTd">Stand-in (01.01.2024)</td></tr>
                </table>
            </div>
            <br/>
            <br/>
            <div class="pageSection">
                <div class="pageSectionHeader"><h2 class="pageSectionTitle">Available Pages:</h2></div>
                ${tree(roots, 0)}
            </div>
        </div>
    </div>${FOOTER}
</div>
</body>
</html>
`
}

const dotted = (iso: string) => {
  const d = new Date(iso)
  const pad = (n: number) => String(n).padStart(2, '0')
  return `${pad(d.getUTCDate())}.${pad(d.getUTCMonth() + 1)}.${d.getUTCFullYear()}`
}

function pageHtml(
  page: StandInPage,
  ancestors: StandInPage[],
  body: string,
  attachments: string[],
  opts: ExportZipOptions,
) {
  const title = escapeHtml(`${opts.spaceName} : ${page.title}`)
  const crumbs = [
    `<li class="first"><span><a href="index.html">${escapeHtml(opts.spaceName)}</a></span></li>`,
    ...ancestors.map(
      (a) => `<li><span><a href="${exportFileName(a)}">${escapeHtml(a.title)}</a></span></li>`,
    ),
  ].join('\n')
  const modified = page.updatedAt ? `, last modified on ${dotted(page.updatedAt)}` : ''
  const attachmentSection =
    attachments.length === 0
      ? ''
      : `<div class="pageSection group"><div class="pageSectionHeader"><h2 id="attachments" class="pageSectionTitle">Attachments:</h2></div><div class="greybox" align="left">${attachments
          .map(
            (a) =>
              `<img src="images/icons/bullet_blue.gif" height="8" width="8" alt=""/><a href="${escapeAttr(a)}">${escapeHtml(a.split('/').pop() as string)}</a><br/>`,
          )
          .join('\n')}</div></div>`
  return `<!DOCTYPE html>
<html>
${headAndBody(title, '    ')}
        <div id="page">
            <div id="main" class="aui-page-panel">
                <div id="main-header">
                    <div id="breadcrumb-section">
                        <ol id="breadcrumbs">
${crumbs}
                        </ol>
                    </div>
                    <h1 id="title-heading" class="pagetitle">
                        <span id="title-text">
                            ${title}
                        </span>
                    </h1>
                </div>
                <div id="content" class="view">
                    <div class="page-metadata">
                        Created by <span class='author'> Stand-in</span>${modified}
                    </div>
                    <div id="main-content" class="wiki-content group">
                    ${body}
                    </div>
                    ${attachmentSection}
                </div>
            </div>${FOOTER}
        </div>
    </body>
</html>
`
}

/** Writes the export zip of `pages` (those in `opts.spaceKey`) to `opts.path`. */
export async function buildExportZip(
  pages: StandInPage[],
  opts: ExportZipOptions,
): Promise<ExportZip> {
  const inSpace = pages.filter((p) => p.spaceKey === opts.spaceKey)
  const byId = new Map(inSpace.map((p) => [p.id, p]))
  const byTitle = new Map(inSpace.map((p) => [p.title, p]))
  const children = new Map<string, StandInPage[]>()
  const roots: StandInPage[] = []
  for (const page of inSpace) {
    const parent = page.parentId === undefined ? undefined : byId.get(page.parentId)
    if (parent) children.set(parent.id, [...(children.get(parent.id) ?? []), page])
    else roots.push(page)
  }
  const folder = opts.topFolder ? `${opts.spaceKey}/` : ''
  const baseUrl = (opts.baseUrl ?? '').replace(/\/+$/, '')
  const entries: Array<[string, string]> = [
    [`${folder}index.html`, indexHtml(roots, children, opts)],
  ]
  const files = new Map<string, string>()
  const attachments = new Set<string>()
  for (const page of inSpace) {
    const ancestors: StandInPage[] = []
    for (
      let p = byId.get(page.parentId ?? '');
      p && !ancestors.includes(p);
      p = byId.get(p.parentId ?? '')
    ) {
      ancestors.unshift(p)
    }
    const own = new Set<string>()
    const body = renderStorage(page.storage, {
      page,
      byTitle,
      spaceKey: opts.spaceKey,
      baseUrl,
      attachments: own,
    })
    const name = exportFileName(page)
    files.set(page.id, name)
    for (const a of own) attachments.add(a)
    if (!opts.omitFiles?.includes(page.id)) {
      entries.push([`${folder}${name}`, pageHtml(page, ancestors, body, [...own], opts)])
    }
  }
  for (const a of attachments) entries.push([`${folder}${a}`, `attachment ${a}`])
  entries.push([`${folder}styles/site.css`, 'body { font-family: sans-serif; }\n'])
  await writeZip(opts.path, entries)
  return { path: opts.path, files }
}
