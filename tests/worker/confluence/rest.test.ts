import { UnrecoverableError } from 'bullmq'
import { Redis } from 'ioredis'
import t, { type Test } from 'tap'
import { MISSING } from '../../../services/worker/src/confluence/bodies.ts'
import { type ConfluenceError, isFatal } from '../../../services/worker/src/confluence/errors.ts'
import { confirmGone } from '../../../services/worker/src/confluence/gone.ts'
import {
  openRestSource,
  type RestSourceDeps,
} from '../../../services/worker/src/confluence/open.ts'
import type {
  ConfluenceSource,
  PageBody,
  PageFailure,
  PageRef,
  SourceSpec,
} from '../../../services/worker/src/confluence/types.ts'
import { captureLog, failure } from '../../helpers/capture.ts'
import {
  type ConfluenceRecordedRequest,
  type ConfluenceStandIn,
  type ConfluenceStandInOptions,
  type StandInPage,
  startConfluenceStandIn,
} from '../../helpers/confluence-stand-in.ts'
import { startRedis } from '../../helpers/redis.ts'

// Both REST clients against the stand-in: Cloud (v2 + CQL, under /wiki) and Data Center (v1 only,
// under /confluence). The stand-in serves at most 3 results a page, so every walk has several.

const USER = 'bot@example.com'
const TOKEN = 'tok-rest-9f8e7d'
const ACCOUNT_ID = '712020:00000000-0000-4000-8000-000000000001'
const WHEN = '2024-05-06T07:08:09.000Z'
const CONFIG: RestSourceDeps['config'] = {
  CONFLUENCE_ALLOWED_HOSTS: '127.0.0.1',
  CONFLUENCE_REQUESTS_PER_SECOND: 1000,
  CONFLUENCE_TIMEOUT_MS: 5_000,
}
const FAST = { baseMs: 5, capMs: 20 }

const redisServer = await startRedis()
t.teardown(() => redisServer.stop())
const redis = new Redis(redisServer.url)
t.teardown(() => redis.quit())

function makePages(): StandInPage[] {
  const page = (
    id: string,
    title: string,
    spaceKey: string,
    parentId: string | undefined,
    labels: string[],
  ): StandInPage => {
    const out: StandInPage = {
      id,
      title,
      spaceKey,
      version: 1,
      storage: `<p>${title}</p>`,
      labels,
      updatedAt: WHEN,
    }
    if (parentId !== undefined) out.parentId = parentId
    return out
  }
  return [
    page('1001', 'Home', 'ENG', undefined, []),
    page('1002', 'Guide', 'ENG', '1001', ['howto']),
    page('1003', 'Setup', 'ENG', '1002', ['howto', 'draft']),
    page('1004', 'API', 'ENG', '1001', ['api']),
    page('1005', 'Internal', 'ENG', '1001', ['secret']),
    page('1006', 'FAQ', 'ENG', '1004', []),
    page('1007', 'Notes', 'ENG', '1001', ['notes']),
    page('2001', 'Ops Home', 'OPS', undefined, []),
    page('2002', 'Runbook', 'OPS', '2001', ['howto']),
    page('2003', 'On-call', 'OPS', '2001', []),
  ]
}

let sourceNumber = 0

type Setup = {
  options?: Partial<ConfluenceStandInOptions>
  spec?: Partial<SourceSpec>
  deps?: Partial<RestSourceDeps>
  token?: string
}

async function setup(t: Test, { options = {}, spec = {}, deps = {}, token = TOKEN }: Setup = {}) {
  const s = await startConfluenceStandIn({
    pages: makePages(),
    spaceNames: { ENG: 'Engineering', OPS: 'Operations' },
    auth: { type: 'basic', username: USER, token: TOKEN },
    clampLimit: 3,
    ...options,
  })
  t.teardown(() => s.close())
  const fullSpec: SourceSpec = {
    id: `src-${++sourceNumber}`,
    name: 'test source',
    kind: s.options.deployment === 'dc' ? 'datacenter' : 'cloud',
    base_url: s.baseUrl,
    spaces: ['ENG', 'OPS'],
    created_at: '2026-01-01T00:00:00.000Z',
    ...spec,
  }
  const source = openRestSource(
    fullSpec,
    { type: 'basic', username: USER, token },
    { redis, config: CONFIG, retry: FAST, ...deps },
  )
  t.teardown(() => source.close())
  return { s, source, spec: fullSpec }
}

const dc = { deployment: 'dc', contextPath: '/confluence' } as const

