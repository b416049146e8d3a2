/**
 * An in-process stand-in for Confluence's REST API, serving one in-memory space (or a few, by the
 * pages' `spaceKey`) in the wire formats of shared/reference/confluence-rest.md: Cloud v2 (cursor
 * pagination) and v1 (offset pagination, `expand`), auth failures, 404 envelopes, and injectable
 * 429 / 503 / delay faults. Key sets follow the recorded querypie Cloud responses
 * (`page.v1.json`, `page.v2.json`); see tests/confluence-stand-in/stand-in.test.ts.
 *
 * URL layout (reference §1): `_links.base` is `url + contextPath`.
 * - Cloud (`deployment: 'cloud'`, the default): `contextPath` defaults to `/wiki`, so v1 is at
 *   `{url}/wiki/rest/api/…` and v2 at `{url}/wiki/api/v2/…`. The stand-in never adds `/wiki` itself:
 *   `contextPath: ''` serves `{url}/rest/api/…` and `{url}/api/v2/…`.
 * - DC (`deployment: 'dc'`): `contextPath` is `''` or e.g. `/confluence`; only v1 is served, and
 *   `{base}/api/v2/*` answers 404 (v2 is Cloud-only).
 * Relative links: v1 `_links.next`/`prev`/`webui` are relative to `_links.base`; v2 `_links.next`
 * and the `Link` header are relative to the origin (they start with `{contextPath}/api/v2/`).
 *
 * Choices not backed by a recorded response ([infer] in the reference):
 * - v2 cursors are base64 JSON of the last id served; pages are listed by ascending numeric id and
 *   the next page starts after that id, so edits and deletes during a walk neither skip nor repeat.
 *   A cursor that does not decode answers 400 `INVALID_REQUEST_PARAMETER` in the v2 envelope.
 * - Cloud 401 body is `{"code":401,"message":"Unauthorized"}` (the `{code,message}` shape of the
 *   reported scope error); DC 401 is Tomcat's HTML page "Basic Authentication Failure - Reason :
 *   AUTHENTICATED_FAILED" [report]. `forbidden` answers 403
 *   `{"message":"Basic Authentication has been disabled on this instance."}` [report, DC] in both modes.
 * - v2 404 body `{"errors":[{"status":404,"code":"NOT_FOUND","title":"Not Found","detail":null}]}`;
 *   v1 404 is the recorded v1 envelope ("No content found with id: ContentId{id=…}").
 * - 429 carries `Retry-After`, `X-RateLimit-*` and (Cloud) `RateLimit-Reason`; 503 carries no
 *   `Retry-After`. Faults are checked before auth; `rateLimit.every` counts every request received.
 * - v1 `limit` is clamped silently to 1000 and echoed; `body.view` repeats the storage XHTML.
 * - `GET /api/v2/pages?id=…` (bulk) lists the pages among those ids that exist, by ascending id,
 *   with the same cursor paging as the space listing (limit 1–250); unknown ids are left out.
 * - CQL search (`/rest/api/content/search`) understands a subset: fields `type`, `space`, `id`,
 *   `ancestor`, `parent`, `label` and `title`; operators `=`, `!=`, `in`, `not in` and `~` (title,
 *   case-insensitive substring); `AND`, `OR`, `NOT`, parentheses; a trailing `ORDER BY` is
 *   ignored. Results go by ascending id. Anything else answers 400 "Could not parse cql". `limit`
 *   is clamped silently to 50 with a body expansion, 200 with other expansions, 1000 without
 *   (the DC rule, applied to Cloud too). DC pages by offset (`start`); Cloud by a cursor in
 *   `next` (base64 JSON of the last id) and ignores `start`, as real Cloud search does.
 * - `faults` script answers per request (status, headers, body; or a connection reset, a request
 *   never answered, a 200 whose JSON body is cut in half), matched by path and consumed in order,
 *   before `failNext`, `rateLimit`, auth and routing.
 * - Each recorded request carries `at`, `performance.now()` when it arrived, so tests can measure
 *   the wait after a 429.
 * - Paging races, for tests: `onRequest` runs as each request arrives, before it is answered (a
 *   page deleted between two listing requests: the v1 offsets after it shift, as real ones do);
 *   `cursorOverlap` makes every v2 cursor page repeat the previous page's last N results (a
 *   cursor that points a little behind where the page ended), a fault real listings were seen
 *   to show.
 */
import { createHash } from 'node:crypto'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import type { Socket } from 'node:net'

export type StandInPage = {
  id: string
  title: string
  spaceKey: string
  parentId?: string
  version: number
  /** body.storage XHTML */
  storage: string
  labels?: string[]
  /** ISO time of the current version (v2 `version.createdAt`, v1 `version.when`). */
  updatedAt?: string
}

/** One scripted answer (see ConfluenceStandInOptions.faults). */
export type StandInFault = {
  /** Matched against `pathname + search`; unset matches every request. */
  path?: RegExp
  /** How many matching requests get it (default 1). */
  times?: number
  /**
   * `status` (default): answer `status` with `headers` and `body` (default a v1 error envelope).
   * `reset`: destroy the connection. `hang`: never answer (until close()). `truncate`: the real
   * answer's status and headers with only the first half of its body.
   */
  kind?: 'status' | 'reset' | 'hang' | 'truncate'
  status?: number
  headers?: Record<string, string | string[]>
  body?: string
}

