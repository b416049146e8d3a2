import t from 'tap'
import type { StandInPage } from '../../helpers/confluence-stand-in.ts'
import {
  generatedSpace,
  ingestRig,
  type Rig,
  sameAsFromScratch,
  syncFromScratch,
} from '../../helpers/ingest.ts'

// The boundaries of the sync engine's decisions (issue 10, item 12), end to end: real Redis, real
// workers, real LanceDB, the stand-ins changed between syncs. Versions of two digits, a configured
// delete share on both sides of its limit, a sync after a failed one, more missing vectors than
// one fill round holds, and sources narrowed by root page, labels and CQL, whose pages have
// parents outside the scope.

type Row = Record<string, unknown>

const bodyRequests = (rig: Rig) =>
  rig.confluence.requests.filter((r) => r.query['body-format'] !== undefined)

/** The page ids whose bodies were fetched from `from` on (bulk reads name several). */
const fetchedSince = (rig: Rig, from: number) =>
  bodyRequests(rig)
    .slice(from)
    .flatMap((r) => (r.query.id ?? r.path.split('/').at(-1) ?? '').split(','))
    .sort()

const pageIds = (rows: Row[], source?: string) =>
  [
    ...new Set(
      rows.filter((r) => source === undefined || r.source_id === source).map((r) => r.page_id),
    ),
  ]
    .map(String)
    .sort()

const versionsOf = (rows: Row[]) =>
  Object.fromEntries(rows.map((r) => [String(r.page_id), String(r.version)]))

t.test('versions of two digits: 9 → 10 and 10 → 11 convert, 10 → 10 does not', async (t) => {
  const pages = generatedSpace(5)
  const at = (id: string) => pages.find((p) => p.id === id) as StandInPage
  Object.assign(at('1001'), { version: 9 })
  Object.assign(at('1002'), { version: 10 })
  Object.assign(at('1003'), { version: 10 })
  Object.assign(at('1004'), { version: 1 })
  Object.assign(at('1005'), { version: 19 })
  const rig = await ingestRig(t, { pages })
  await rig.startWorker()
  const source = await rig.register()
  const first = await rig.waitFor(await rig.enqueue(source))
  t.equal(first.state, 'completed', first.failedReason ?? '')
  t.same(versionsOf(await rig.rows()), {
    1001: '9',
    1002: '10',
    1003: '10',
    1004: '1',
    1005: '19',
  })

  // 9 → 10 (shorter as a string), 10 → 11, 1 → 10 (the old version is a prefix), 19 → 20
  // (smaller as a string); 1003 stays at 10.
  const edit = (id: string, version: number) =>
    Object.assign(at(id), { version, storage: `<p>Text of ${id} at version ${version}.</p>` })
  edit('1001', 10)
  edit('1002', 11)
  edit('1004', 10)
  edit('1005', 20)
  const before = bodyRequests(rig).length
  const run = await rig.waitFor(await rig.enqueue(source))
  t.equal(run.state, 'completed', run.failedReason ?? '')
  t.same(run.progress, {
    discovered: 5,
    converted: 4,
    embedded: 4,
    unchanged: 1,
    deleted: 0,
    failed: 0,
  })
  t.same(fetchedSince(rig, before), ['1001', '1002', '1004', '1005'], 'only the changed pages')
  const rows = await rig.rows()
  t.same(versionsOf(rows), { 1001: '10', 1002: '11', 1003: '10', 1004: '10', 1005: '20' })
  for (const [id, version] of [
    ['1001', 10],
    ['1002', 11],
    ['1004', 10],
    ['1005', 20],
  ] as const) {
    t.ok(
      rows.some((r) => r.page_id === id && String(r.text).includes(`at version ${version}.`)),
      `${id} holds its version ${version} text`,
    )
  }

  const again = await rig.waitFor(await rig.enqueue(source))
  t.match(again.progress, { converted: 0, unchanged: 5 }, 'nothing left to convert')
  await sameAsFromScratch(t, rig, source, await syncFromScratch(t, rig))
})