async function list(source: ConfluenceSource, signal?: AbortSignal): Promise<PageRef[]> {
  const out: PageRef[] = []
  for await (const ref of source.listPages(signal)) out.push(ref)
  return out
}

const ids = (items: Array<{ id: string }>) => items.map((item) => item.id)
const paths = (s: ConfluenceStandIn) => s.requests.map((request) => request.path)
const named = (s: ConfluenceStandIn, suffix: string): ConfluenceRecordedRequest[] =>
  s.requests.filter((request) => request.path.endsWith(suffix))
const isBody = (result: PageBody | PageFailure): result is PageBody => 'body' in result

// What both clients should make of the same stand-in pages; only what differs is passed in.

/** Every page of ENG and OPS, in listing order. */
const EVERY_ID = ['1001', '1002', '1003', '1004', '1005', '1006', '1007', '2001', '2002', '2003']
const SPACE_NAMES = new Map([
  ['ENG', 'Engineering'],
  ['OPS', 'Operations'],
])

/** Page 1003 ('Setup', under 'Guide') as a listing reports it. */
const setupRef = (fields: Pick<PageRef, 'labels' | 'url'> & Partial<PageRef>): PageRef => ({
  id: '1003',
  spaceKey: 'ENG',
  title: 'Setup',
  version: '1',
  parentId: '1002',
  updatedAt: WHEN,
  ...fields,
})

/** Page 1002 after `edit(s, '1002', 'Guide v2')`, with its body. */
const guideV2 = (fields: Partial<PageBody>): Partial<PageBody> => ({
  id: '1002',
  title: 'Guide v2',
  version: '2',
  body: '<p>Guide v2</p>',
  format: 'storage',
  labels: ['howto'],
  ...fields,
})

/** The failure recorded for a page that is gone. */
const gone = (id: string): PageFailure => ({ id, message: MISSING, status: 404 })

function edit(s: ConfluenceStandIn, id: string, title: string) {
  const page = s.options.pages.find((candidate) => candidate.id === id) as StandInPage
  page.version++
  page.title = title
  page.storage = `<p>${title}</p>`
}

function remove(s: ConfluenceStandIn, id: string) {
  s.options.pages.splice(
    s.options.pages.findIndex((page) => page.id === id),
    1,
  )
}

t.test('Cloud: lists every page of its spaces through v2, without bodies', async (t) => {
  const { s, source } = await setup(t)
  t.equal(source.kind, 'cloud')
  const refs = await list(source)
  t.same(ids(refs), EVERY_ID)
  // The listing carries each page's labels (item 2 of issue 10: a label change needs no version).
  const labels = s.options.pages.find((page) => page.id === '1003')?.labels ?? []
  t.ok(labels.length > 0, 'the page has labels in the stand-in')
  t.same(refs[2], setupRef({ labels, url: `${s.baseUrl}/spaces/ENG/pages/1003` }))
  t.notOk('parentId' in (refs[0] as PageRef), 'a root page has no parent')

  const [spaces, ...rest] = s.requests
  t.equal(spaces?.path, '/wiki/api/v2/spaces')
  t.same(spaces?.query, { keys: 'ENG,OPS', limit: '250' })
  const listings = rest.filter((request) => /\/api\/v2\/spaces\/\d+\/pages$/.test(request.path))
  t.equal(listings.length, 4, 'ENG in 3 pages of results, OPS in 1')
  // Labels come from one CQL walk a space (the stand-in pages its results by 3).
  const labelSearches = rest.filter((request) => request.path === '/wiki/rest/api/content/search')
  t.same(
    labelSearches.map((request) => [request.query.cql, request.query.expand]),
    [
      ['type = page AND space = "ENG"', 'metadata.labels'],
      ['type = page AND space = "ENG"', 'metadata.labels'],
      ['type = page AND space = "ENG"', 'metadata.labels'],
      ['type = page AND space = "OPS"', 'metadata.labels'],
    ],
  )
  t.equal(rest.length, listings.length + labelSearches.length, 'nothing else')
  for (const request of listings) {
    t.match(request.path, /^\/wiki\/api\/v2\/spaces\/\d+\/pages$/)
    t.notOk('body-format' in request.query, 'no bodies while listing')
  }
  t.same(listings[0]?.query, { status: 'current', limit: '250' })
  t.ok(listings[1]?.query.cursor, 'the next page came from _links.next')

  const before = s.requests.length
  t.same(await source.spaceNames(), SPACE_NAMES)
  t.equal(s.requests.length, before, 'space names were already known')
})

