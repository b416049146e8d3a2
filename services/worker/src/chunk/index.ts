// The chunker: splits the markdown of one Confluence page into chunks sized in tokens for the
// embedding model, each carrying where it sits on the page (heading path, breadcrumb, section
// link). A pure function of its arguments: no I/O, same input → same chunks and ids.
//
// 1. The page is cut into sections at ATX headings (`#`–`######`; lines in fences are code). A
//    first heading that repeats the page title (before any content) belongs to no section path.
// 2. A section with only its heading line (an empty `## Setup` right before `### Linux`) is
//    folded into the next section, so its line tops that section's first chunk; at the end of the
//    page it is folded into the previous section instead.
// 3. A section (with the headings folded into it) that fits in maxTokens is one chunk. Adjacent
//    small sections — each at most maxTokens / 4 — are merged into one chunk up to maxTokens while
//    they stay under the parent of the first one (siblings and their children; top-level sections
//    and the intro share the page as parent). Every heading line stays in the text.
// 4. A bigger section is packed into several chunks by ./pack.ts (blocks, then lines,
//    sentences, words; code and tables re-fenced / re-headed; overlap inside the section only).
// Metadata: a chunk that holds the heading lines of several sections (steps 2 and 3) gets their
// common heading path and a sectionUrl pointing at its first heading; any other chunk gets its
// section's heading path and the anchor of its innermost heading.
import { anchorOf, headingText } from './anchor.ts'
import { type Block, parseSections } from './markdown.ts'
import { packSection } from './pack.ts'
import { estimateTokens } from './tokens.ts'

export { headingAnchor, headingText } from './anchor.ts'
export { estimateTokens } from './tokens.ts'

export type PageRef = {
  pageId: string
  title: string
  /** The page's URL, e.g. https://acme.atlassian.net/wiki/spaces/ENG/pages/123/Title */
  url: string
  /** Space name or key, the first element of the breadcrumb. */
  space: string
  /** Ancestor page titles, root first. */
  ancestors: string[]
}

export type ChunkOptions = {
  /** Upper bound of estimateTokens(chunk.text), default 400. */
  maxTokens: number
  /** Text shared by consecutive chunks of one section, default 40 (maxTokens / 10 if smaller). */
  overlapTokens: number
  /** Heading anchors of Confluence Cloud or of Server / Data Center, default 'cloud'. */
  anchorStyle: 'cloud' | 'server'
}

export type Chunk = {
  /** chunkId(pageId, position) */
  id: string
  pageId: string
  /** 0-based order in the page. */
  position: number
  /** Headings above this chunk, outermost first, without the page title. */
  headingPath: string[]
  /** [space, ...ancestors, title, ...headingPath] */
  breadcrumb: string[]
  /** breadcrumb joined with ' › ' */
  breadcrumbText: string
  /** The page URL + '#' + the anchor of the chunk's heading; just the page URL without one. */
  sectionUrl: string
  /** The chunk's markdown, trimmed. */
  text: string
  /** estimateTokens(text) */
  tokens: number
}

export const DEFAULT_CHUNK_OPTIONS: Readonly<ChunkOptions> = Object.freeze({
  maxTokens: 400,
  overlapTokens: 40,
  anchorStyle: 'cloud',
})

/** `<pageId>-c<position>`: never digits only, and any ':' in the page id becomes '-'. */
export function chunkId(pageId: string, position: number): string {
  return `${pageId.replaceAll(':', '-')}-c${position}`
}

/** Where a heading sits: its path (outermost first, including itself) and its plain text. */
type Place = { path: string[]; heading: string | null }
/** One or more sections that are chunked together; places[0] is the first heading in it. */
type Unit = { places: Place[]; own: Place; blocks: Block[]; tokens: number }
type Draft = { text: string; place: Place }

export function chunkMarkdown(
  markdown: string,
  page: PageRef,
  options: Partial<ChunkOptions> = {},
): Chunk[] {
  const opts = resolveOptions(options)
  const drafts: Draft[] = []
  let group: Unit[] = []
  let groupTokens = 0
  let scope: string[] = []

  const endGroup = () => {
    if (group.length === 0) return
    const text = group
      .flatMap((unit) => unit.blocks.map((block) => block.text))
      .join('\n\n')
      .trim()
    drafts.push({ text, place: joinPlaces(group.flatMap((unit) => unit.places)) })
    group = []
  }

  for (const unit of foldSections(markdown, page)) {
    const small = unit.tokens <= opts.maxTokens / 4
    if (
      small &&
      group.length > 0 &&
      groupTokens + 2 + unit.tokens <= opts.maxTokens &&
      unit.places.every((place) => isUnder(place.path, scope))
    ) {
      group.push(unit)
      groupTokens += 2 + unit.tokens
      continue
    }
    endGroup()
    if (unit.tokens <= opts.maxTokens) {
      group = [unit]
      groupTokens = unit.tokens
      scope = (unit.places[0] as Place).path.slice(0, -1)
      if (!small) endGroup()
      continue
    }
    packSection(unit.blocks, opts).forEach((text, i) => {
      drafts.push({ text, place: i === 0 ? joinPlaces(unit.places) : unit.own })
    })
  }
  endGroup()

  const pageUrl = page.url.split('#')[0] as string
  const trail = [page.space, ...page.ancestors, page.title]
  return drafts.map(({ text, place }, position) => {
    const breadcrumb = [...trail, ...place.path]
    return {
      id: chunkId(page.pageId, position),
      pageId: page.pageId,
      position,
      headingPath: [...place.path],
      breadcrumb,
      breadcrumbText: breadcrumb.join(' › '),
      sectionUrl:
        place.heading === null
          ? pageUrl
          : `${pageUrl}#${anchorOf(place.heading, page.title, opts.anchorStyle)}`,
      text,
      tokens: estimateTokens(text),
    }
  })
}