t.test(
  'a configured delete share: at the share deletes, one page over it is refused',
  async (t) => {
    // 1001 is the root; 1002–1006 its children; 1007–1010 under 1002.
    const pages = generatedSpace(10)
    const rig = await ingestRig(t, { pages, env: { SYNC_MAX_DELETE_SHARE: '0.5' } })
    await rig.startWorker()
    const source = await rig.register()
    t.equal((await rig.waitFor(await rig.enqueue(source))).state, 'completed')
    const remove = (ids: string[]) => {
      rig.confluence.options.pages = rig.confluence.options.pages.filter((p) => !ids.includes(p.id))
    }

    // 5 of 10 is the share itself (the default 0.2 would refuse it): deleted.
    remove(['1006', '1007', '1008', '1009', '1010'])
    const half = await rig.waitFor(await rig.enqueue(source))
    t.equal(half.state, 'completed', half.failedReason ?? '')
    t.match(half.progress, { discovered: 5, deleted: 5 })
    t.same(half.errors, [])
    t.same(pageIds(await rig.rows()), ['1001', '1002', '1003', '1004', '1005'])

    // 3 of 5 is over the share (the limit is 2 pages: 2.5 rounds down): refused.
    remove(['1003', '1004', '1005'])
    const over = await rig.waitFor(await rig.enqueue(source))
    t.equal(over.state, 'completed', over.failedReason ?? '')
    t.match(over.progress, { discovered: 2, deleted: 0 })
    t.match(over.errors, [
      {
        message: /^Refused to delete 3 of 5 indexed pages \(60%, over SYNC_MAX_DELETE_SHARE=0\.5\)/,
      },
    ])
    t.same(pageIds(await rig.rows()), ['1001', '1002', '1003', '1004', '1005'], 'nothing deleted')

    // 2 of 5 is under it: deleted without force.
    rig.confluence.options.pages.push(pages.find((p) => p.id === '1005') as StandInPage)
    const under = await rig.waitFor(await rig.enqueue(source))
    t.match(under.progress, { discovered: 3, deleted: 2 })
    t.same(under.errors, [])
    t.same(pageIds(await rig.rows()), ['1001', '1002', '1005'])

    // 2 of 3 is over again; with force it goes through.
    remove(['1002', '1005'])
    const refused = await rig.waitFor(await rig.enqueue(source))
    t.match(refused.progress, { deleted: 0 })
    t.match(refused.errors, [{ message: /^Refused to delete 2 of 3 indexed pages/ }])
    const forced = await rig.waitFor(await rig.enqueue(source, { force: true }))
    t.match(forced.progress, { discovered: 1, deleted: 2 })
    t.same(forced.errors, [])
    t.same(pageIds(await rig.rows()), ['1001'])
  },
)