t.test('Cloud: bodies in bulk, labels by one CQL search, vanished pages as failures', async (t) => {
  const { s, source } = await setup(t, { spec: { spaces: ['ENG'] } })
  const refs = await list(source)
  const listed = s.requests.length
  edit(s, '1002', 'Guide v2')
  remove(s, '1006')
  s.options.unindexed = ['1004', '1007'] // too new for the search index
  s.options.faults.push({ path: /\/pages\/1004\/labels/, status: 404, body: '{"errors":[]}' })

  const results = await source.fetchBodies(refs)
  t.same(ids(results), ids(refs), 'one result per ref, in order')
  t.same(results[5], gone('1006'))
  const bodies = results.filter(isBody)
  t.equal(bodies.length, 6)
  t.match(bodies[1], guideV2({ parentId: '1001', url: `${s.baseUrl}/spaces/ENG/pages/1002` }))
  t.same(
    bodies.map((body) => body.labels),
    [[], ['howto'], ['howto', 'draft'], [], ['secret'], ['notes']],
  )

  const after = s.requests.slice(listed)
  const bulk = after.filter((request) => request.path === '/wiki/api/v2/pages')
  t.equal(bulk.length, 2, 'six bodies in two pages of results')
  t.same(bulk[0]?.query, {
    id: '1001,1002,1003,1004,1005,1006,1007',
    'body-format': 'storage',
    limit: '250',
  })
  const search = after.filter((request) => request.path === '/wiki/rest/api/content/search')
  t.equal(search[0]?.query.cql, 'type = page AND id in (1001,1002,1003,1004,1005,1007)')
  t.equal(search[0]?.query.expand, 'metadata.labels')
  t.same(
    after.filter((request) => request.path.endsWith('/labels')).map((request) => request.path),
    ['/wiki/api/v2/pages/1004/labels', '/wiki/api/v2/pages/1007/labels'],
    'only pages the index missed are asked one by one',
  )
  t.same(await source.fetchBodies([]), [])

  // A page answered without a storage body (and without parent or version time) still counts.
  s.options.faults.push({
    path: /\/api\/v2\/pages\?/,
    status: 200,
    body: JSON.stringify({ results: [{ id: '1001', title: 'Bare', version: { number: 9 } }] }),
  })
  const [bare] = await source.fetchBodies([refs[0] as PageRef])
  t.same(bare, {
    id: '1001',
    spaceKey: 'ENG',
    title: 'Bare',
    version: '9',
    labels: [],
    url: `${s.baseUrl}/spaces/ENG/pages/1001`,
    body: '',
    format: 'storage',
  })

  // A label request Confluence rejects is not the page's problem alone: thrown.
  s.options.faults.push({ path: /\/pages\/1007\/labels/, status: 400 })
  t.match(await failure(source.fetchBodies([refs[6] as PageRef])), { code: 'bad_request' })
})

t.test('Cloud: a failing bulk request is retried page by page', async (t) => {
  const { s, source } = await setup(t, { spec: { spaces: ['ENG'] } })
  const refs = (await list(source)).slice(0, 3)
  s.options.faults.push(
    { path: /\/api\/v2\/pages\?/, status: 500, times: 2 },
    {
      path: /\/api\/v2\/pages\/1002\?/,
      status: 400,
      body: '{"errors":[{"title":"Cannot render page","detail":null}]}',
    },
  )
  remove(s, '1003')
  const results = await source.fetchBodies(refs)
  t.match(results[0], { id: '1001', body: '<p>Home</p>' })
  t.match(results[1], { id: '1002', status: 400, message: /Cannot render page/ })
  t.same(results[2], gone('1003'))
  t.ok(
    s.requests.some((request) => request.path === '/wiki/api/v2/pages/1001'),
    'one GET per page',
  )

  // Outages and refused credentials are about the source, not a page: thrown.
  s.options.faults.push({ path: /\/api\/v2\/pages\?/, status: 503, times: 5 })
  const outage = await failure(source.fetchBodies(refs))
  t.equal(outage.code, 'unavailable')
  t.notOk(isFatal(outage))
  s.options.faults.push(
    { path: /\/api\/v2\/pages\?/, status: 500, times: 2 },
    { path: /\/api\/v2\/pages\/1001\?/, status: 503, times: 5 },
  )
  t.match(await failure(source.fetchBodies(refs)), { code: 'unavailable', status: 503 })
  s.options.auth = { type: 'bearer', token: 'other' }
  const refused = await failure(source.fetchBodies(refs))
  t.equal(refused.code, 'auth')
  t.ok(isFatal(refused))
})

