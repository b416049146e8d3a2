// The stand-in routes and knobs the REST clients rely on, driven with plain fetch: v2 bulk pages,
// v1 spaces, CQL search (subset, Cloud cursor vs DC offset, clamps), scripted faults, the
// request clock.
import t, { type Test } from 'tap'
import {
  type ConfluenceStandInOptions,
  compileCql,
  type StandInPage,
  startConfluenceStandIn,
} from '../helpers/confluence-stand-in.ts'

type Json = Record<string, unknown>

function makePages(): StandInPage[] {
  const pages: StandInPage[] = []
  for (let i = 1; i <= 6; i++) {
    const page: StandInPage = {
      id: String(100 + i),
      title: `Page ${i}`,
      spaceKey: i <= 4 ? 'ENG' : 'OPS',
      version: 1,
      storage: `<p>${i}</p>`,
      labels: i % 2 === 0 ? ['even'] : ['odd'],
    }
    if (i === 2 || i === 3) page.parentId = '101'
    if (i === 4) page.parentId = '103'
    pages.push(page)
  }
  return pages
}

async function setup(t: Test, options: Partial<ConfluenceStandInOptions> = {}) {
  const standIn = await startConfluenceStandIn({ pages: makePages(), ...options })
  t.teardown(() => standIn.close())
  return standIn
}

async function get(url: string) {
  const res = await fetch(url)
  const text = await res.text()
  return {
    res,
    text,
    body: (res.headers.get('content-type') ?? '').includes('json')
      ? (JSON.parse(text) as Json)
      : {},
  }
}

const ids = (body: Json) => (body.results as Json[]).map((item) => item.id)

t.test('v2 bulk pages by id, with cursor paging and bodies', async (t) => {
  const s = await setup(t)
  const first = await get(
    `${s.baseUrl}/api/v2/pages?id=105,101,999,103&body-format=storage&limit=2`,
  )
  t.same(ids(first.body), ['101', '103'], 'ascending id, unknown ids left out')
  t.equal((((first.body.results as Json[])[0] as Json).body as Json).storage !== undefined, true)
  const next = (first.body._links as Json).next as string
  t.match(
    next,
    /^\/wiki\/api\/v2\/pages\?cursor=[^&]+&limit=2&id=105%2C101%2C999%2C103&body-format=storage$/,
  )
  const second = await get(`${s.url}${next}`)
  t.same(ids(second.body), ['105'])
  t.notOk('next' in (second.body._links as Json))
  t.same(
    ids((await get(`${s.baseUrl}/api/v2/pages?limit=250`)).body).length,
    6,
    'no id filter: all',
  )
  t.equal((await get(`${s.baseUrl}/api/v2/pages?limit=251`)).res.status, 400)
  s.options.clampLimit = 1
  t.same(ids((await get(`${s.baseUrl}/api/v2/pages?limit=250`)).body), ['101'], 'clampLimit')
})

t.test('v1 space by key, with its name; 404 for an unknown key', async (t) => {
  const s = await setup(t, { spaceNames: { ENG: 'Engineering' } })
  const eng = await get(`${s.baseUrl}/rest/api/space/ENG`)
  t.match(eng.body, { key: 'ENG', name: 'Engineering', type: 'global' })
  t.equal((eng.body._links as Json).base, s.baseUrl)
  t.match(
    (await get(`${s.baseUrl}/rest/api/space/OPS`)).body,
    { name: 'OPS' },
    'name defaults to key',
  )
  const missing = await get(`${s.baseUrl}/rest/api/space/NOPE`)
  t.equal(missing.res.status, 404)
  t.equal(missing.body.message, 'No space found with key : NOPE')
  const v2 = await get(`${s.baseUrl}/api/v2/spaces?keys=ENG`)
  t.equal(((v2.body.results as Json[])[0] as Json).name, 'Engineering')
})