export type StandInAuth =
  | { type: 'basic'; username: string; token: string }
  | { type: 'bearer'; token: string }

export type ConfluenceStandInOptions = {
  /** Mutable: edit (bump `version`), push and splice between requests. */
  pages: StandInPage[]
  /** Space keys that exist even without pages. Spaces of `pages` always exist. */
  spaceKeys: string[]
  deployment: 'cloud' | 'dc'
  /** Path part of `_links.base`: `/wiki` (Cloud default), `''` or `/confluence` (DC). */
  contextPath: string
  /** Unset: any request is accepted. */
  auth?: StandInAuth
  /** Every authenticated request answers 403. */
  forbidden: boolean
  /** Default `limit` of the list routes. */
  pageSize: number
  /** Every Nth request (counting all received) answers 429 with `Retry-After: retryAfterS`. */
  rateLimit?: { every: number; retryAfterS: number }
  /** The next N requests answer 503; decremented as they are served. */
  failNext: number
  /** Delay before answering every request. */
  delayMs: number
  /** Scripted answers, consumed in order (first match wins; see StandInFault). */
  faults: StandInFault[]
  /** Space names by key (default: the key). */
  spaceNames: Record<string, string>
  /**
   * Largest page any list route serves, whatever `limit` asks (v1 echoes it as its `limit`): how
   * tests see several pages of results from a client that asks for 200 or 250 [infer: Cloud may
   * also return fewer results than asked].
   */
  clampLimit?: number
  /** Ids the search index has not caught up with: left out of CQL results, served elsewhere. */
  unindexed: string[]
  /**
   * Spaces the user cannot see (access withdrawn): every route answers as though they and their
   * pages did not exist, as Confluence answers no view permission (v2 leaves them out, v1 says
   * 404; reference §2). Deleting a space is removing its pages (and its `spaceKeys` entry).
   */
  hiddenSpaces: string[]
  /** Serve HTTPS with this PEM key and certificate (read at start only). */
  tls?: { key: string; cert: string }
  /**
   * Called as each request arrives (after it is recorded, before it is answered): tests change
   * `options` between two requests of one walk.
   */
  onRequest?: (request: ConfluenceRecordedRequest) => void
  /** v2 list routes: each page after the first repeats the previous page's last N results. */
  cursorOverlap: number
}

export type ConfluenceRecordedRequest = {
  method: string
  path: string
  query: Record<string, string>
  headers: Record<string, string | string[] | undefined>
  /** performance.now() when the request arrived. */
  at: number
}

export type ConfluenceStandIn = {
  /** Origin, e.g. http://127.0.0.1:PORT (no trailing slash). */
  url: string
  /** `url + options.contextPath` as it was at start (what `_links.base` reports). */
  baseUrl: string
  /** Mutable: read when each request starts. */
  options: ConfluenceStandInOptions
  requests: ConfluenceRecordedRequest[]
  /** The v2 space id served for a key. */
  spaceId(key: string): string
  close(): Promise<void>
}

const DEFAULT_TIME = '2024-01-01T09:00:00.000Z'
const ACCOUNT_ID = '712020:00000000-0000-4000-8000-000000000001'
const V1_MAX_LIMIT = 1000
const V2_MAX_LIMIT = 250
const CLOUD_ID = '530d00f8-a0ee-42cf-8109-ec274eb5f47b'

/** v1 `_expandable` keys of a page, as in the recorded page.v1.json (ancestors included). */
const V1_EXPANDABLE = [
  'container',
  'metadata',
  'restrictions',
  'history',
  'body',
  'version',
  'descendants',
  'space',
  'childTypes',
  'schedulePublishInfo',
  'operations',
  'schedulePublishDate',
  'children',
  'ancestors',
  'draftVersion',
]

function stableNumber(text: string, min: number): string {
  const hex = createHash('sha256').update(text).digest('hex').slice(0, 8)
  return String(min + (Number.parseInt(hex, 16) % 900_000_000))
}

function slug(title: string): string {
  return encodeURIComponent(title.replace(/ /g, '+')).replace(/%2B/g, '+')
}

function compareIds(a: string, b: string): number {
  const x = BigInt(/^\d+$/.test(a) ? a : '0')
  const y = BigInt(/^\d+$/.test(b) ? b : '0')
  return x < y ? -1 : x > y ? 1 : a < b ? -1 : a > b ? 1 : 0
}

function encodeCursor(after: string): string {
  return Buffer.from(JSON.stringify({ after })).toString('base64')
}

/** The id a cursor points after, or undefined when it does not decode. */
function decodeCursor(cursor: string): string | undefined {
  try {
    const decoded = JSON.parse(Buffer.from(cursor, 'base64').toString('utf8')) as {
      after?: unknown
    }
    return typeof decoded.after === 'string' ? decoded.after : undefined
  } catch {
    return undefined
  }
}

type Reply = { status: number; body: string; headers?: Record<string, string | string[]> }

// ---------------------------------------------------------------------------------------------
// CQL subset (see the header comment)

type CqlToken = { kind: 'word' | 'string' | 'op' | 'open' | 'close' | 'comma'; text: string }
type CqlPredicate = (page: StandInPage) => boolean
/** Values of a CQL field for one page. */
export type CqlFields = Record<string, (page: StandInPage) => string[]>