t.test('Cloud: a label filter lists through CQL search, cursor-paged', async (t) => {
  const { s, source } = await setup(t, {
    options: { clampLimit: 2 },
    spec: { labels: { include: ['howto'] } },
  })
  const refs = await list(source)
  t.same(ids(refs), ['1002', '1003', '2002'])
  t.same(
    refs[1],
    setupRef({
      labels: ['howto', 'draft'],
      url: `${s.baseUrl}/spaces/ENG/pages/1003`,
      author: { id: ACCOUNT_ID, name: 'Stand-in User' },
    }),
  )
  const searches = named(s, '/rest/api/content/search')
  t.equal(searches.length, 2)
  t.same(searches[0]?.query, {
    cql: 'type = page AND space in ("ENG","OPS") AND label in ("howto")',
    expand: 'version,ancestors,metadata.labels,space',
    limit: '200',
  })
  t.ok(searches[1]?.query.cursor, 'Cloud search pages by cursor')

  const before = s.requests.length
  const results = await source.fetchBodies(refs)
  t.same(
    results.map((result) => (result as PageBody).labels),
    [['howto'], ['howto', 'draft'], ['howto']],
    'labels come from the listing',
  )
  t.same(
    s.requests.slice(before).map((request) => request.path),
    ['/wiki/api/v2/pages', '/wiki/api/v2/pages'],
    'bodies only (three ids, two a page), no label requests',
  )
})

t.test('Cloud: root page, exclusions and the source cql narrow the listing', async (t) => {
  const { s, source } = await setup(t, {
    spec: {
      spaces: [],
      cql: 'space = OPS OR space = "ENG"',
      root_page_id: '1001',
      labels: { exclude: ['secret'] },
    },
  })
  t.same(await source.spaceNames(), new Map(), 'nothing known before listing')
  const refs = await list(source)
  t.same(ids(refs), ['1001', '1002', '1003', '1004', '1006', '1007'])
  t.equal(
    named(s, '/content/search')[0]?.query.cql,
    'type = page AND (space = OPS OR space = "ENG") AND (id = 1001 OR ancestor = 1001) AND label not in ("secret")',
  )
  t.notOk(paths(s).includes('/wiki/api/v2/spaces'), 'no space lookup without space keys')
  t.same(await source.spaceNames(), new Map([['ENG', 'Engineering']]), 'names met in results')
})

t.test(
  'Cloud: unknown space keys are gone, the others listed; none known stops the listing',
  async (t) => {
    const { source } = await setup(t, { spec: { spaces: ['ENG', 'NOPE', 'ZZZ'] } })
    t.equal((await list(source)).length, 7, "ENG's pages")
    t.same(await source.goneSpaces(), ['NOPE', 'ZZZ'])
    t.same([...(await source.spaceNames()).keys()], ['ENG'])

    const none = await setup(t, { spec: { spaces: ['NOPE', 'ZZZ'] } })
    const err = await failure(list(none.source))
    t.equal(err.code, 'not_found')
    t.ok(isFatal(err))
    t.match(err.message, 'has no space NOPE, ZZZ')
    t.match(err.message, "check the source's spaces")
    await t.rejects(none.source.goneSpaces(), { code: 'not_found' })
    none.s.options.spaceKeys.push('NOPE')
    t.equal((await list(none.source)).length, 0, 'looked up again once a space exists')
    t.same(await none.source.goneSpaces(), ['ZZZ'])
  },
)

t.test(
  'a space hidden from the user is out of scope: listing, narrowed CQL, confirmGone',
  async (t) => {
    for (const options of [{}, dc]) {
      const whole = await setup(t, { options: { ...options, hiddenSpaces: ['OPS'] } })
      t.same(ids(await list(whole.source)), EVERY_ID.slice(0, 7))
      t.same(await whole.source.goneSpaces(), ['OPS'])
      t.same(await confirmGone(whole.source, ['1002', '2001', '2002']), ['2001', '2002'])

      const narrowed = await setup(t, {
        options: { ...options, hiddenSpaces: ['OPS'] },
        spec: { labels: { include: ['howto'] } },
      })
      t.same(ids(await list(narrowed.source)), ['1002', '1003'])
      t.match(named(narrowed.s, '/content/search')[0]?.query.cql, 'space = "ENG" AND')
      t.same(await confirmGone(narrowed.source, ['1002', '2002']), ['2002'])
    }
    // DC: a page still readable in a space its lookup called gone stays (the lookup was wrong).
    const glitch = await setup(t, {
      options: { ...dc, faults: [{ path: /\/rest\/api\/space\/OPS/, status: 404 }] },
    })
    t.equal((await list(glitch.source)).length, 7)
    t.same(await glitch.source.goneSpaces(), ['OPS'])
    t.same(await confirmGone(glitch.source, ['2001', '2002']), [], 'both still readable in OPS')
  },
)