t.test('a sync after a failed one runs and converges', async (t) => {
  const pages = generatedSpace(6)
  const rig = await ingestRig(t, { pages })
  await rig.startWorker()
  const source = await rig.register()
  t.equal((await rig.waitFor(await rig.enqueue(source))).state, 'completed')

  // The space changes, and the next sync fails for good: the credential is refused.
  const edited = pages[2] as StandInPage
  Object.assign(edited, { version: 2, storage: '<p>Edited before the outage.</p>' })
  rig.confluence.options.pages = rig.confluence.options.pages.filter((p) => p.id !== '1006')
  rig.confluence.options.faults = [{ status: 401, times: 1000, body: '{"code":401}' }]
  const failed = await rig.waitFor(await rig.enqueue(source))
  t.equal(failed.state, 'failed')
  t.match(failed.failedReason, /401/)

  // Healed: the next sync is not skipped as if the failed one still ran.
  rig.confluence.options.faults = []
  const healed = await rig.waitFor(await rig.enqueue(source))
  t.equal(healed.state, 'completed', healed.failedReason ?? '')
  t.same(healed.progress, {
    discovered: 5,
    converted: 1,
    embedded: 1,
    unchanged: 4,
    deleted: 1,
    failed: 0,
  })
  const rows = await rig.rows()
  t.same(pageIds(rows), ['1001', '1002', '1003', '1004', '1005'])
  t.ok(rows.some((r) => r.page_id === edited.id && /Edited before the outage/.test(String(r.text))))
  await sameAsFromScratch(t, rig, source, await syncFromScratch(t, rig))

  // Failing in the middle of a walk (a 500 on every listing request, past the client's
  // retries) is no different.
  Object.assign(edited, { version: 3, storage: '<p>Edited again.</p>' })
  rig.confluence.options.faults = [{ status: 500, times: 1000 }]
  const down = await rig.waitFor(await rig.enqueue(source), 120_000)
  t.equal(down.state, 'failed')
  rig.confluence.options.faults = []
  const back = await rig.waitFor(await rig.enqueue(source))
  t.equal(back.state, 'completed', back.failedReason ?? '')
  t.match(back.progress, { discovered: 5, converted: 1, unchanged: 4 })
  t.ok((await rig.rows()).some((r) => /Edited again/.test(String(r.text))))
})

t.test('missing vectors beyond one fill round are all filled', async (t) => {
  const pages = generatedSpace(2)
  const rig = await ingestRig(t, { pages })
  await rig.startWorker()
  const source = await rig.register()
  t.equal((await rig.waitFor(await rig.enqueue(source))).state, 'completed')
  const models = rig.ollama.options.models
  t.ok(
    (await rig.rows()).every((r) => Array.isArray(r.vector)),
    'the index records its model',
  )

  // The model is gone while a long page arrives: its chunks (more than one fill round of 256)
  // and an edited page's are stored without vectors.
  rig.ollama.options.models = []
  rig.confluence.options.pages.push({
    id: '3001',
    title: 'Long page',
    spaceKey: 'ENG',
    version: 1,
    storage: Array.from(
      { length: 600 },
      (_, i) =>
        `<h2>Part ${i}</h2><p>${Array.from({ length: 60 }, (_, j) => `w${j}`).join(' ')}</p>`,
    ).join(''),
  })
  Object.assign(pages[1] as StandInPage, { version: 2, storage: '<p>Edited, no model.</p>' })
  const away = await rig.waitFor(await rig.enqueue(source))
  t.equal(away.state, 'completed', away.failedReason ?? '')
  t.match(away.progress, { converted: 2, embedded: 0 })
  const missing = (await rig.rows()).filter((r) => !Array.isArray(r.vector))
  t.ok(missing.length > 2 * 256, `${missing.length} chunks without vectors, over two rounds`)

  // Back: the next sync converts nothing and fills every vector.
  rig.ollama.options.models = models
  const embedCalls = rig.ollama.requests.filter((r) => r.path === '/api/embed').length
  const back = await rig.waitFor(await rig.enqueue(source))
  t.equal(back.state, 'completed', back.failedReason ?? '')
  t.match(back.progress, { discovered: 3, converted: 0, unchanged: 3, embedded: 2 })
  t.ok(rig.ollama.requests.filter((r) => r.path === '/api/embed').length > embedCalls)
  const rows = await rig.rows()
  t.same(
    rows.filter((r) => !Array.isArray(r.vector)).map((r) => r.chunk_id),
    [],
    'every chunk has its vector',
  )
  t.ok(rows.every((r) => r.embed_model === 'nomic-embed-text'))
  await sameAsFromScratch(t, rig, source, await syncFromScratch(t, rig))
})