function tokenizeCql(cql: string): CqlToken[] {
  const tokens: CqlToken[] = []
  let i = 0
  while (i < cql.length) {
    const ch = cql[i] as string
    if (/\s/.test(ch)) {
      i++
    } else if (ch === '"' || ch === "'") {
      let text = ''
      i++
      while (i < cql.length && cql[i] !== ch) {
        if (cql[i] === '\\') i++
        text += cql[i] ?? ''
        i++
      }
      if (i >= cql.length) throw new Error('unterminated string')
      i++
      tokens.push({ kind: 'string', text })
    } else if (ch === '(' || ch === ')' || ch === ',') {
      tokens.push({ kind: ch === '(' ? 'open' : ch === ')' ? 'close' : 'comma', text: ch })
      i++
    } else if (ch === '!' && cql[i + 1] === '=') {
      tokens.push({ kind: 'op', text: '!=' })
      i += 2
    } else if (ch === '=' || ch === '~') {
      tokens.push({ kind: 'op', text: ch })
      i++
    } else {
      const word = /^[A-Za-z0-9_.-]+/.exec(cql.slice(i))
      if (!word) throw new Error(`unexpected "${ch}"`)
      tokens.push({ kind: 'word', text: word[0] })
      i += word[0].length
    }
  }
  return tokens
}

/** Compiles the CQL subset into a predicate; throws on anything outside it. */
export function compileCql(cql: string, fields: CqlFields): CqlPredicate {
  const tokens = tokenizeCql(cql)
  let pos = 0
  const isWord = (token: CqlToken | undefined, word: string) =>
    token?.kind === 'word' && token.text.toLowerCase() === word
  const take = (kind: CqlToken['kind']): CqlToken => {
    const token = tokens[pos++]
    if (token?.kind !== kind) throw new Error(`expected ${kind} at token ${pos}`)
    return token
  }
  const value = (): string => {
    const token = tokens[pos++]
    if (token?.kind !== 'word' && token?.kind !== 'string') throw new Error('expected a value')
    return token.text
  }
  function clause(): CqlPredicate {
    const name = take('word').text.toLowerCase()
    const get = fields[name]
    if (!get) throw new Error(`unknown field ${name}`)
    let op: string
    const next = tokens[pos]
    if (next?.kind === 'op') {
      op = next.text
      pos++
    } else if (isWord(next, 'in')) {
      op = 'in'
      pos++
    } else if (isWord(next, 'not') && isWord(tokens[pos + 1], 'in')) {
      op = 'not in'
      pos += 2
    } else {
      throw new Error(`expected an operator after ${name}`)
    }
    const values: string[] = []
    if (op === 'in' || op === 'not in') {
      take('open')
      values.push(value())
      while (tokens[pos]?.kind === 'comma') {
        pos++
        values.push(value())
      }
      take('close')
    } else {
      values.push(value())
    }
    if (op === '~') {
      if (name !== 'title') throw new Error('~ only on title')
      const needle = (values[0] as string).toLowerCase()
      return (page) => page.title.toLowerCase().includes(needle)
    }
    const positive = op === '=' || op === 'in'
    return (page) => {
      const have = get(page)
      return values.some((v) => have.includes(v)) === positive
    }
  }
  function unary(): CqlPredicate {
    if (isWord(tokens[pos], 'not')) {
      pos++
      const inner = unary()
      return (page) => !inner(page)
    }
    if (tokens[pos]?.kind === 'open') {
      pos++
      const inner = or()
      take('close')
      return inner
    }
    return clause()
  }
  function and(): CqlPredicate {
    let left = unary()
    while (isWord(tokens[pos], 'and')) {
      pos++
      const a = left
      const b = unary()
      left = (page) => a(page) && b(page)
    }
    return left
  }
  function or(): CqlPredicate {
    let left = and()
    while (isWord(tokens[pos], 'or')) {
      pos++
      const a = left
      const b = and()
      left = (page) => a(page) || b(page)
    }
    return left
  }
  const predicate = or()
  if (isWord(tokens[pos], 'order') && isWord(tokens[pos + 1], 'by')) pos = tokens.length
  if (pos < tokens.length) throw new Error(`unexpected ${tokens[pos]?.text}`)
  return predicate
}

function json(status: number, value: unknown, headers: Record<string, string> = {}): Reply {
  return {
    status,
    body: JSON.stringify(value),
    headers: { 'content-type': 'application/json;charset=UTF-8', ...headers },
  }
}

function v1Error(status: number, reason: string, message: string): Reply {
  return json(status, {
    statusCode: status,
    data: {
      authorized: false,
      valid: true,
      allowedInReadOnlyMode: true,
      errors: [],
      successful: false,
    },
    message,
    reason,
  })
}

function v2Error(status: number, code: string, title: string, detail: string | null): Reply {
  return json(status, { errors: [{ status, code, title, detail }] })
}

function defaults(): ConfluenceStandInOptions {
  return {
    pages: [],
    spaceKeys: [],
    deployment: 'cloud',
    contextPath: '/wiki',
    forbidden: false,
    pageSize: 25,
    failNext: 0,
    delayMs: 0,
    faults: [],
    spaceNames: {},
    unindexed: [],
    hiddenSpaces: [],
    cursorOverlap: 0,
  }
}