t.test('Cloud: a base_url without v2 (no /wiki, or a DC server) is named', async (t) => {
  const { s, source } = await setup(t, { options: dc, spec: { kind: 'cloud' } })
  const err = await failure(list(source))
  t.match(err, { code: 'not_found', status: 404, fatal: true })
  t.match(err.message, `has no REST v2 under ${s.baseUrl}: check the source's base_url`)
  t.equal(s.requests.length, 1)
})

t.test(
  'Cloud: refused credentials fail on the first request, never logging the token',
  async (t) => {
    const { log, lines } = captureLog()
    const { s, source } = await setup(t, { token: 'not-the-token', deps: { log } })
    const err = await failure(list(source))
    t.equal(err.code, 'auth')
    t.ok(isFatal(err))
    t.equal(s.requests.length, 1, 'no retry')
    t.notMatch(err.message, 'not-the-token')
    const text = lines.join('\n')
    t.match(text, '"status":401')
    t.match(text, `"sourceId":"src-${sourceNumber}"`)
    t.notMatch(text, 'not-the-token')
    t.notMatch(text, Buffer.from(`${USER}:not-the-token`).toString('base64'))
  },
)

t.test('DC: v1 offset listing under the context path, with authors and labels', async (t) => {
  const { s, source } = await setup(t, { options: dc })
  t.equal(source.kind, 'datacenter')
  const refs = await list(source)
  t.same(ids(refs), EVERY_ID)
  t.same(
    refs[2],
    setupRef({
      labels: ['howto', 'draft'],
      url: `${s.baseUrl}/pages/viewpage.action?pageId=1003`,
      author: { id: 'standin-key', name: 'Stand-in User' },
    }),
  )
  t.same(paths(s).slice(0, 2), ['/confluence/rest/api/space/ENG', '/confluence/rest/api/space/OPS'])
  const listings = named(s, '/rest/api/content')
  t.equal(listings.length, 4, 'ENG in 3 pages of results, OPS in 1')
  t.same(listings[0]?.query, {
    spaceKey: 'ENG',
    type: 'page',
    status: 'current',
    expand: 'version,ancestors,metadata.labels,space',
    limit: '200',
    start: '0',
  })
  t.same(
    listings.map((request) => request.query.start),
    ['0', '2', '4', '0'],
    'pages of 3 overlap by one',
  )
  for (const path of paths(s)) {
    t.ok(path.startsWith('/confluence/rest/api/'), `${path}: v1 under the context path only`)
  }
  t.same(await source.spaceNames(), SPACE_NAMES)
})

t.test('DC: a page added mid-walk shifts the offsets; nothing is listed twice', async (t) => {
  const { s, source } = await setup(t, { options: dc, spec: { spaces: ['ENG'] } })
  let listings = 0
  s.options.onRequest = (request) => {
    if (request.path.endsWith('/rest/api/content') && ++listings === 2) {
      s.options.pages.push({ id: '1000', title: 'New', spaceKey: 'ENG', version: 1, storage: '' })
    }
  }
  t.same(ids(await list(source)), ['1001', '1002', '1003', '1004', '1005', '1006', '1007'])
  t.same(
    named(s, '/rest/api/content').map((request) => request.query.start),
    ['0', '2', '4', '6'],
    'pages of 3 overlap by one; no second pass for an added page',
  )
})

t.test('DC: a page removed mid-walk: no live page skipped, a second pass drops it', async (t) => {
  const { s, source } = await setup(t, { options: dc, spec: { spaces: ['ENG'] } })
  let listings = 0
  s.options.onRequest = (request) => {
    if (request.path.endsWith('/rest/api/content') && ++listings === 3) remove(s, '1001')
  }
  t.same(ids(await list(source)), ['1002', '1003', '1004', '1005', '1006', '1007'])
  t.same(
    named(s, '/rest/api/content').map((request) => request.query.start),
    ['0', '2', '4', '2', '4', '0', '2', '4'],
    'a page that does not start with a page seen steps back; the second pass stands',
  )

  // The page seen last removed: the next page starts with an unseen one, a step back.
  s.requests.length = 0
  listings = 0
  s.options.onRequest = (request) => {
    if (request.path.endsWith('/rest/api/content') && ++listings === 2) remove(s, '1004')
  }
  t.same(ids(await list(source)), ['1002', '1003', '1005', '1006', '1007'])
  t.same(
    named(s, '/rest/api/content').map((request) => request.query.start),
    ['0', '2', '0', '2', '0', '2'],
  )

  // Pages removed at the end: the offset is past the end, and the walk steps back.
  s.requests.length = 0
  listings = 0
  s.options.onRequest = (request) => {
    if (request.path.endsWith('/rest/api/content') && ++listings === 2) s.options.pages.splice(3)
  }
  t.same(ids(await list(source)), ['1002', '1003', '1005'])
})

