import { Redis } from 'ioredis'
import t, { type Test } from 'tap'
import { inSpaces, scopeCql } from '../../../services/worker/src/confluence/cql.ts'
import { confirmGone } from '../../../services/worker/src/confluence/gone.ts'
import {
  openRestSource,
  type RestSourceDeps,
} from '../../../services/worker/src/confluence/open.ts'
import type { PageRef, SourceSpec } from '../../../services/worker/src/confluence/types.ts'
import { type StandInPage, startConfluenceStandIn } from '../../helpers/confluence-stand-in.ts'
import { startRedis } from '../../helpers/redis.ts'

// Defence in depth behind the cql check at registration: a source stored before that check (or a
// server that reads CQL otherwise) may send a query that reaches outside the source's spaces. The
// CQL walk leaves out every page it returns from another space, on Cloud and Data Center alike,
// and a page of another space indexed before is confirmed gone (so the sync deletes it).

const USER = 'bot@example.com'
const TOKEN = 'tok-cql-scope-1a2b'
const CONFIG: RestSourceDeps['config'] = {
  CONFLUENCE_ALLOWED_HOSTS: '127.0.0.1',
  CONFLUENCE_REQUESTS_PER_SECOND: 1000,
  CONFLUENCE_TIMEOUT_MS: 5_000,
}
/** What the api refuses now, and a source registered before that may still hold. */
const BREAKOUT = 'title ~ "Page 1") OR (space = "ENG"'

const redisServer = await startRedis()
t.teardown(() => redisServer.stop())
const redis = new Redis(redisServer.url)
t.teardown(() => redis.quit())

const page = (id: string, title: string, spaceKey: string): StandInPage => ({
  id,
  title,
  spaceKey,
  version: 1,
  storage: `<p>${title}</p>`,
  labels: [],
})

async function setup(t: Test, deployment: 'cloud' | 'dc') {
  const s = await startConfluenceStandIn({
    pages: [
      page('1001', 'Home', 'ENG'),
      page('1002', 'Page 1 of ENG', 'ENG'),
      page('3001', 'Page 1', 'DOC'),
      page('3002', 'Page 10', 'DOC'),
      page('3003', 'Page 2', 'DOC'),
    ],
    spaceNames: { ENG: 'Engineering', DOC: 'Documentation' },
    auth: { type: 'basic', username: USER, token: TOKEN },
    clampLimit: 2,
    deployment,
    ...(deployment === 'dc' ? { contextPath: '/confluence' } : {}),
  })
  t.teardown(() => s.close())
  const spec: SourceSpec = {
    id: `src-${deployment}`,
    name: 'docs',
    kind: deployment === 'dc' ? 'datacenter' : 'cloud',
    base_url: s.baseUrl,
    spaces: ['DOC'],
    cql: BREAKOUT,
    created_at: '2026-01-01T00:00:00.000Z',
  }
  const source = openRestSource(
    spec,
    { type: 'basic', username: USER, token: TOKEN },
    { redis, config: CONFIG, retry: { baseMs: 5, capMs: 20 } },
  )
  t.teardown(() => source.close())
  return { s, source, spec }
}

t.test('the stand-in answers the escaped query with pages of ENG', async (t) => {
  const { s, spec } = await setup(t, 'cloud')
  t.equal(
    scopeCql(spec),
    'type = page AND space = "DOC" AND (title ~ "Page 1") OR (space = "ENG")',
    'what a source stored before the check still sends',
  )
  const url = `${s.baseUrl}/rest/api/content/search?cql=${encodeURIComponent(scopeCql(spec))}&expand=space&limit=50`
  const auth = `Basic ${Buffer.from(`${USER}:${TOKEN}`).toString('base64')}`
  const answer = (await (await fetch(url, { headers: { authorization: auth } })).json()) as {
    results: Array<{ id: string }>
  }
  t.same(
    answer.results.map((item) => item.id),
    ['1001', '1002'],
    'ENG pages come first (the stand-in pages by 2)',
  )
})

for (const deployment of ['cloud', 'dc'] as const) {
  t.test(`${deployment}: a page of another space is left out of the CQL walk`, async (t) => {
    const { source } = await setup(t, deployment)
    const refs: PageRef[] = []
    for await (const ref of source.listPages()) refs.push(ref)
    t.same(
      refs.map((ref) => [ref.id, ref.spaceKey]),
      [
        ['3001', 'DOC'],
        ['3002', 'DOC'],
      ],
      'only the DOC pages the cql meant',
    )
    t.same(
      await confirmGone(source, ['1001', '1002', '3001', '3003']),
      ['1001', '1002', '3003'],
      'a page of ENG indexed before is gone from the scope',
    )
    t.same(
      [...(await source.spaceNames()).keys()],
      ['DOC'],
      'and no name of a space out of scope is kept',
    )
  })
}

t.test('inSpaces: a result without its space is not shown in scope', async (t) => {
  const scope = { spaces: ['DOC', 'OPS'] }
  t.ok(inSpaces(scope, { space: { key: 'OPS' } }))
  t.notOk(inSpaces(scope, { space: { key: 'ENG' } }))
  t.notOk(inSpaces(scope, {}))
  // No space named: the cql chooses them (a scope the api never registers, the walk allows).
  t.ok(inSpaces({ spaces: [] }, { space: { key: 'ENG' } }))
})
