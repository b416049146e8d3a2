import t from 'tap'
import type { PageRef } from '../../../services/worker/src/confluence/types.ts'
import {
  ancestorTitles,
  deleteRefusal,
  planSync,
  splitRestamp,
} from '../../../services/worker/src/processors/sync-plan.ts'
import type { PageStamp } from '../../../services/worker/src/store/chunks.ts'

// The sync engine's decisions at their boundaries (issue 10, item 12): what is converted again,
// what is only restamped, what may be gone, when a deletion is refused, and which stored chunks
// need new vectors. End to end, the same decisions are proven by the integration tests.

const page = (id: string, over: Partial<PageRef> = {}): PageRef => ({
  id,
  spaceKey: 'ENG',
  title: `Page ${id}`,
  version: '1',
  labels: [],
  url: `https://wiki.example.com/spaces/ENG/pages/${id}`,
  ...over,
})

const spaceNames = new Map([['ENG', 'Engineering']])

/** The stamp a sync of `p` (under `ancestors`) leaves in the index. */
const stampOf = (p: PageRef, ancestors: string[] = []): PageStamp => ({
  version: p.version,
  vectors: true,
  title: p.title,
  space: p.spaceKey,
  url: p.url,
  labels: [...p.labels],
  trail: [spaceNames.get(p.spaceKey) ?? p.spaceKey, ...ancestors, p.title].join(' › '),
})

t.test('ancestors, root first, as far as the listing reaches', async (t) => {
  const root = page('1', { title: 'Root' })
  const mid = page('2', { title: 'Mid', parentId: '1' })
  const leaf = page('3', { title: 'Leaf', parentId: '2' })
  const byId = new Map([root, mid, leaf].map((p) => [p.id, p]))
  t.same(ancestorTitles(byId, leaf), ['Root', 'Mid'])
  t.same(ancestorTitles(byId, root), [])
  // A narrowed source: the parent is outside the listing, so the trail starts below it.
  const narrowed = new Map([mid, leaf].map((p) => [p.id, p]))
  t.same(ancestorTitles(narrowed, leaf), ['Mid'])
  t.same(ancestorTitles(narrowed, mid), [])
  // A parent chain that loops ends where it would repeat.
  const a = page('a', { title: 'A', parentId: 'b' })
  const b = page('b', { title: 'B', parentId: 'a' })
  const c = page('c', { title: 'C', parentId: 'a' })
  const loop = new Map([a, b, c].map((p) => [p.id, p]))
  t.same(ancestorTitles(loop, c), ['B', 'A'])
  t.same(ancestorTitles(loop, a), ['B'])
  const self = page('s', { title: 'S', parentId: 's' })
  t.same(ancestorTitles(new Map([['s', self]]), self), [])
})

t.test('a page unchanged in every respect is neither converted nor restamped', async (t) => {
  const root = page('1', { title: 'Root', labels: ['x', 'y'] })
  const child = page('2', { parentId: '1', version: '10' })
  const indexed = new Map([
    ['1', stampOf(root)],
    ['2', stampOf(child, ['Root'])],
  ])
  t.same(planSync({ pages: [root, child], spaceNames }, indexed, false), {
    changed: [],
    restamped: [],
    candidates: [],
  })
})

t.test('what a page text depends on converts it again', async (t) => {
  const base = page('7', { version: '10' })
  const indexed = new Map([['7', stampOf(base)]])
  const cases: Array<[string, Partial<PageRef>]> = [
    ['a version of two digits after one', { version: '11' }],
    ['a lower version (a restore)', { version: '9' }],
    ['a renamed page', { title: 'Renamed' }],
    ['a page moved to another space', { spaceKey: 'OPS' }],
    ['a new URL', { url: 'https://wiki.example.com/x/7' }],
  ]
  for (const [why, over] of cases) {
    const listed = { ...base, ...over }
    const plan = planSync({ pages: [listed], spaceNames }, indexed, false)
    t.same(plan.changed, [{ ...listed, ancestors: [] }], why)
    t.same(plan.restamped, [], `${why}: converted, not restamped`)
  }
  t.same(
    planSync({ pages: [base], spaceNames }, indexed, true).changed,
    [{ ...base, ancestors: [] }],
    'a full sync converts every page',
  )
  const fresh = page('8', { parentId: '7' })
  t.same(
    planSync({ pages: [base, fresh], spaceNames }, indexed, false).changed,
    [{ ...fresh, ancestors: ['Page 7'] }],
    'a page the index lacks, with its ancestors',
  )
})