t.test('DC: pages of 20 overlap by two: a removal inside or before the overlap', async (t) => {
  const extra = Array.from(
    { length: 30 },
    (_, i): StandInPage => ({
      id: String(3001 + i),
      title: `Extra ${i}`,
      spaceKey: 'ENG',
      version: 1,
      storage: '',
    }),
  )
  const { s, source } = await setup(t, {
    options: { ...dc, clampLimit: 20, pages: [...makePages(), ...extra] },
    spec: { spaces: ['ENG'] },
  })
  const every = ids(s.options.pages.filter((page) => page.spaceKey === 'ENG'))
  for (const [name, gone] of [
    ['the last page seen', every[19]],
    ['a page before the overlap', every[5]],
  ] as const) {
    s.requests.length = 0
    let listings = 0
    s.options.onRequest = (request) => {
      if (request.path.endsWith('/rest/api/content') && ++listings === 2) remove(s, gone as string)
    }
    t.same(
      ids(await list(source)),
      every.filter((id) => id !== gone),
      `${name}: every live page`,
    )
    t.same(
      named(s, '/rest/api/content').map((request) => request.query.start),
      ['0', '18', '0', '18'],
      `${name}: seen in the overlap, a second pass`,
    )
    every.splice(every.indexOf(gone as string), 1)
  }
})

t.test('DC: a listing that keeps moving is listed by its last pass, or refused', async (t) => {
  const { s, source } = await setup(t, { options: dc, spec: { spaces: ['ENG'] } })
  // A page removed at every second request: every pass sees a shift, the third one stands.
  let listings = 0
  s.options.onRequest = (request) => {
    if (request.path.endsWith('/rest/api/content') && ++listings % 4 === 2) {
      remove(s, s.options.pages[0]?.id as string)
    }
  }
  const refs = await list(source)
  t.equal(named(s, '/rest/api/content').filter((r) => r.query.start === '0').length, 3)
  t.same(ids(refs), ids(s.options.pages).slice(0, refs.length), 'live pages, in order')

  // The order changes at every request: stepping back never finds a page seen.
  s.options.pages = makePages().filter((page) => page.spaceKey === 'ENG')
  let flip = 0
  s.options.onRequest = (request) => {
    if (!request.path.endsWith('/rest/api/content') || request.query.start === '0') return
    flip++
    for (const page of s.options.pages) page.id = String(Number(page.id) + 100 * flip)
  }
  const err = (await list(source).catch((e: unknown) => e)) as ConfluenceError
  t.equal(err.code, 'unavailable')
  t.match(err.message, /kept shifting/)
  t.notOk(isFatal(err), 'retried later')
})

t.test('DC: a page of one cannot overlap: the walk goes page by page', async (t) => {
  const { s, source } = await setup(t, {
    options: { ...dc, clampLimit: 1 },
    spec: { spaces: ['OPS'] },
  })
  t.same(ids(await list(source)), ['2001', '2002', '2003'])
  t.same(
    named(s, '/rest/api/content').map((request) => request.query.start),
    ['0', '1', '2'],
  )
})

t.test('DC: bodies by CQL id search, pages the index lacks one by one', async (t) => {
  const { s, source } = await setup(t, { options: dc, spec: { spaces: ['ENG'] } })
  const refs = await list(source)
  const listed = s.requests.length
  edit(s, '1002', 'Guide v2')
  remove(s, '1006')
  s.options.unindexed = ['1007']
  const results = await source.fetchBodies(refs)
  t.same(ids(results), ids(refs))
  t.same(results[5], gone('1006'))
  t.match(
    results[1],
    guideV2({
      url: `${s.baseUrl}/pages/viewpage.action?pageId=1002`,
      author: { id: 'standin-key', name: 'Stand-in User' },
    }),
  )
  t.match(results[6], { id: '1007', body: '<p>Notes</p>', labels: ['notes'] })
  const after = s.requests.slice(listed)
  const searches = after.filter((request) => request.path.endsWith('/content/search'))
  t.equal(searches.length, 2, 'five indexed bodies, three a page')
  t.same(searches[0]?.query, {
    cql: 'type = page AND id in (1001,1002,1003,1004,1005,1006,1007)',
    expand: 'body.storage,version,ancestors,metadata.labels,space',
    limit: '50',
    start: '0',
  })
  t.same(
    after.filter((request) => !request.path.endsWith('/search')).map((request) => request.path),
    ['/confluence/rest/api/content/1006', '/confluence/rest/api/content/1007'],
  )
})