export async function startConfluenceStandIn(
  options: Partial<ConfluenceStandInOptions> = {},
): Promise<ConfluenceStandIn> {
  const timers = new Set<NodeJS.Timeout>()
  const sockets = new Set<Socket>()
  let received = 0

  const initial: ConfluenceStandInOptions = { ...defaults(), ...options }
  if (options.deployment === 'dc' && options.contextPath === undefined) initial.contextPath = ''
  const standIn: ConfluenceStandIn = {
    url: '',
    baseUrl: '',
    options: initial,
    requests: [],
    spaceId: (key) => stableNumber(`space:${key}`, 100_000_000),
    async close() {
      for (const timer of timers) clearTimeout(timer)
      timers.clear()
      const closed = new Promise<void>((resolve) => server.close(() => resolve()))
      server.closeAllConnections()
      for (const socket of sockets) socket.destroy()
      await closed
    },
  }

  // ------------------------------------------------------------------------------------------
  // Shapes

  /** The pages the user can see (see hiddenSpaces). */
  function visiblePages(): StandInPage[] {
    return standIn.options.pages.filter(
      (page) => !standIn.options.hiddenSpaces.includes(page.spaceKey),
    )
  }

  function sortedPages(spaceKey: string): StandInPage[] {
    return visiblePages()
      .filter((page) => page.spaceKey === spaceKey)
      .sort((a, b) => compareIds(a.id, b.id))
  }

  function findPage(id: string): StandInPage | undefined {
    return visiblePages().find((page) => page.id === id)
  }

  function position(page: StandInPage): number {
    return standIn.options.pages.indexOf(page) + 1
  }

  function spaceName(key: string): string {
    return standIn.options.spaceNames[key] ?? key
  }

  function isCloud(): boolean {
    return standIn.options.deployment === 'cloud'
  }

  function webui(page: StandInPage): string {
    return isCloud()
      ? `/spaces/${page.spaceKey}/pages/${page.id}/${slug(page.title)}`
      : `/pages/viewpage.action?pageId=${page.id}`
  }

  function tinyui(page: StandInPage): string {
    return `/x/${Buffer.from(page.id).toString('base64url')}`
  }

  function v2Page(page: StandInPage, bodyFormat: string | undefined, single: boolean) {
    const links: Record<string, string> = {
      editui: `/pages/resumedraft.action?draftId=${page.id}`,
      webui: webui(page),
      edituiv2: `/spaces/${page.spaceKey}/pages/edit-v2/${page.id}`,
      tinyui: tinyui(page),
    }
    if (single) links.base = base()
    const parent = page.parentId !== undefined ? findPage(page.parentId) : undefined
    return {
      parentType: parent ? 'page' : null,
      parentId: parent ? parent.id : null,
      ownerId: ACCOUNT_ID,
      createdAt: DEFAULT_TIME,
      lastOwnerId: null,
      authorId: ACCOUNT_ID,
      position: position(page),
      version: {
        number: page.version,
        message: '',
        minorEdit: false,
        authorId: ACCOUNT_ID,
        createdAt: page.updatedAt ?? DEFAULT_TIME,
        ncsStepVersion: String(page.version),
      },
      id: page.id,
      body:
        bodyFormat === 'storage'
          ? { storage: { representation: 'storage', value: page.storage } }
          : {},
      status: 'current',
      spaceId: standIn.spaceId(page.spaceKey),
      title: page.title,
      _links: links,
    }
  }

  function base(): string {
    return `${standIn.url}${standIn.options.contextPath}`
  }

  function v1Links(page: StandInPage) {
    return {
      self: `${base()}/rest/api/content/${page.id}`,
      tinyui: tinyui(page),
      editui: `/pages/resumedraft.action?draftId=${page.id}`,
      webui: webui(page),
      edituiv2: `/spaces/${page.spaceKey}/pages/edit-v2/${page.id}`,
    }
  }

  function v1Expandable(page: StandInPage, expanded: Set<string>): Record<string, string> {
    const out: Record<string, string> = {}
    const paths: Record<string, string> = {
      container: `/rest/api/space/${page.spaceKey}`,
      space: `/rest/api/space/${page.spaceKey}`,
      restrictions: `/rest/api/content/${page.id}/restriction/byOperation`,
      history: `/rest/api/content/${page.id}/history`,
      descendants: `/rest/api/content/${page.id}/descendant`,
      children: `/rest/api/content/${page.id}/child`,
    }
    for (const key of V1_EXPANDABLE) if (!expanded.has(key)) out[key] = paths[key] ?? ''
    return out
  }

  function ancestorsOf(page: StandInPage): StandInPage[] {
    const chain: StandInPage[] = []
    const seen = new Set([page.id])
    let parent = page.parentId !== undefined ? findPage(page.parentId) : undefined
    while (parent && !seen.has(parent.id)) {
      chain.unshift(parent)
      seen.add(parent.id)
      parent = parent.parentId !== undefined ? findPage(parent.parentId) : undefined
    }
    return chain
  }

  function v1Identity(page: StandInPage) {
    const out: Record<string, unknown> = { id: page.id, type: 'page' }
    if (isCloud()) {
      const ari = `ari:cloud:confluence:${CLOUD_ID}:page/${page.id}`
      out.ari = ari
      out.base64EncodedAri = Buffer.from(ari).toString('base64')
    }
    out.status = 'current'
    out.title = page.title
    return out
  }

  function v1Version(page: StandInPage) {
    const by = isCloud()
      ? {
          type: 'known',
          accountId: ACCOUNT_ID,
          accountType: 'atlassian',
          email: '',
          publicName: 'Stand-in User',
          displayName: 'Stand-in User',
          isExternalCollaborator: false,
          isGuest: false,
          accountStatus: 'active',
        }
      : { type: 'known', username: 'standin', userKey: 'standin-key', displayName: 'Stand-in User' }
    const when = page.updatedAt ?? DEFAULT_TIME
    return {
      by,
      when,
      friendlyWhen: when.slice(0, 10),
      message: '',
      number: page.version,
      minorEdit: false,
      confRev: `confluence$content$${page.id}.${page.version}`,
      contentTypeModified: false,
      _expandable: { collaborators: '', content: `/rest/api/content/${page.id}` },
      _links: { self: `${base()}/rest/api/content/${page.id}/version/${page.version}` },
    }
  }

  function v1Space(key: string) {
    return {
      id: Number(standIn.spaceId(key)),
      key,
      name: spaceName(key),
      type: 'global',
      status: 'current',
      _expandable: {
        settings: `/rest/api/space/${key}/settings`,
        metadata: '',
        operations: '',
        lookAndFeel: `/rest/api/settings/lookandfeel?spaceKey=${key}`,
        identifiers: '',
        permissions: '',
        icon: '',
        description: '',
        theme: `/rest/api/space/${key}/theme`,
        history: '',
        homepage: '',
      },
      _links: {
        webui: isCloud() ? `/spaces/${key}` : `/display/${key}`,
        self: `${base()}/rest/api/space/${key}`,
      },
    }
  }

  function v1Page(page: StandInPage, expand: Set<string>, single: boolean) {
    const roots = new Set([...expand].map((path) => path.split('.')[0] as string))
    const out = v1Identity(page)
    if (roots.has('space')) out.space = v1Space(page.spaceKey)
    if (roots.has('version')) out.version = v1Version(page)
    if (roots.has('ancestors')) {
      out.ancestors = ancestorsOf(page).map((ancestor) => ({
        ...v1Identity(ancestor),
        macroRenderedOutput: {},
        extensions: { position: position(ancestor) },
        _expandable: v1Expandable(ancestor, new Set()),
        _links: v1Links(ancestor),
      }))
    }
    if (roots.has('metadata')) {
      const labels = (page.labels ?? []).map((name) => ({
        prefix: 'global',
        name,
        id: stableNumber(`label:${name}`, 100_000_000),
        label: name,
      }))
      out.metadata = expand.has('metadata.labels')
        ? {
            labels: {
              results: labels,
              start: 0,
              limit: 200,
              size: labels.length,
              _links: { self: `${base()}/rest/api/content/${page.id}/label` },
            },
            _expandable: {
              currentuser: '',
              comments: '',
              simple: '',
              properties: '',
              frontend: '',
            },
          }
        : { _expandable: { labels: `/rest/api/content/${page.id}/label` } }
    }
    out.macroRenderedOutput = {}
    if (roots.has('body')) {
      const body: Record<string, unknown> = {}
      const formats = ['storage', 'view'].filter((format) => expand.has(`body.${format}`))
      for (const format of formats) {
        body[format] = {
          value: page.storage,
          representation: format,
          embeddedContent: [],
          _expandable: { content: `/rest/api/content/${page.id}` },
        }
      }
      const other: Record<string, string> = {}
      for (const format of [
        'editor',
        'atlas_doc_format',
        'view',
        'export_view',
        'styled_view',
        'dynamic',
        'storage',
        'editor2',
        'anonymous_export_view',
      ]) {
        if (!formats.includes(format)) other[format] = ''
      }
      body._expandable = other
      out.body = body
    }
    out.extensions = { position: position(page) }
    out._expandable = v1Expandable(page, roots)
    out._links = single
      ? {
          ...v1Links(page),
          context: standIn.options.contextPath,
          collection: '/rest/api/content',
          base: base(),
        }
      : v1Links(page)
    return out
  }

  // ------------------------------------------------------------------------------------------
  // Routes

  function parseLimit(query: URLSearchParams, max: number): number | undefined {
    const raw = query.get('limit')
    if (raw === null || raw === '') return clamp(standIn.options.pageSize)
    const limit = Number(raw)
    if (!Number.isInteger(limit) || limit < 1) return undefined
    return clamp(Math.min(limit, max))
  }

  function clamp(limit: number): number {
    return Math.min(limit, standIn.options.clampLimit ?? limit)
  }

  function v2SpacePages(spaceId: string, query: URLSearchParams): Reply {
    const key = knownSpaces().find((candidate) => standIn.spaceId(candidate) === spaceId)
    if (key === undefined) return v2Error(404, 'NOT_FOUND', 'Not Found', null)
    return v2List(sortedPages(key), query, `/api/v2/spaces/${spaceId}/pages`, [])
  }

  /** `GET /api/v2/pages`: every page, or those among `id=1,2,3` (unknown ids left out). */
  function v2Pages(query: URLSearchParams): Reply {
    const raw = query.get('id')
    const ids = raw === null ? undefined : new Set(raw.split(',').filter((id) => id !== ''))
    const pages = visiblePages()
      .filter((page) => ids === undefined || ids.has(page.id))
      .sort((a, b) => compareIds(a.id, b.id))
    return v2List(pages, query, '/api/v2/pages', ['id'])
  }

  /** One cursor page of `pages` (sorted by id); `keep` names query parameters `next` repeats. */
  function v2List(
    pages: StandInPage[],
    query: URLSearchParams,
    route: string,
    keep: string[],
  ): Reply {
    const raw = query.get('limit')
    const limit = raw === null ? standIn.options.pageSize : Number(raw)
    if (!Number.isInteger(limit) || limit < 1 || limit > V2_MAX_LIMIT) {
      return v2Error(
        400,
        'INVALID_REQUEST_PARAMETER',
        `Provided value {${raw}} for 'limit' is not the correct type. Expected type is int between 1 and ${V2_MAX_LIMIT}`,
        null,
      )
    }
    let after: string | undefined
    const cursor = query.get('cursor')
    if (cursor !== null) {
      after = decodeCursor(cursor)
      if (after === undefined) {
        return v2Error(
          400,
          'INVALID_REQUEST_PARAMETER',
          "Provided value for 'cursor' is not the correct type.",
          'The provided cursor was not valid.',
        )
      }
    }
    const bodyFormat = query.get('body-format') ?? undefined
    if (bodyFormat !== undefined && bodyFormat !== 'storage' && bodyFormat !== 'atlas_doc_format') {
      return v2Error(
        400,
        'INVALID_REQUEST_PARAMETER',
        `Provided value {${bodyFormat}} for 'body-format' is not the correct type.`,
        null,
      )
    }
    const all = pages.filter((page) => after === undefined || compareIds(page.id, after) > 0)
    const slice = all.slice(0, clamp(limit))
    const links: Record<string, string> = { base: base() }
    const headers: Record<string, string> = {}
    const last = slice.at(-1)
    if (last && all.length > slice.length) {
      const next = new URLSearchParams()
      // An overlap points the cursor back, never before the page's own first result.
      const back = Math.min(standIn.options.cursorOverlap, slice.length - 1)
      next.set('cursor', encodeCursor((slice[slice.length - 1 - back] as StandInPage).id))
      next.set('limit', String(limit))
      for (const name of keep) {
        const value = query.get(name)
        if (value !== null) next.set(name, value)
      }
      if (bodyFormat !== undefined) next.set('body-format', bodyFormat)
      links.next = `${standIn.options.contextPath}${route}?${next}`
      headers.link = `<${links.next}>; rel="next", <${base()}>; rel="base"`
    }
    return json(
      200,
      { results: slice.map((page) => v2Page(page, bodyFormat, false)), _links: links },
      headers,
    )
  }

  function knownSpaces(): string[] {
    const keys = new Set(standIn.options.spaceKeys)
    for (const page of standIn.options.pages) keys.add(page.spaceKey)
    return [...keys].filter((key) => !standIn.options.hiddenSpaces.includes(key))
  }

  function v2Space(key: string) {
    const home = sortedPages(key).find((page) => page.parentId === undefined)
    return {
      id: standIn.spaceId(key),
      key,
      name: spaceName(key),
      type: 'global',
      status: 'current',
      authorId: ACCOUNT_ID,
      createdAt: DEFAULT_TIME,
      homepageId: home ? home.id : null,
      _links: { webui: `/spaces/${key}` },
    }
  }

  function routeV2(rest: string, query: URLSearchParams): Reply {
    if (rest === '/pages') return v2Pages(query)
    if (rest === '/spaces') {
      const wanted = (query.get('keys') ?? '').split(',').filter((key) => key !== '')
      const spaces = knownSpaces().filter((key) => wanted.length === 0 || wanted.includes(key))
      return json(200, { results: spaces.map(v2Space), _links: { base: base() } })
    }
    let match = /^\/spaces\/([^/]+)\/pages$/.exec(rest)
    if (match) return v2SpacePages(decodeURIComponent(match[1] as string), query)
    match = /^\/pages\/([^/]+)(\/labels)?$/.exec(rest)
    if (match) {
      const page = findPage(decodeURIComponent(match[1] as string))
      if (!page) return v2Error(404, 'NOT_FOUND', 'Not Found', null)
      if (match[2]) {
        const results = (page.labels ?? []).map((name) => ({
          id: stableNumber(`label:${name}`, 100_000_000),
          name,
          prefix: 'global',
        }))
        return json(200, { results, _links: { base: base() } })
      }
      return json(200, v2Page(page, query.get('body-format') ?? undefined, true))
    }
    return v2Error(404, 'NOT_FOUND', 'Not Found', null)
  }

  function parseExpand(query: URLSearchParams): Set<string> {
    return new Set(
      (query.get('expand') ?? '')
        .split(',')
        .map((path) => path.trim())
        .filter((path) => path !== ''),
    )
  }

  function routeV1(rest: string, query: URLSearchParams): Reply {
    if (rest === '/content') {
      const limit = parseLimit(query, V1_MAX_LIMIT)
      const start = Number(query.get('start') ?? '0')
      if (limit === undefined || !Number.isInteger(start) || start < 0) {
        return v1Error(400, 'Bad Request', 'Invalid start or limit')
      }
      const type = query.get('type') ?? 'page'
      const spaceKey = query.get('spaceKey')
      const all =
        type !== 'page'
          ? []
          : spaceKey === null
            ? visiblePages().sort((a, b) => compareIds(a.id, b.id))
            : sortedPages(spaceKey)
      const expand = parseExpand(query)
      const slice = all.slice(start, start + limit)
      const links: Record<string, string> = {
        base: base(),
        context: standIn.options.contextPath,
        self: `${base()}/rest/api/content`,
      }
      const nav = (at: number) => {
        const params = new URLSearchParams()
        params.set('next', 'true')
        params.set('limit', String(limit))
        params.set('start', String(at))
        for (const [name, value] of query) {
          if (name !== 'start' && name !== 'limit' && name !== 'next') params.set(name, value)
        }
        return `/rest/api/content?${params}`
      }
      if (start + limit < all.length) links.next = nav(start + limit)
      if (start > 0) links.prev = nav(Math.max(0, start - limit))
      return json(200, {
        results: slice.map((page) => v1Page(page, expand, false)),
        start,
        limit,
        size: slice.length,
        _links: links,
      })
    }
    if (rest === '/content/search') return v1Search(query)
    const space = /^\/space\/([^/]+)$/.exec(rest)
    if (space) {
      const key = decodeURIComponent(space[1] as string)
      if (!knownSpaces().includes(key)) {
        return v1Error(404, 'Not Found', `No space found with key : ${key}`)
      }
      return json(200, {
        ...v1Space(key),
        _links: { ...v1Space(key)._links, base: base(), context: standIn.options.contextPath },
      })
    }
    const match = /^\/content\/([^/]+)$/.exec(rest)
    if (match) {
      const id = decodeURIComponent(match[1] as string)
      const page = findPage(id)
      if (!page) return v1Error(404, 'Not Found', `No content found with id: ContentId{id=${id}}`)
      return json(200, v1Page(page, parseExpand(query), true))
    }
    return v1Error(404, 'Not Found', `null for uri: ${base()}/rest/api${rest}`)
  }

  const cqlFields: CqlFields = {
    type: () => ['page'],
    space: (page) => [page.spaceKey],
    id: (page) => [page.id],
    ancestor: (page) => ancestorsOf(page).map((ancestor) => ancestor.id),
    parent: (page) => (page.parentId === undefined ? [] : [page.parentId]),
    label: (page) => page.labels ?? [],
    title: (page) => [page.title],
  }

  /** v1 CQL search: DC pages by offset, Cloud by a cursor in `next` (start is ignored). */
  function v1Search(query: URLSearchParams): Reply {
    const cql = query.get('cql') ?? ''
    let predicate: CqlPredicate
    try {
      predicate = compileCql(cql, cqlFields)
    } catch (error) {
      return v1Error(
        400,
        'Bad Request',
        `Could not parse cql : ${cql} (${(error as Error).message})`,
      )
    }
    const expand = parseExpand(query)
    const cap = [...expand].some((path) => path.startsWith('body'))
      ? 50
      : expand.size > 0
        ? 200
        : V1_MAX_LIMIT
    const limit = parseLimit(query, cap)
    const requestedStart = Number(query.get('start') ?? '0')
    if (limit === undefined || !Number.isInteger(requestedStart) || requestedStart < 0) {
      return v1Error(400, 'Bad Request', 'Invalid start or limit')
    }
    const all = visiblePages()
      .sort((a, b) => compareIds(a.id, b.id))
      .filter((page) => !standIn.options.unindexed.includes(page.id) && predicate(page))
    let start = requestedStart
    const cursor = query.get('cursor')
    if (isCloud()) {
      const after = cursor === null ? undefined : decodeCursor(cursor)
      if (cursor !== null && after === undefined) {
        return v1Error(400, 'Bad Request', 'The provided cursor was not valid.')
      }
      const from = all.findIndex((page) => after === undefined || compareIds(page.id, after) > 0)
      start = from === -1 ? all.length : from
    }
    const slice = all.slice(start, start + limit)
    const links: Record<string, string> = {
      base: base(),
      context: standIn.options.contextPath,
      self: `${base()}/rest/api/content/search?${query}`,
    }
    const last = slice.at(-1)
    if (last && start + limit < all.length) {
      const params = new URLSearchParams()
      params.set('next', 'true')
      if (isCloud()) params.set('cursor', encodeCursor(last.id))
      params.set('limit', String(limit))
      params.set('start', String(start + limit))
      for (const name of ['cql', 'expand']) {
        const value = query.get(name)
        if (value !== null) params.set(name, value)
      }
      links.next = `/rest/api/content/search?${params}`
    }
    return json(200, {
      results: slice.map((page) => v1Page(page, expand, false)),
      start,
      limit,
      size: slice.length,
      totalSize: all.length,
      cqlQuery: cql,
      searchDuration: 1,
      _links: links,
    })
  }

  function authorized(header: string | undefined): boolean {
    const auth = standIn.options.auth
    if (!auth) return true
    if (auth.type === 'bearer') return header === `Bearer ${auth.token}`
    const expected = Buffer.from(`${auth.username}:${auth.token}`).toString('base64')
    return header === `Basic ${expected}`
  }

  function unauthorized(): Reply {
    if (isCloud()) {
      return json(
        401,
        { code: 401, message: 'Unauthorized' },
        { 'www-authenticate': 'Basic realm="Protected"' },
      )
    }
    return {
      status: 401,
      headers: {
        'content-type': 'text/html;charset=utf-8',
        'x-seraph-loginreason': 'AUTHENTICATED_FAILED',
        'www-authenticate': 'OAuth realm="http%3A%2F%2F127.0.0.1"',
      },
      body:
        '<!doctype html><html lang="en"><head><title>HTTP Status 401 – Unauthorized</title></head>' +
        '<body><h1>HTTP Status 401 – Unauthorized</h1><hr class="line" /><p><b>Type</b> Status Report</p>' +
        '<p><b>Message</b> Basic Authentication Failure - Reason : AUTHENTICATED_FAILED</p>' +
        '<p><b>Description</b> The request has not been applied to the target resource because it lacks valid authentication credentials for that resource.</p>' +
        '<hr class="line" /><h3>Apache Tomcat/9.0.75</h3></body></html>',
    }
  }

  function answer(req: IncomingMessage, path: string, query: URLSearchParams): Reply {
    received++
    const opts = standIn.options
    if (opts.failNext > 0) {
      opts.failNext--
      return {
        status: 503,
        headers: { 'content-type': 'text/html' },
        body: '<html><body><h1>503 Service Unavailable</h1>No server is available to handle this request.</body></html>',
      }
    }
    if (opts.rateLimit && opts.rateLimit.every > 0 && received % opts.rateLimit.every === 0) {
      const headers: Record<string, string> = {
        'retry-after': String(opts.rateLimit.retryAfterS),
        'x-ratelimit-limit': String(opts.rateLimit.every - 1),
        'x-ratelimit-remaining': '0',
      }
      if (isCloud()) headers['ratelimit-reason'] = 'confluence-quota-tenant-based'
      return json(429, { message: 'Rate limit exceeded.' }, headers)
    }
    if (!authorized(req.headers.authorization)) return unauthorized()
    if (opts.forbidden) {
      return json(403, { message: 'Basic Authentication has been disabled on this instance.' })
    }
    if (req.method !== 'GET') return v1Error(405, 'Method Not Allowed', 'Method Not Allowed')
    const context = opts.contextPath
    if (!path.startsWith(`${context}/`)) return v1Error(404, 'Not Found', `null for uri: ${path}`)
    const rest = path.slice(context.length)
    if (rest.startsWith('/rest/api/')) return routeV1(rest.slice('/rest/api'.length), query)
    if (rest.startsWith('/api/v2/') && isCloud())
      return routeV2(rest.slice('/api/v2'.length), query)
    return v1Error(404, 'Not Found', `null for uri: ${path}`)
  }

  /** The first scripted fault matching this request, counted down (and dropped at zero). */
  function takeFault(target: string): StandInFault | undefined {
    const faults = standIn.options.faults
    const index = faults.findIndex((fault) => !fault.path || fault.path.test(target))
    if (index === -1) return undefined
    const fault = faults[index] as StandInFault
    const left = (fault.times ?? 1) - 1
    if (left <= 0) faults.splice(index, 1)
    else fault.times = left
    return fault
  }

  function onRequest(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url as string, 'http://stand-in')
    const recorded: ConfluenceRecordedRequest = {
      method: req.method as string,
      path: url.pathname,
      query: Object.fromEntries(url.searchParams),
      headers: { ...req.headers },
      at: performance.now(),
    }
    standIn.requests.push(recorded)
    standIn.options.onRequest?.(recorded)
    const send = () => {
      const fault = takeFault(`${url.pathname}${url.search}`)
      if (fault?.kind === 'reset') {
        received++
        req.socket.destroy()
        return
      }
      if (fault?.kind === 'hang') {
        received++
        return
      }
      let reply: Reply
      if (fault !== undefined && fault.kind !== 'truncate') {
        received++
        reply = {
          status: fault.status ?? 500,
          headers: { 'content-type': 'application/json;charset=UTF-8', ...fault.headers },
          body:
            fault.body ??
            JSON.stringify({ statusCode: fault.status ?? 500, message: 'Scripted fault' }),
        }
      } else {
        try {
          reply = answer(req, url.pathname, url.searchParams)
        } catch (error) {
          reply = v1Error(500, 'Internal Server Error', String(error))
        }
        if (fault?.kind === 'truncate') {
          reply = { ...reply, body: reply.body.slice(0, Math.floor(reply.body.length / 2)) }
        }
      }
      res.writeHead(reply.status, reply.headers ?? {})
      res.end(reply.body)
    }
    req.resume()
    const delay = standIn.options.delayMs
    if (delay > 0) {
      const timer = setTimeout(() => {
        timers.delete(timer)
        send()
      }, delay)
      timers.add(timer)
    } else {
      send()
    }
  }

  const server = initial.tls
    ? createHttpsServer({ key: initial.tls.key, cert: initial.tls.cert }, onRequest)
    : createServer(onRequest)
  server.on('connection', (socket: Socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('no TCP address')
  standIn.url = `${initial.tls ? 'https' : 'http'}://127.0.0.1:${address.port}`
  standIn.baseUrl = base()
  return standIn
}