t.test('what only its chunks metadata depends on restamps it', async (t) => {
  const root = page('1', { title: 'Root' })
  const child = page('2', { parentId: '1', labels: ['a', 'b'] })
  const indexed = new Map([
    ['1', stampOf(root)],
    ['2', stampOf(child, ['Root'])],
  ])
  const plan = (pages: PageRef[], names = spaceNames) =>
    planSync({ pages, spaceNames: names }, indexed, false)

  // A renamed ancestor (its own version bumps) restamps its subtree.
  const renamed = { ...root, title: 'New root', version: '2' }
  t.same(plan([renamed, child]), {
    changed: [{ ...renamed, ancestors: [] }],
    restamped: [{ page: child, trail: 'Engineering › New root › Page 2' }],
    candidates: [],
  })
  // A move without a version bump.
  const other = page('3', { title: 'Other' })
  const moved = { ...child, parentId: '3' }
  t.same(
    plan([root, other, moved]).restamped,
    [{ page: moved, trail: 'Engineering › Other › Page 2' }],
    'a move',
  )
  t.same(
    plan([root, child], new Map([['ENG', 'Platform']])).restamped.map((r) => r.trail),
    ['Platform › Root', 'Platform › Root › Page 2'],
    'a renamed space',
  )
  t.same(
    plan([root, child], new Map()).restamped.map((r) => r.trail),
    ['ENG › Root', 'ENG › Root › Page 2'],
    'a space without a name is shown by its key',
  )
  const relabelled = (labels: string[]) =>
    plan([root, { ...child, labels }]).restamped.map((r) => r.page.labels)
  t.same(relabelled(['a', 'b', 'c']), [['a', 'b', 'c']], 'a label added')
  t.same(relabelled(['a']), [['a']], 'a label removed')
  t.same(relabelled(['a', 'c']), [['a', 'c']], 'a label replaced')
  t.same(relabelled([]), [[]], 'every label removed')
  t.same(relabelled(['a', 'b']), [], 'the same labels')
})

t.test('a page whose links now resolve differently is converted again', async (t) => {
  const a = page('1', { labels: ['x'] })
  const b = page('2')
  const indexed = new Map([
    ['1', stampOf(a)],
    ['2', stampOf(b)],
  ])
  const plan = planSync({ pages: [a, b], spaceNames }, indexed, false, new Set(['1', '9']))
  t.same(plan.changed, [{ ...a, ancestors: [] }])
  t.same(plan.restamped, [])
  t.same(planSync({ pages: [a, b], spaceNames }, indexed, false).changed, [], 'none by default')
})

t.test('indexed pages the listing left out are candidates for deletion', async (t) => {
  const a = page('1')
  const indexed = new Map([
    ['1', stampOf(a)],
    ['2', stampOf(page('2'))],
    ['3', stampOf(page('3'))],
  ])
  t.same(planSync({ pages: [a], spaceNames }, indexed, false).candidates, ['2', '3'])
  t.same(planSync({ pages: [], spaceNames }, new Map(), false).candidates, [])
})

t.test('a deletion of more than the configured share is refused unless forced', async (t) => {
  t.equal(deleteRefusal(0, 0, 0.5, false), null, 'nothing gone')
  t.equal(deleteRefusal(0, 10, 0, false), null, 'nothing gone, whatever the share')
  t.equal(deleteRefusal(5, 10, 0.5, false), null, 'exactly the share')
  t.equal(deleteRefusal(3, 7, 0.5, false), null, 'the share rounds down: 3 of 7 at 0.5')
  t.equal(
    deleteRefusal(4, 7, 0.5, false),
    'Refused to delete 4 of 7 indexed pages (57%, over SYNC_MAX_DELETE_SHARE=0.5): check the ' +
      'source\'s credentials and permissions, then sync with {"force":true} if the pages were ' +
      'really removed',
    'one page over the share',
  )
  t.match(deleteRefusal(1, 10, 0, false), /^Refused to delete 1 of 10 indexed pages \(10%/)
  t.equal(deleteRefusal(10, 10, 0.9, true), null, 'forced')
  t.equal(deleteRefusal(9, 10, 0.9, false), null, 'a configured share of 90%')
  t.match(deleteRefusal(10, 10, 0.9, false), /\(100%, over SYNC_MAX_DELETE_SHARE=0\.9\)/)
  t.match(deleteRefusal(2, 3, 0.5, false), /\(67%,/, 'the share shown rounds to the nearest')
})

t.test('a restamp gives new vectors only to chunks whose breadcrumb changes', async (t) => {
  const p = page('2', { labels: ['new'] })
  const pages = new Map([['2', { page: p, trail: 'Engineering › Root › Page 2' }]])
  const stored = (n: number, heading_path: string, breadcrumb: string) => ({
    chunk_id: `s:2:${n}`,
    page_id: '2',
    heading_path,
    breadcrumb,
    text: `text ${n}`,
  })
  const { kept, moved } = splitRestamp(
    [
      stored(0, '', 'Engineering › Root › Page 2'),
      stored(1, 'Setup', 'Engineering › Old › Page 2 › Setup'),
      stored(2, 'Setup › Linux', 'Engineering › Root › Page 2 › Setup › Linux'),
    ],
    pages,
  )
  t.same(kept, [
    { chunk_id: 's:2:0', breadcrumb: 'Engineering › Root › Page 2', labels: ['new'] },
    {
      chunk_id: 's:2:2',
      breadcrumb: 'Engineering › Root › Page 2 › Setup › Linux',
      labels: ['new'],
    },
  ])
  t.same(moved, [
    {
      chunk_id: 's:2:1',
      breadcrumb: 'Engineering › Root › Page 2 › Setup',
      labels: ['new'],
      page_id: '2',
      text: 'text 1',
    },
  ])
  kept[0]?.labels.push('changed')
  t.same(p.labels, ['new'], "a restamp's labels are its own copy")
})
