// Answers as HTML: markdown through marked, then DOMPurify, so neither a page's text nor a
// model's answer can put a script, a handler or a foreign resource into the page. Citations
// [n] become links to the cited section; every value from the api is set as text, never as HTML.

import { Marked } from '/vendor/marked.js'
import DOMPurify from '/vendor/purify.js'

// Headings in an answer sit below the page's own (h1 page, h2 section, h3 message).
const markdown = new Marked({ gfm: true, async: false })
markdown.use({
  renderer: {
    heading({ tokens, depth }) {
      const level = Math.min(6, depth + 3)
      return `<h${level}>${this.parser.parseInline(tokens)}</h${level}>\n`
    },
  },
})

/** Only web links are followed; anything else (javascript:, data:, relative) is no link. */
export const isWebUrl = (value) => /^https?:\/\//i.test(String(value ?? ''))

// Elements an answer has no use for, and that could fetch, submit or draw over the page.
const FORBID_TAGS = [
  'img',
  'picture',
  'video',
  'audio',
  'source',
  'svg',
  'math',
  'iframe',
  'object',
  'embed',
  'form',
  'input',
  'button',
  'textarea',
  'select',
  'style',
  'link',
  'meta',
  'base',
]

DOMPurify.addHook('afterSanitizeAttributes', (node) => {
  if (node.tagName !== 'A') return
  if (!isWebUrl(node.getAttribute('href'))) {
    node.removeAttribute('href')
    return
  }
  node.setAttribute('target', '_blank')
  node.setAttribute('rel', 'noopener noreferrer')
})

/** A link that opens in a new tab without giving that tab a handle on this page. */
export function externalLink(url, text) {
  const a = document.createElement('a')
  a.href = url
  a.target = '_blank'
  a.rel = 'noopener noreferrer'
  a.textContent = text
  return a
}

const CITATION = /\[(\d+(?:\s*,\s*\d+)*)\]/g
const HAS_CITATION = /\[\d+(?:\s*,\s*\d+)*\]/

/** Replaces [n] (and [n, m]) in the text of `root` with links to those sources. */
function linkCitations(root, sources) {
  const byNumber = new Map(sources.filter((s) => isWebUrl(s.url)).map((s) => [s.n, s]))
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT, {
    acceptNode: (node) =>
      (node.parentElement?.closest('a, code, pre') ?? null) === null && HAS_CITATION.test(node.data)
        ? NodeFilter.FILTER_ACCEPT
        : NodeFilter.FILTER_REJECT,
  })
  const found = []
  for (let node = walker.nextNode(); node !== null; node = walker.nextNode()) found.push(node)
  for (const node of found) {
    const parts = []
    let last = 0
    for (const match of node.data.matchAll(CITATION)) {
      const numbers = match[1].split(',').map((n) => Number(n.trim()))
      if (!numbers.every((n) => byNumber.has(n))) continue
      parts.push(node.data.slice(last, match.index), '[')
      numbers.forEach((n, i) => {
        const source = byNumber.get(n)
        const a = externalLink(source.url, String(n))
        a.className = 'cite'
        a.setAttribute('aria-label', `Source ${n}: ${source.title}`)
        if (i > 0) parts.push(', ')
        parts.push(a)
      })
      parts.push(']')
      last = match.index + match[0].length
    }
    if (parts.length === 0) continue
    parts.push(node.data.slice(last))
    node.replaceWith(...parts)
  }
}

/** Renders an answer's markdown into `container`, sanitised, its citations linked. */
export function renderAnswer(container, text, sources) {
  const fragment = DOMPurify.sanitize(markdown.parse(text), {
    RETURN_DOM_FRAGMENT: true,
    FORBID_TAGS,
    FORBID_ATTR: ['style'],
  })
  linkCitations(fragment, sources)
  container.replaceChildren(fragment)
}

const day = (iso) => {
  const date = new Date(iso)
  return Number.isNaN(date.getTime())
    ? ''
    : date.toLocaleDateString(undefined, { year: 'numeric', month: 'short', day: 'numeric' })
}

/** The sources list of an answer: title (a link to the section), breadcrumb, space, date. */
export function renderSources(list, sources) {
  list.replaceChildren(
    ...sources.map((source) => {
      const item = document.createElement('li')
      item.value = source.n
      item.className = source.cited ? 'source cited' : 'source'
      const title = isWebUrl(source.url)
        ? externalLink(source.url, source.title)
        : document.createElement('span')
      if (!isWebUrl(source.url)) title.textContent = source.title
      title.classList.add('source-title')
      const where = document.createElement('span')
      where.className = 'source-where'
      // The breadcrumb runs from the space to the section (its heading path included).
      where.textContent = source.breadcrumb || source.heading_path
      const meta = document.createElement('span')
      meta.className = 'source-meta'
      const space = document.createElement('span')
      space.textContent = `Space ${source.space}`
      const updated = document.createElement('time')
      updated.dateTime = source.updated_at
      updated.textContent = `updated ${day(source.updated_at)}`
      meta.append(space, ' · ', updated)
      if (source.cited) {
        const mark = document.createElement('strong')
        mark.className = 'cited-mark'
        mark.textContent = 'cited'
        meta.append(' · ', mark)
      }
      item.append(title, where, meta)
      return item
    }),
  )
}
