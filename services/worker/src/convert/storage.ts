import type { ChildNode, Element } from 'domhandler'
import { parseDocument } from 'htmlparser2'
import { anchorOf } from '../chunk/anchor.ts'
import { emoticon } from './emoticons.ts'
import { buildTable, MAX_EXTRA_TABLE_CELLS } from './tables.ts'

// Pass 1 of the converter: Confluence storage format → plain HTML that turndown can read.
//
// The storage format is XHTML with Confluence elements (`ac:*`, `ri:*`) and CDATA. Handing it to
// an HTML parser loses data (CDATA becomes a bogus comment that swallows code; a self-closing
// `<ac:x/>` swallows the rest of the page), so it is parsed here with htmlparser2, which knows
// CDATA and self-closing tags and decodes HTML's named entities, and walked once to write HTML:
// macros become blockquotes, code blocks, links and images; tables are rebuilt as regular grids;
// navigation macros disappear. Code bodies never go through an HTML parser again: they are set
// aside and put back byte for byte by the markdown pass.

export type PageTarget = { title: string; spaceKey?: string }
export type UserTarget = { accountId?: string; userKey?: string; username?: string }

export type ConvertOptions = {
  /** Base URL of the Confluence site as a browser shows it (`https://acme.atlassian.net/wiki`). */
  baseUrl?: string
  /** The page's own space key: links without a space point into it. */
  spaceKey?: string
  /** The page's id, for attachment URLs. */
  pageId?: string
  /** Page title (and space) → URL, from the pages the crawl has seen. */
  resolvePage?: (target: PageTarget) => string | undefined
  /** A user reference → display name (and profile URL), from the users the crawl has seen. */
  resolveUser?: (target: UserTarget) => { displayName: string; url?: string } | undefined
  /** Jira base URL (`https://acme.atlassian.net`), to link issue keys. */
  jiraBaseUrl?: string
  /**
   * How the site names its heading and anchor ids, for `ac:anchor` links (chunk/anchor.ts):
   * Cloud `Heading-text`, Server / Data Center `PageTitle-Headingtext`. Default 'cloud'.
   */
  anchorStyle?: 'cloud' | 'server'
  /** The page's own title: a Data Center anchor on this page starts with it. */
  pageTitle?: string
}

export type Prepared = { html: string; code: string[]; warnings: string[] }

/** Deeper nesting than this is flattened to its text: no page needs it, and it bounds recursion. */
export const MAX_DEPTH = 64

/** Macros that only navigate (tables of contents, page trees, searches): dropped. */
export const NAVIGATION_MACROS: ReadonlySet<string> = new Set([
  'toc',
  'children',
  'pagetree',
  'pagetreesearch',
  'rw-pagetree',
  'livesearch',
  'search',
  'recently-updated',
  'recently-updated-dashboard',
  'contentbylabel',
  'content-by-label',
  'blog-posts',
  'listlabels',
  'popular-labels',
  'related-labels',
  'labels-list',
  'content-report-table',
  'tasks-report-macro',
  'outgoing-links',
  'incoming-links',
  'spaces',
  'space-details',
  'index',
  'navmap',
  'page-index',
  'create-from-template',
  'create-space-button',
  'favpages',
  'pagetree-search',
  'anchor',
  'viewport-redirect',
  'viewport-url-redirect',
  'redirect',
])

const PANELS: Record<string, string> = {
  info: 'Info',
  note: 'Note',
  tip: 'Tip',
  warning: 'Warning',
  error: 'Error',
  success: 'Success',
  panel: '',
  alert: 'Alert',
  auimessage: 'Note',
}

const CODE_MACROS = new Set(['code', 'noformat', 'paste-code-macro', 'sourcecode'])
const DIAGRAM_LANGUAGE: Record<string, string> = {
  mermaid: 'mermaid',
  'mermaid-cloud': 'mermaid',
  'mermaid-macro': 'mermaid',
  plantuml: 'plantuml',
  plantumlcloud: 'plantuml',
  mathblock: 'math',
  'easy-math-block': 'math',
  latex: 'latex',
}