t.test('DC: a failing search falls back to one GET per page', async (t) => {
  const { s, source } = await setup(t, { options: dc, spec: { spaces: ['ENG'] } })
  const refs = (await list(source)).slice(0, 2)
  s.options.faults.push({ path: /\/content\/search/, status: 500, times: 2 })
  const results = await source.fetchBodies(refs)
  t.same(
    results.map((result) => (result as PageBody).body),
    ['<p>Home</p>', '<p>Guide</p>'],
  )
  t.same(
    named(s, '/rest/api/content/1001').map((request) => request.query.expand),
    ['body.storage,version,ancestors,metadata.labels,space'],
  )

  // Content without a storage body (or space, version and labels) still counts.
  s.options.faults.push({
    path: /\/content\/search/,
    status: 200,
    body: '{"results":[{"id":1001,"title":"Bare"}]}',
  })
  t.same(await source.fetchBodies([refs[0] as PageRef]), [
    {
      id: '1001',
      spaceKey: '',
      title: 'Bare',
      version: '',
      labels: [],
      url: `${s.baseUrl}/pages/viewpage.action?pageId=1001`,
      body: '',
      format: 'storage',
    },
  ])
})

t.test('DC: a root page narrows the listing through CQL, offset-paged', async (t) => {
  const { s, source } = await setup(t, {
    options: { ...dc, clampLimit: 1 },
    spec: { spaces: ['ENG'], root_page_id: '1004' },
  })
  t.same(ids(await list(source)), ['1004', '1006'])
  const searches = named(s, '/content/search')
  t.same(
    searches.map((request) => request.query.start),
    ['0', '1'],
  )
  t.notOk(
    searches.some((request) => 'cursor' in request.query),
    'DC search pages by offset',
  )
  t.equal(
    searches[0]?.query.cql,
    'type = page AND space = "ENG" AND (id = 1004 OR ancestor = 1004)',
  )
})

t.test('DC: no space known, or refused access, stops the listing', async (t) => {
  const some = await setup(t, { options: dc, spec: { spaces: ['ENG', 'NOPE'] } })
  t.equal((await list(some.source)).length, 7, 'one unknown key: the others are listed')
  t.same(await some.source.goneSpaces(), ['NOPE'])
  const { s, source } = await setup(t, { options: dc, spec: { spaces: ['NOPE', 'ZZZ'] } })
  const err = await failure(list(source))
  t.match(err, { code: 'not_found', status: 404, fatal: true })
  t.match(err.message, 'has no space NOPE, ZZZ')
  t.match(err.message, 'context path')
  t.equal((err.cause as ConfluenceError).code, 'not_found')
  s.options.spaceKeys.push('NOPE', 'ZZZ')
  s.options.forbidden = true
  const forbidden = await failure(source.spaceNames())
  t.match(forbidden, { code: 'forbidden', fatal: true })
})

t.test('the rate is shared by every client of one source id', async (t) => {
  const { s, spec } = await setup(t, {
    options: { clampLimit: 1000 },
    spec: { spaces: ['OPS'], rate_limit: { requests_per_second: 10 } },
  })
  const deps = { redis, config: CONFIG, retry: FAST }
  const auth = { type: 'basic', username: USER, token: TOKEN } as const
  const a = openRestSource(spec, auth, deps)
  const b = openRestSource(spec, auth, deps)
  t.teardown(() => a.close())
  t.teardown(() => b.close())
  await Promise.all([list(a), list(b), list(a), list(b)])
  const times = s.requests.map((request) => request.at).sort((x, y) => x - y)
  // Each client looks its space up once; each listing is a v2 walk and a CQL label walk.
  t.equal(times.length, 10, 'two space look-ups and four listings of two requests')
  // Ten slots 100 ms apart; arrival jitter of a few ms is all the slack allowed.
  t.ok(
    (times.at(-1) as number) - (times[0] as number) >= 900 - 50,
    `spread over ${Math.round((times.at(-1) as number) - (times[0] as number))} ms`,
  )
})

t.test('openRestSource opens REST kinds only', async (t) => {
  const spec: SourceSpec = {
    id: 'zip',
    name: 'zip',
    kind: 'export',
    base_url: '',
    spaces: [],
    export_path: '/tmp/x.zip',
    created_at: '2026-01-01T00:00:00.000Z',
  }
  t.throws(() => openRestSource(spec, undefined, { redis, config: CONFIG }), {
    code: 'config',
    message: /export source, not a REST one/,
  })
})