t.test('CQL search: the subset, DC offsets, silent clamps', async (t) => {
  const s = await setup(t, { deployment: 'dc', contextPath: '/confluence' })
  const search = (cql: string, extra = '') =>
    get(`${s.baseUrl}/rest/api/content/search?cql=${encodeURIComponent(cql)}${extra}`)
  const cases: Array<[string, string[]]> = [
    ['type = page AND space = ENG', ['101', '102', '103', '104']],
    ['space in ("OPS") OR id = 101', ['101', '105', '106']],
    ['ancestor = 101', ['102', '103', '104']],
    ['parent = 101', ['102', '103']],
    ['label = "even" AND NOT space = OPS', ['102', '104']],
    ['label != even', ['101', '103', '105']],
    ['label not in ("even", odd)', []],
    ["title ~ 'page 6'", ['106']],
    ['(id in (101,104) OR parent = 103) AND type = page ORDER BY lastmodified', ['101', '104']],
    ['type = blogpost', []],
  ]
  for (const [cql, want] of cases) {
    const { res, body } = await search(cql, '&limit=100')
    t.equal(res.status, 200, cql)
    t.same(ids(body), want, cql)
  }
  for (const bad of [
    '',
    'creator = x',
    'title = "open',
    'id 5',
    'label ~ x',
    'id = 1 )',
    'id in (1',
    '%',
  ]) {
    const { res, body } = await search(bad)
    t.equal(res.status, 400, `400 for ${JSON.stringify(bad)}`)
    t.match(body.message, /^Could not parse cql/)
  }

  const paged = await search('type = page', '&limit=2&start=2&expand=version')
  t.same(ids(paged.body), ['103', '104'])
  t.match(paged.body, { start: 2, limit: 2, size: 2, totalSize: 6 })
  const next = (paged.body._links as Json).next as string
  t.match(next, /^\/rest\/api\/content\/search\?next=true&limit=2&start=4&cql=/)
  t.notMatch(next, 'cursor')
  t.same(ids((await get(`${s.baseUrl}${next}`)).body), ['105', '106'])

  const clamp = async (expand: string) =>
    (await search('type = page', `&limit=5000${expand}`)).body.limit
  t.equal(await clamp(''), 1000)
  t.equal(await clamp('&expand=version'), 200)
  t.equal(await clamp('&expand=body.storage,version'), 50)
  t.equal((await search('type = page', '&start=-1')).res.status, 400)

  s.options.unindexed = ['101']
  t.same(ids((await search('id in (101,102)')).body), ['102'], 'unindexed pages are not found')
})

t.test('CQL search on Cloud pages by cursor and ignores start', async (t) => {
  const s = await setup(t)
  const url = `${s.baseUrl}/rest/api/content/search?cql=${encodeURIComponent('type = page')}&limit=4`
  const first = await get(url)
  t.same(ids(first.body), ['101', '102', '103', '104'])
  t.same(ids((await get(`${url}&start=4`)).body), ['101', '102', '103', '104'], 'start alone')
  const next = (first.body._links as Json).next as string
  t.match(next, /^\/rest\/api\/content\/search\?next=true&cursor=/)
  t.same(ids((await get(`${s.baseUrl}${next}`)).body), ['105', '106'])
  t.equal((await get(`${url}&cursor=%%%`)).res.status, 400)
})

t.test(
  'faults: statuses, resets, hangs and cut-off bodies, in order; requests carry a time',
  async (t) => {
    const s = await setup(t)
    const url = `${s.baseUrl}/api/v2/pages/101`
    s.options.faults.push(
      { path: /\/labels$/, status: 418 },
      { status: 500, times: 2, headers: { 'retry-after': ['1', '2'] } },
      { kind: 'truncate' },
    )
    const a = await fetch(url)
    t.equal(a.status, 500)
    t.equal(a.headers.get('retry-after'), '1, 2')
    t.match(await a.json(), { statusCode: 500, message: 'Scripted fault' })
    t.equal((await get(url)).res.status, 500)
    const cut = await get(`${s.baseUrl}/api/v2/pages/102`).catch((err: Error) => err)
    t.type(cut, Error, 'half a JSON body does not parse')
    t.equal((await get(`${s.baseUrl}/api/v2/pages/101/labels`)).res.status, 418)
    t.equal(s.options.faults.length, 0, 'all consumed')

    s.options.faults.push({ kind: 'reset' })
    await t.rejects(fetch(url))
    s.options.faults.push({ kind: 'hang' })
    const controller = new AbortController()
    const hung = fetch(url, { signal: controller.signal })
    setTimeout(() => controller.abort(), 100)
    await t.rejects(hung)
    t.equal((await get(url)).res.status, 200)

    const times = s.requests.map((request) => request.at)
    t.equal(times.length, 7)
    t.ok(
      times.every((at, i) => i === 0 || at >= (times[i - 1] as number)),
      'arrival times never go back',
    )
  },
)

t.test('compileCql refuses what it does not know', async (t) => {
  t.throws(() => compileCql('title ~ x', {}), /unknown field title/)
})