// Plain HTML elements passed through, with the attributes turndown needs.
const KEEP_ATTRS: Record<string, readonly string[]> = {
  a: ['href', 'title'],
  img: ['src', 'alt', 'title'],
  ol: ['start'],
  // Stryker disable next-line ArrayDeclaration,StringLiteral: turndown's inline code ignores the class, and no <pre><code> reaches it (pass 1 makes every <pre> a placeholder)
  code: ['class'],
}
const VOID = new Set(['br', 'hr', 'img', 'wbr', 'input'])
const DROP = new Set(['script', 'style', 'colgroup', 'col', 'head', 'title', 'meta', 'link'])

export const escapeText = (s: string) =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
const escapeAttr = (s: string) => escapeText(s).replace(/"/g, '&quot;')

/** The text of a subtree, walked without recursion (so any depth is safe). */
export function textOf(node: ChildNode): string {
  let out = ''
  const stack: ChildNode[] = [node]
  while (stack.length > 0) {
    const n = stack.pop() as ChildNode
    if (n.type === 'text') out += n.data
    else if ('children' in n) {
      for (let i = n.children.length - 1; i >= 0; i--) stack.push(n.children[i] as ChildNode)
    }
  }
  return out
}

const BLOCK_ELEMENTS: ReadonlySet<string> = new Set(
  'p div br li ul ol blockquote pre table tr td th hr h1 h2 h3 h4 h5 h6'.split(' '),
)

/** The text of a subtree with a space around each block (paragraphs are words apart). */
function wordsOf(node: ChildNode): string {
  let out = ''
  const stack: Array<ChildNode | ' '> = [node]
  while (stack.length > 0) {
    const n = stack.pop() as ChildNode | ' '
    if (n === ' ') out += ' '
    else if (n.type === 'text') out += n.data
    else if ('children' in n) {
      const block = isElement(n) && BLOCK_ELEMENTS.has(n.name)
      if (block) {
        out += ' '
        stack.push(' ')
      }
      for (let i = n.children.length - 1; i >= 0; i--) stack.push(n.children[i] as ChildNode)
    }
  }
  return out
}

/** True when an element named `name` is somewhere below `node` (walked without recursion). */
function contains(node: Element, name: string): boolean {
  const stack: ChildNode[] = [...node.children]
  while (stack.length > 0) {
    const n = stack.pop() as ChildNode
    if (isElement(n)) {
      if (n.name === name) return true
      stack.push(...n.children)
    }
  }
  // Stryker disable next-line BooleanLiteral: code without a link converts the same on either path (they differ only by the code's class, which turndown ignores)
  return false
}

const isElement = (n: ChildNode): n is Element =>
  n.type === 'tag' || n.type === 'script' || n.type === 'style'

const childElements = (el: Element) => el.children.filter(isElement)
const child = (el: Element, name: string) => childElements(el).find((c) => c.name === name)

type Context = {
  options: ConvertOptions
  code: string[]
  warnings: string[]
  inTable: boolean
  inTask: boolean
  inCode: boolean
  /** Slots the page's tables may still add beyond their own cells (tables.ts). */
  tableBudget: number
}

/**
 * An unterminated CDATA section would swallow the rest of the page. XML space backups write a
 * CDATA end as `]] >`; a page cut off inside a section keeps what it has: the section is closed.
 */
function closeCdata(storage: string): string {
  const open = storage.lastIndexOf('<![CDATA[')
  if (open === -1 || storage.indexOf(']]>', open) !== -1) return storage
  const spaced = storage.indexOf(']] >', open)
  if (spaced !== -1) return `${storage.slice(0, spaced)}]]>${storage.slice(spaced + 4)}`
  return `${storage}]]>`
}

export function prepare(storage: string, options: ConvertOptions = {}): Prepared {
  const source = closeCdata(storage)
  const doc = parseDocument(source, {
    recognizeCDATA: true,
    recognizeSelfClosing: true,
    decodeEntities: true,
    lowerCaseTags: true,
    lowerCaseAttributeNames: true,
  })
  const ctx: Context = {
    options,
    // Stryker disable next-line ArrayDeclaration: code ids are the push positions, an entry ahead of them shifts nothing
    code: [],
    warnings: [],
    inTable: false,
    inTask: false,
    inCode: false,
    tableBudget: MAX_EXTRA_TABLE_CELLS,
  }
  return { html: children(doc.children, ctx, 0), code: ctx.code, warnings: ctx.warnings }
}

function children(nodes: readonly ChildNode[], ctx: Context, depth: number): string {
  let out = ''
  for (const node of nodes) out += convert(node, ctx, depth)
  return out
}

function convert(node: ChildNode, ctx: Context, depth: number): string {
  if (node.type === 'text') return escapeText(node.data)
  if (node.type === 'cdata') return escapeText(textOf(node))
  if (!isElement(node)) return '' // comments, processing instructions
  if (depth > MAX_DEPTH) {
    // Only the top of a flattened subtree gets here (its text is read without convert()), at
    // MAX_DEPTH + 1 or, for constructs that step two levels at a time, + 2: it always warns.
    ctx.warnings.push(`nesting deeper than ${MAX_DEPTH} flattened to text`)
    return ` ${escapeText(textOf(node))} `
  }
  const name = node.name
  if (name.startsWith('ac:') || name.startsWith('ri:')) return confluence(node, ctx, depth)
  if (DROP.has(name)) return ''
  if (name === 'table') return table(node, ctx, depth)
  if (name === 'time') {
    const date = escapeText(node.attribs.datetime ?? textOf(node))
    return ctx.inTask ? `(due ${date})` : date
  }
  if (name === 'li') return listItem(node, ctx, depth)
  // A heading is one line: a line break in it is a space.
  if (name === 'br' && node.parent && /^h[1-6]$/.test((node.parent as Element).name ?? ''))
    return ' '
  if (name === 'code' && contains(node, 'ac:link')) {
    // A link cannot live inside inline code: the link goes outside, its text stays code.
    const outer = ctx.inCode
    ctx.inCode = true
    const html = `<code>${children(node.children, ctx, depth + 1)}</code>`
    ctx.inCode = outer
    return html
  }
  // A heading is already strong: bold inside it would only add asterisks.
  if (
    (name === 'strong' || name === 'b') &&
    node.parent &&
    isElement(node.parent as ChildNode) &&
    /^h[1-6]$/.test((node.parent as Element).name)
  ) {
    return children(node.children, ctx, depth + 1)
  }
  if (name === 'pre') return codeBlock(textOf(node), '', ctx)
  return element(node, ctx, depth)
}

/**
 * A list item whose text is one paragraph (Confluence writes `<li><p>…</p></li>`) loses the
 * paragraph, so the list stays tight; an item with several paragraphs keeps them.
 */
function listItem(node: Element, ctx: Context, depth: number): string {
  const paragraphs = node.children.filter((c) => isElement(c) && c.name === 'p')
  // Only a paragraph followed by nothing but nested lists can lose its <p>.
  const rest = node.children.filter((c) => c !== paragraphs[0])
  const onlyLists = rest.every(
    (c) =>
      (isElement(c) && (c.name === 'ul' || c.name === 'ol')) ||
      (c.type === 'text' && !c.data.trim()),
  )
  if (paragraphs.length !== 1 || !onlyLists) return element(node, ctx, depth)
  let out = '<li>'
  for (const c of node.children) {
    out +=
      c === paragraphs[0]
        ? children((c as Element).children, ctx, depth + 2)
        : convert(c, ctx, depth + 1)
  }
  return `${out}</li>`
}

function element(node: Element, ctx: Context, depth: number): string {
  const name = node.name
  let attrs = ''
  // Stryker disable next-line ArrayDeclaration: no element has an attribute named like the replacement
  for (const attr of KEEP_ATTRS[name] ?? []) {
    const value = node.attribs[attr]
    if (value !== undefined) attrs += ` ${attr}="${escapeAttr(value)}"`
  }
  if (VOID.has(name)) return `<${name}${attrs}>`
  return `<${name}${attrs}>${children(node.children, ctx, depth + 1)}</${name}>`
}

/** A fenced code block: the body is kept aside and restored verbatim by the markdown pass. */
function codeBlock(body: string, language: string, ctx: Context): string {
  const id = ctx.code.push(body) - 1
  return `<pre data-code="${id}" data-lang="${escapeAttr(language)}">code</pre>`
}

// ---------------------------------------------------------------------------------------------
// Confluence elements

function confluence(node: Element, ctx: Context, depth: number): string {
  switch (node.name) {
    case 'ac:structured-macro':
    case 'ac:macro':
      return macro(node, ctx, depth)
    case 'ac:link':
      return link(node, ctx, depth)
    case 'ac:image':
      return image(node, ctx, depth)
    case 'ac:emoticon':
      return escapeText(emoticon(node.attribs))
    case 'ac:task-list':
      return taskList(node, ctx, depth)
    case 'ac:adf-extension':
      return adfExtension(node, ctx, depth)
    case 'ac:layout':
    case 'ac:layout-section':
    case 'ac:layout-cell':
      // Layouts are reading order: each cell's content in turn, never a table.
      return `<div>${children(node.children, ctx, depth + 1)}</div>`
    case 'ri:user':
      return user(node, ctx)
    case 'ac:parameter':
    case 'ac:default-parameter':
    case 'ac:placeholder':
    case 'ac:adf-mark':
    case 'ac:task-id':
    case 'ac:task-uuid':
    case 'ac:adf-attribute':
      return ''
    default:
      // Markers and wrappers (inline comments, rich bodies, unknown elements): their content.
      return children(node.children, ctx, depth + 1)
  }
}

const PARAMETERS: ReadonlySet<string> = new Set(['ac:parameter', 'ac:default-parameter'])

function parameters(node: Element): Map<string, Element> {
  const params = new Map<string, Element>()
  for (const c of childElements(node)) {
    if (c.name === 'ac:parameter') params.set(c.attribs['ac:name'] ?? '', c)
    else if (c.name === 'ac:default-parameter') params.set('', c)
  }
  return params
}

const param = (params: Map<string, Element>, key: string) => {
  const p = params.get(key)
  return p === undefined ? undefined : textOf(p).trim()
}

function macro(node: Element, ctx: Context, depth: number): string {
  const name = (node.attribs['ac:name'] ?? '').toLowerCase()
  if (NAVIGATION_MACROS.has(name)) return ''
  const params = parameters(node)
  const richBody = child(node, 'ac:rich-text-body')
  const plainBody = child(node, 'ac:plain-text-body')
  const body = () => (richBody ? children(richBody.children, ctx, depth + 1) : '')

  if (CODE_MACROS.has(name)) {
    const title = param(params, 'title')
    const language = name === 'code' ? (param(params, 'language') ?? '') : ''
    const heading = title ? `<p><strong>${escapeText(title)}</strong></p>` : ''
    // A legacy macro without a plain-text body has its code written straight in it, beside its
    // parameters (which are not code).
    const code = plainBody
      ? textOf(plainBody)
      : node.children
          .filter((c) => !(isElement(c) && PARAMETERS.has(c.name)))
          .map(textOf)
          .join('')
    return heading + codeBlock(code, language, ctx)
  }
  if (name in DIAGRAM_LANGUAGE && plainBody) {
    return codeBlock(textOf(plainBody), DIAGRAM_LANGUAGE[name] as string, ctx)
  }
  if (name === 'mathinline' || name === 'eazy-math-inline') {
    const formula = param(params, 'body') ?? (plainBody ? textOf(plainBody) : '')
    return `<code>${escapeText(`$${formula}$`)}</code>`
  }
  if (name in PANELS) {
    const kind = PANELS[name] as string
    const title = param(params, 'title')
    const icon = param(params, 'panelIconText')
    return panel(labelFor(kind, title, icon), body())
  }
  if (name === 'expand') {
    const title = param(params, 'title') || 'Details'
    return `<p><strong>${escapeText(title)}</strong></p>${body()}`
  }
  if (name === 'status') {
    const title = param(params, 'title') || param(params, 'colour') || 'STATUS'
    return `<cb-status>${escapeText(title)}</cb-status>`
  }
  if (name === 'jira' || name === 'jiraissues') return jira(params, ctx)
  if (name === 'markdown' && plainBody) {
    // A markdown macro's body already is markdown: it is kept as written.
    const id = ctx.code.push(textOf(plainBody)) - 1
    return `<div data-markdown="${id}">markdown</div>`
  }
  if (name === 'include' || name === 'excerpt-include') {
    const target = pageReference(node)
    if (target && !richBody) {
      const href = pageUrl(target, ctx.options)
      const verb = name === 'include' ? 'Included from' : 'Excerpt from'
      return `<p>${verb} <a href="${escapeAttr(href)}">${escapeText(target.title)}</a></p>`
    }
  }
  return unknownMacro(node, params, richBody ? body() : '', plainBody, ctx)
}

/** Any other macro keeps its title, what it points at, and its text body. */
function unknownMacro(
  node: Element,
  params: Map<string, Element>,
  richBody: string,
  plainBody: Element | undefined,
  ctx: Context,
): string {
  const title = param(params, 'title')
  let out = title ? `<p><strong>${escapeText(title)}</strong></p>` : ''
  for (const p of params.values()) {
    for (const ref of childElements(p)) out += reference(ref, ctx)
  }
  if (richBody) out += `<div>${richBody}</div>`
  else if (plainBody) {
    const text = textOf(plainBody)
    if (text.trim()) out += codeBlock(text, '', ctx)
  }
  void node
  return out
}

/** A link to what a macro parameter references (an attachment, a page), if anything. */
function reference(ref: Element, ctx: Context): string {
  if (ref.name === 'ri:attachment') {
    const filename = ref.attribs['ri:filename'] ?? ''
    if (!filename) return ''
    const href = attachmentUrl(filename, ctx.options)
    return `<p><a href="${escapeAttr(href)}">${escapeText(filename)}</a></p>`
  }
  if (ref.name === 'ri:page') {
    const title = ref.attribs['ri:content-title'] ?? ''
    if (!title) return ''
    const href = pageUrl({ title, spaceKey: ref.attribs['ri:space-key'] }, ctx.options)
    return `<p><a href="${escapeAttr(href)}">${escapeText(title)}</a></p>`
  }
  return ''
}

type Label = { text: string; icon: string }

function labelFor(kind: string, title: string | undefined, icon: string | undefined): Label {
  return { text: kind && title ? `${kind}: ${title}` : kind || title || '', icon: icon ?? '' }
}

/** A labelled blockquote: `> **Note:** first paragraph…` (a custom panel: its emoji). */
function panel(label: Label, body: string): string {
  const icon = label.icon ? `${escapeText(label.icon)} ` : ''
  const strong = icon + (label.text ? `<strong>${escapeText(label.text)}:</strong> ` : '')
  if (body.startsWith('<p>')) return `<blockquote><p>${strong}${body.slice(3)}</blockquote>`
  return `<blockquote>${strong ? `<p>${strong}</p>` : ''}${body}</blockquote>`
}

const ADF_PANELS: Record<string, string> = {
  info: 'Info',
  note: 'Note',
  warning: 'Warning',
  error: 'Error',
  success: 'Success',
  tip: 'Tip',
  custom: '',
}

function adfExtension(node: Element, ctx: Context, depth: number): string {
  const adf = child(node, 'ac:adf-node')
  const content = adf && child(adf, 'ac:adf-content')
  if (adf && content && adf.attribs.type === 'panel') {
    const attributes = childElements(adf).filter((c) => c.name === 'ac:adf-attribute')
    const attr = (key: string) => {
      const found = attributes.find((a) => a.attribs.key === key)
      return found && textOf(found).trim()
    }
    const type = attr('panel-type') ?? 'info'
    const label = labelFor(ADF_PANELS[type] ?? type, undefined, attr('panel-icon-text'))
    return panel(label, children(content.children, ctx, depth + 1))
  }
  const fallback = child(node, 'ac:adf-fallback')
  if (fallback) return children(fallback.children, ctx, depth + 1)
  return content ? children(content.children, ctx, depth + 1) : ''
}

function jira(params: Map<string, Element>, ctx: Context): string {
  const key = param(params, 'key')
  if (key) {
    const base = ctx.options.jiraBaseUrl?.replace(/\/+$/, '')
    if (!base) return escapeText(key)
    return `<a href="${escapeAttr(`${base}/browse/${encodeURIComponent(key)}`)}">${escapeText(key)}</a>`
  }
  const jql = param(params, 'jqlQuery')
  return jql ? `<p>Jira issues: <code>${escapeText(jql)}</code></p>` : ''
}

function taskList(node: Element, ctx: Context, depth: number): string {
  let items = ''
  for (const task of childElements(node).filter((c) => c.name === 'ac:task')) {
    const status = child(task, 'ac:task-status')
    const done = status !== undefined && textOf(status).trim() === 'complete'
    const body = child(task, 'ac:task-body')
    // A date in a task is its due date.
    const outer = ctx.inTask
    ctx.inTask = true
    const content = body ? children(body.children, ctx, depth + 2) : ''
    ctx.inTask = outer
    items += `<li><input type="checkbox"${done ? ' checked' : ''}>${content.trim()}</li>`
    // A task list nested in the task (not in its body) goes through convert(), so the depth
    // limit bounds it like any other nesting.
    const nested = childElements(task).filter((c) => c.name === 'ac:task-list')
    for (const list of nested)
      items = items.replace(/<\/li>$/, `${convert(list, ctx, depth + 2)}</li>`)
  }
  return `<ul>${items}</ul>`
}

// ---------------------------------------------------------------------------------------------
// Links, users, images

/** The page a macro points at: a `ri:page` among its parameters (possibly inside an ac:link). */
function pageReference(node: Element, depth = 0): PageTarget | undefined {
  for (const c of childElements(node)) {
    const title = c.attribs['ri:content-title']
    if ((c.name === 'ri:page' || c.name === 'ri:blog-post') && title) {
      return { title, spaceKey: c.attribs['ri:space-key'] }
    }
    if (
      depth < 3 &&
      (c.name === 'ac:parameter' || c.name === 'ac:default-parameter' || c.name === 'ac:link')
    ) {
      const inner = pageReference(c, depth + 1)
      if (inner) return inner
    }
  }
  return undefined
}

const plus = (s: string) => encodeURIComponent(s).replace(/%20/g, '+')

export function pageUrl(target: PageTarget, options: ConvertOptions): string {
  const resolved = options.resolvePage?.(target)
  if (resolved) return resolved
  const space = target.spaceKey ?? options.spaceKey
  if (options.baseUrl && space) {
    return `${options.baseUrl.replace(/\/+$/, '')}/display/${plus(space)}/${plus(target.title)}`
  }
  return `confluence://page/${encodeURIComponent(space ?? '')}/${encodeURIComponent(target.title)}`
}

export function attachmentUrl(filename: string, options: ConvertOptions, pageId?: string): string {
  const owner = pageId ?? options.pageId
  if (options.baseUrl && owner) {
    return `${options.baseUrl.replace(/\/+$/, '')}/download/attachments/${encodeURIComponent(owner)}/${encodeURIComponent(filename)}`
  }
  return `confluence://attachment/${encodeURIComponent(owner ?? '')}/${encodeURIComponent(filename)}`
}

function userTarget(el: Element): UserTarget {
  return {
    accountId: el.attribs['ri:account-id'],
    userKey: el.attribs['ri:userkey'],
    username: el.attribs['ri:username'],
  }
}

function userLabel(el: Element, ctx: Context): { text: string; url?: string } {
  const target = userTarget(el)
  const known = ctx.options.resolveUser?.(target)
  if (known) return { text: `@${known.displayName}`, url: known.url }
  return { text: `@${target.username ?? target.userKey ?? target.accountId ?? 'unknown-user'}` }
}

function user(el: Element, ctx: Context): string {
  const { text, url } = userLabel(el, ctx)
  return url ? `<a href="${escapeAttr(url)}">${escapeText(text)}</a>` : escapeText(text)
}

/**
 * The URL fragment of an `ac:anchor` (a heading's text or an anchor macro's name) on the page
 * titled `pageTitle`, as the site's own links carry it. Cloud's editor writes the anchor already
 * encoded (`QueryPie-Web%EC%97%90`): it is decoded first, so it is never encoded twice.
 */
function fragment(anchor: string, pageTitle: string, options: ConvertOptions): string {
  // Stryker disable next-line StringLiteral: anchorOf reads every style but 'server' as Cloud's
  return anchorOf(anchorName(anchor), pageTitle, options.anchorStyle ?? 'cloud')
}

function anchorName(anchor: string): string {
  try {
    return decodeURIComponent(anchor)
  } catch {
    return anchor // a lone `%`: taken as written
  }
}

function link(node: Element, ctx: Context, depth: number): string {
  const anchor = node.attribs['ac:anchor']
  const richBody = child(node, 'ac:link-body')
  const plainBody = child(node, 'ac:plain-text-link-body')
  let href = ''
  let label = ''
  const target = childElements(node).find((c) => c.name.startsWith('ri:'))
  // The page an anchor is on, when the link names one (its title starts a Data Center anchor).
  let anchorPage: string | undefined
  if (target === undefined) {
    anchorPage = ctx.options.pageTitle ?? ''
    label = anchor ? anchorName(anchor) : ''
  } else if (target.name === 'ri:page' || target.name === 'ri:blog-post') {
    const title = target.attribs['ri:content-title'] ?? ''
    href = pageUrl({ title, spaceKey: target.attribs['ri:space-key'] }, ctx.options)
    label = title
    anchorPage = title
  } else if (target.name === 'ri:attachment') {
    const filename = target.attribs['ri:filename'] ?? ''
    href = attachmentUrl(filename, ctx.options)
    label = filename
  } else if (target.name === 'ri:user') {
    const u = userLabel(target, ctx)
    href = u.url ?? ''
    label = u.text
  } else if (target.name === 'ri:space') {
    const key = target.attribs['ri:space-key'] ?? ''
    const base = ctx.options.baseUrl?.replace(/\/+$/, '')
    href = base ? `${base}/display/${plus(key)}` : `confluence://space/${encodeURIComponent(key)}`
    label = key
  } else if (target.name === 'ri:url') {
    href = target.attribs['ri:value'] ?? ''
    label = href
  } else if (target.name === 'ri:content-entity') {
    const id = target.attribs['ri:content-id'] ?? ''
    const base = ctx.options.baseUrl?.replace(/\/+$/, '')
    href = base
      ? `${base}/pages/viewpage.action?pageId=${encodeURIComponent(id)}`
      : `confluence://content/${encodeURIComponent(id)}`
    label = `content ${id}`
  }
  if (anchor && !href.includes('#')) {
    // Other targets (an attachment, a page by id) carry the anchor as written.
    if (anchorPage !== undefined) href += `#${fragment(anchor, anchorPage, ctx.options)}`
    else if (href) href += `#${anchor}`
  }
  let text = ''
  if (richBody) text = children(richBody.children, ctx, depth + 1)
  else if (plainBody) text = escapeText(textOf(plainBody))
  if (!text.trim()) text = escapeText(label)
  if (!href) return text
  if (ctx.inCode) return `</code><a href="${escapeAttr(href)}"><code>${text}</code></a><code>`
  return `<a href="${escapeAttr(href)}">${text}</a>`
}

function image(node: Element, ctx: Context, depth: number): string {
  let src = ''
  // Stryker disable next-line StringLiteral: read only when the image has no source, and turndown drops an image without a source
  let filename = ''
  for (const c of childElements(node)) {
    if (c.name === 'ri:attachment') {
      filename = c.attribs['ri:filename'] ?? ''
      src = attachmentUrl(filename, ctx.options)
    } else if (c.name === 'ri:url') {
      src = c.attribs['ri:value'] ?? ''
      filename = src
    }
  }
  const captionEl = child(node, 'ac:caption')
  const caption = captionEl ? wordsOf(captionEl).replace(/\s+/g, ' ').trim() : ''
  const alt = node.attribs['ac:alt']
  const altText =
    (alt && alt !== filename ? alt : '') || caption || node.attribs['ac:title'] || filename
  let out = `<img src="${escapeAttr(src)}" alt="${escapeAttr(altText)}">`
  if (captionEl && caption)
    out += ` <em>${children(captionEl.children, ctx, depth + 1)
      .replace(/<\/?p>/g, ' ')
      .trim()}</em>`
  return out
}

// ---------------------------------------------------------------------------------------------
// Tables

const BLOCK_TAGS = /<\/?(?:p|div|ul|ol|li|h[1-6]|blockquote|pre|table|tr|td|th|hr)(?:\s[^>]*)?>/g

// The placeholders of code and markdown bodies set aside (codeBlock(), macro()): kept whole, so
// the markdown pass still finds the body they stand for.
const PLACEHOLDER =
  /(<pre data-code="\d+" data-lang="[^"]*">code<\/pre>|<div data-markdown="\d+">markdown<\/div>)/

function flattenBlocks(html: string): string {
  return html
    .split(PLACEHOLDER)
    .map((part, i) => (i % 2 === 1 ? part : part.replace(BLOCK_TAGS, ' ').replace(/\s+/g, ' ')))
    .join('')
    .trim()
}

function table(node: Element, ctx: Context, depth: number): string {
  const rows: Element[] = []
  let caption = ''
  for (const c of childElements(node)) {
    if (c.name === 'tr') rows.push(c)
    else if (c.name === 'thead' || c.name === 'tbody' || c.name === 'tfoot') {
      // One at a time: a spread of a few hundred thousand rows overflows the stack.
      for (const r of childElements(c)) if (r.name === 'tr') rows.push(r)
    } else if (c.name === 'caption') caption = children(c.children, ctx, depth + 1)
  }
  const captionHtml = caption.trim() ? `<p><em>${caption}</em></p>` : ''
  if (ctx.inTable) {
    // A table inside a table cell: its rows as lines, cells separated by ' · ', inline markup
    // and links kept, blocks flattened.
    const lines = rows.map((r) =>
      childElements(r)
        .filter((c) => c.name === 'td' || c.name === 'th')
        .map((c) => flattenBlocks(children(c.children, ctx, depth + 2)))
        .join(' · '),
    )
    return `${captionHtml}<p>${lines.join('<br>')}</p>`
  }
  const outer = ctx.inTable
  ctx.inTable = true
  const grid = rows.map((r) =>
    childElements(r)
      .filter((c) => c.name === 'td' || c.name === 'th')
      .map((c) => ({
        html: children(c.children, ctx, depth + 2),
        // Stryker disable next-line StringLiteral: parseInt('') is NaN, which span() reads as 1 like '1'
        colspan: Number.parseInt(c.attribs.colspan ?? '1', 10),
        // Stryker disable next-line StringLiteral: parseInt('') is NaN, which span() reads as 1 like '1'
        rowspan: Number.parseInt(c.attribs.rowspan ?? '1', 10),
      })),
  )
  ctx.inTable = outer
  const built = buildTable(grid, ctx.tableBudget)
  if (built === null) {
    // Its spans would multiply it past what a page may hold: its rows as lines, as a table in a
    // cell is, so no text is lost and the work stays linear in the page.
    ctx.warnings.push('a table too large to lay out as a grid kept as lines')
    const lines = grid.map((row) => row.map((cell) => flattenBlocks(cell.html)).join(' · '))
    return `${captionHtml}<p>${lines.join('<br>')}</p>`
  }
  ctx.tableBudget -= built.extra
  return captionHtml + built.html
}