t.test('confirmGone: Cloud asks v2 for whole spaces, CQL for a narrowed scope', async (t) => {
  const { s, source } = await setup(t)
  remove(s, '1006')
  const moved = s.options.pages.find((page) => page.id === '1007') as StandInPage
  moved.spaceKey = 'HR'
  s.requests.length = 0
  const asked = ['1002', '1006', '1007', '2003', 'not-an-id']
  t.same(await confirmGone(source, asked), ['1006', '1007', 'not-an-id'])
  t.same(
    named(s, '/api/v2/pages').map((request) => request.query),
    [{ id: '1002,1006,1007,2003', status: 'current', limit: '250' }],
    'one bulk v2 request (spaces were looked up first)',
  )
  t.same(await confirmGone(source, []), [], 'nothing to ask')

  const narrowed = await setup(t, { spec: { labels: { include: ['howto'] } } })
  remove(narrowed.s, '1003')
  t.same(await confirmGone(narrowed.source, ['1002', '1003', '1004', '1002']), ['1003', '1004'])
  const search = named(narrowed.s, '/rest/api/content/search').at(-1)
  t.match(search?.query.cql, /label in \("howto"\) AND id in \(1002,1003,1004\)$/)
})

t.test('confirmGone: DC asks CQL, then alone for what the search index lacks', async (t) => {
  const { s, source } = await setup(t, { options: dc })
  remove(s, '1006')
  s.options.unindexed = ['1002', '1006', '1007']
  const moved = s.options.pages.find((page) => page.id === '1007') as StandInPage
  moved.spaceKey = 'HR'
  s.requests.length = 0
  t.same(await confirmGone(source, ['1002', '1003', '1006', '1007']), ['1006', '1007'])
  const search = named(s, '/rest/api/content/search')
  t.equal(search.length, 1)
  t.match(search[0]?.query.cql, /id in \(1002,1003,1006,1007\)$/)
  t.notOk('expand' in (search[0]?.query ?? {}), 'ids only')
  t.same(
    s.requests.filter((r) => /\/content\/\d+$/.test(r.path)).map((r) => r.path.split('/').at(-1)),
    ['1002', '1006', '1007'],
    'what the search left out, read alone',
  )

  // Read alone, a trashed page is gone too.
  const trashed = await setup(t, { options: dc })
  trashed.s.options.unindexed = ['1002']
  trashed.s.options.faults = [
    {
      path: /\/content\/1002/,
      status: 200,
      body: JSON.stringify({ id: '1002', type: 'page', status: 'trashed', title: 'Guide' }),
    },
  ]
  t.same(await confirmGone(trashed.source, ['1002', '1003']), ['1002'])
  // A current page answered without its space cannot be shown in scope: gone.
  const spaceless = await setup(t, { options: dc })
  spaceless.s.options.unindexed = ['1002']
  spaceless.s.options.faults = [
    {
      path: /\/content\/1002/,
      status: 200,
      body: JSON.stringify({ id: '1002', type: 'page', status: 'current', title: 'Guide' }),
    },
  ]
  t.same(await confirmGone(spaceless.source, ['1002']), ['1002'])

  // A narrowed source is listed through the search: its answer stands.
  const narrowed = await setup(t, { options: dc, spec: { root_page_id: '1002' } })
  narrowed.s.options.unindexed = ['1003']
  t.same(await confirmGone(narrowed.source, ['1002', '1003', '1004']), ['1003', '1004'])

  // A source error deletes nothing: it fails the caller (a fatal one for good).
  const refused = await setup(t, { options: dc, token: 'wrong' })
  const err = await confirmGone(refused.source, ['1002']).catch((e: unknown) => e)
  t.type(err, UnrecoverableError)
  const flaky = await setup(t, { options: dc })
  flaky.s.options.faults = [{ path: /\/content\/1002/, status: 503, times: 10 }]
  flaky.s.options.unindexed = ['1002']
  const retried = await confirmGone(flaky.source, ['1002']).catch((e: unknown) => e)
  t.match((retried as ConfluenceError).code, 'unavailable', 'a retryable error stays one')
})

t.test('fetchBodies answers a repeated page once', async (t) => {
  for (const options of [{}, dc]) {
    const { source } = await setup(t, { options })
    const refs = (await list(source)).slice(0, 3)
    const results = await source.fetchBodies([...refs, ...refs, refs[0] as PageRef])
    t.same(ids(results), ids(refs))
  }
})