function resolveOptions(options: Partial<ChunkOptions>): ChunkOptions {
  const maxTokens = options.maxTokens ?? DEFAULT_CHUNK_OPTIONS.maxTokens
  const opts: ChunkOptions = {
    maxTokens,
    // the default overlap is 40 tokens, or a tenth of a smaller maxTokens
    overlapTokens:
      options.overlapTokens ??
      Math.min(DEFAULT_CHUNK_OPTIONS.overlapTokens, Math.floor(maxTokens / 10)),
    anchorStyle: options.anchorStyle ?? DEFAULT_CHUNK_OPTIONS.anchorStyle,
  }
  if (!Number.isInteger(opts.maxTokens) || opts.maxTokens < 1) {
    throw new RangeError(`maxTokens must be a positive integer, got ${opts.maxTokens}`)
  }
  if (
    !Number.isInteger(opts.overlapTokens) ||
    opts.overlapTokens < 0 ||
    opts.overlapTokens >= opts.maxTokens
  ) {
    throw new RangeError(
      `overlapTokens must be an integer from 0 to maxTokens - 1, got ${opts.overlapTokens}`,
    )
  }
  if (opts.anchorStyle !== 'cloud' && opts.anchorStyle !== 'server') {
    throw new RangeError(`anchorStyle must be 'cloud' or 'server', got ${opts.anchorStyle}`)
  }
  return opts
}

/** Sections with their heading paths, heading-only sections folded (step 2). */
function foldSections(markdown: string, page: PageRef): Unit[] {
  const units: Unit[] = []
  const stack: { level: number; text: string }[] = []
  let folded: { place: Place; block: Block }[] = []
  const sections = parseSections(markdown)
  const [intro, first] = sections
  const titled =
    intro?.blocks.length === 0 &&
    first?.heading != null &&
    headingText(first.heading.markdown).toLowerCase() === page.title.trim().toLowerCase()

  sections.forEach((section, i) => {
    const { heading } = section
    let place: Place = { path: [], heading: null }
    const blocks = [...section.blocks]
    if (heading) {
      blocks.unshift({ kind: 'heading', text: heading.line, tokens: estimateTokens(heading.line) })
      if (!(titled && i === 1)) {
        while ((stack.at(-1)?.level ?? 0) >= heading.level) stack.pop()
        const text = headingText(heading.markdown)
        stack.push({ level: heading.level, text })
        place = { path: stack.map((entry) => entry.text), heading: text }
      }
    }
    if (section.blocks.length === 0) {
      if (heading) folded.push({ place, block: blocks[0] as Block })
      return
    }
    units.push(
      unitOf([...folded.map((entry) => entry.place), place], place, [
        ...folded.map((entry) => entry.block),
        ...blocks,
      ]),
    )
    folded = []
  })

  if (folded.length > 0) {
    const last = units.pop()
    const places = folded.map((entry) => entry.place)
    const blocks = folded.map((entry) => entry.block)
    units.push(
      last
        ? unitOf([...last.places, ...places], last.own, [...last.blocks, ...blocks])
        : unitOf(places, places.at(-1) as Place, blocks),
    )
  }
  return units
}

function unitOf(places: Place[], own: Place, blocks: Block[]): Unit {
  const tokens = blocks.reduce((sum, block) => sum + block.tokens, 2 * (blocks.length - 1))
  return { places, own, blocks, tokens }
}

/** The common heading path of several places, and the heading of the first one. */
function joinPlaces(places: Place[]): Place {
  const [first, ...rest] = places as [Place, ...Place[]]
  let path = first.path
  for (const { path: other } of rest) {
    let n = 0
    while (n < path.length && n < other.length && path[n] === other[n]) n++
    path = path.slice(0, n)
  }
  return { path, heading: first.heading }
}

/** True when `path` is strictly below `scope`. */
function isUnder(path: string[], scope: string[]): boolean {
  return path.length > scope.length && scope.every((text, i) => path[i] === text)
}