// A space for narrowed sources. Labels say who may read a page; 2005 is a draft.
//   2001 Home
//   ├── 2002 Guides
//   │   ├── 2003 Install            public
//   │   │   └── 2004 Install on Linux  public
//   │   └── 2005 Internal notes     public, draft
//   │       └── 2007 Scratch
//   └── 2006 Reference              public
const narrowSpace = (): StandInPage[] =>
  (
    [
      ['2001', 'Home', undefined, []],
      ['2002', 'Guides', '2001', []],
      ['2003', 'Install', '2002', ['public']],
      ['2004', 'Install on Linux', '2003', ['public']],
      ['2005', 'Internal notes', '2002', ['public', 'draft']],
      ['2006', 'Reference', '2001', ['public']],
      ['2007', 'Scratch', '2005', []],
    ] as const
  ).map(([id, title, parentId, labels]) => ({
    id,
    title,
    spaceKey: 'ENG',
    ...(parentId === undefined ? {} : { parentId }),
    version: 1,
    labels: [...labels],
    storage: `<p>The text of ${title}.</p>`,
  }))

/** Page id → the breadcrumb of its chunks (one per page: the pages are short). */
const crumbs = (rows: Row[], source: string) => {
  const out: Record<string, string> = {}
  for (const r of rows.filter((r) => r.source_id === source)) {
    out[String(r.page_id)] = String(r.breadcrumb)
  }
  return out
}

for (const deployment of ['cloud', 'dc'] as const) {
  t.test(
    `narrowed sources (${deployment}): parents outside the scope end the breadcrumb`,
    async (t) => {
      const rig = await ingestRig(t, { pages: narrowSpace(), confluence: { deployment } })
      await rig.startWorker()
      const cases: Array<{
        name: string
        input: Parameters<Rig['register']>[0]
        crumbs: Record<string, string>
      }> = [
        {
          name: 'root page',
          input: { root_page_id: '2002' },
          crumbs: {
            2002: 'ENG › Guides',
            2003: 'ENG › Guides › Install',
            2004: 'ENG › Guides › Install › Install on Linux',
            2005: 'ENG › Guides › Internal notes',
            2007: 'ENG › Guides › Internal notes › Scratch',
          },
        },
        {
          name: 'labels included',
          input: { labels: { include: ['public'] } },
          crumbs: {
            2003: 'ENG › Install',
            2004: 'ENG › Install › Install on Linux',
            2005: 'ENG › Internal notes',
            2006: 'ENG › Reference',
          },
        },
        {
          name: 'labels excluded',
          input: { labels: { exclude: ['draft'] } },
          crumbs: {
            2001: 'ENG › Home',
            2002: 'ENG › Home › Guides',
            2003: 'ENG › Home › Guides › Install',
            2004: 'ENG › Home › Guides › Install › Install on Linux',
            2006: 'ENG › Home › Reference',
            2007: 'ENG › Scratch',
          },
        },
        {
          name: 'labels included and excluded',
          input: { labels: { include: ['public'], exclude: ['draft'] } },
          crumbs: {
            2003: 'ENG › Install',
            2004: 'ENG › Install › Install on Linux',
            2006: 'ENG › Reference',
          },
        },
        {
          name: 'cql',
          input: { cql: 'title ~ "install"' },
          crumbs: { 2003: 'ENG › Install', 2004: 'ENG › Install › Install on Linux' },
        },
      ]
      for (const c of cases) {
        const source = await rig.register({ name: c.name, ...c.input })
        const run = await rig.waitFor(await rig.enqueue(source))
        t.equal(run.state, 'completed', `${c.name}: ${run.failedReason ?? ''}`)
        const count = Object.keys(c.crumbs).length
        t.same(
          run.progress,
          {
            discovered: count,
            converted: count,
            embedded: count,
            unchanged: 0,
            deleted: 0,
            failed: 0,
          },
          c.name,
        )
        t.same(crumbs(await rig.rows(), source), c.crumbs, `${c.name}: breadcrumbs`)
        // The next sync finds the same trails: nothing to convert, restamp or embed.
        const again = await rig.waitFor(await rig.enqueue(source))
        t.same(
          again.progress,
          { discovered: count, converted: 0, embedded: 0, unchanged: count, deleted: 0, failed: 0 },
          `${c.name}: a second sync changes nothing`,
        )
      }
    },
  )
}
