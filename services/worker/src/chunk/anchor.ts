// Heading text and the anchors Confluence gives headings, so a chunk can link to its section.

const PUNCTUATION = /[!-/:-@[-`{-~]/g
const PROTECTED = /[\ue000-\ue07f]/g
const MARKUP = /[`\\[<*_~]/

// ASCII punctuation that must survive the markup stripping (escaped with a backslash, or inside a
// code span) is parked in the private use area and brought back at the end.
function protect(text: string): string {
  return text.replace(PUNCTUATION, (ch) => String.fromCharCode(0xe000 + ch.charCodeAt(0)))
}

/**
 * The plain text of a heading's markdown, as Confluence displays it: code ticks, emphasis,
 * links, images and HTML tags removed, backslash escapes resolved, whitespace collapsed.
 * `**Bold** [link](x)` → `Bold link`.
 */
export function headingText(markdown: string): string {
  if (!MARKUP.test(markdown)) return markdown.replace(/\s+/g, ' ').trim()
  return markdown
    .replace(/(`+)(.+?)\1/g, (_, _ticks: string, code: string) => protect(code))
    .replace(/\\([!-/:-@[-`{-~])/g, (_, ch: string) => protect(ch))
    .replace(/!?\[([^\]]*)\](?:\([^)]*\)|\[[^\]]*\])/g, '$1')
    .replace(/<\/?[A-Za-z][^>]*>/g, '')
    .replace(/(\*\*|__|~~)(?=\S)(.+?)(?<=\S)\1/g, '$2')
    .replace(/\*(?=\S)(.+?)(?<=\S)\*/g, '$1')
    .replace(/(^|[^\p{L}\p{N}_])_(?=\S)(.+?)(?<=\S)_(?![\p{L}\p{N}_])/gu, '$1$2')
    .replace(PROTECTED, (ch) => String.fromCharCode(ch.charCodeAt(0) - 0xe000))
    .replace(/\s+/g, ' ')
    .trim()
}

/**
 * The URL fragment (without `#`) of a heading on a Confluence page, from the heading's markdown.
 * - `cloud` (Confluence Cloud): the heading text with each space replaced by `-`, every other
 *   character kept, URL-encoded: `API & SDKs` → `API-%26-SDKs`.
 * - `server` (Server / Data Center): `<page title>-<heading text>` with all whitespace removed
 *   from both, URL-encoded: page `My Page`, heading `Getting Started` → `MyPage-GettingStarted`.
 * A heading repeated on one page gets the same anchor each time (Confluence may tell repeats apart;
 * we do not try), so a link to a repeat lands on the first one.
 */
export function headingAnchor(
  heading: string,
  pageTitle: string,
  style: 'cloud' | 'server',
): string {
  return anchorOf(headingText(heading), pageTitle, style)
}

/** headingAnchor for a heading's plain text (from headingText). */
export function anchorOf(text: string, pageTitle: string, style: 'cloud' | 'server'): string {
  if (style === 'server') {
    return encodeURIComponent(`${pageTitle.replace(/\s+/g, '')}-${text.replace(/\s+/g, '')}`)
  }
  return encodeURIComponent(text.replaceAll(' ', '-'))
}
