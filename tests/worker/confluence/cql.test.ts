import t from 'tap'
import {
  cqlId,
  cqlString,
  idsCql,
  isNarrowed,
  scopeCql,
} from '../../../services/worker/src/confluence/cql.ts'
import { type ConfluenceError, isFatal } from '../../../services/worker/src/confluence/errors.ts'
import { compileCql } from '../../helpers/confluence-stand-in.ts'

t.test('string literals are quoted and escaped', async (t) => {
  t.equal(cqlString('ENG'), '"ENG"')
  t.equal(cqlString('say "hi"'), '"say \\"hi\\""')
  t.equal(cqlString('back\\slash'), '"back\\\\slash"')
  t.equal(cqlString('~jdoe'), '"~jdoe"')
})

t.test('ids are digits only', async (t) => {
  t.equal(cqlId('123'), '123')
  const err = t.throws(() => cqlId('1 OR 1=1', 'root_page_id')) as ConfluenceError
  t.equal(err.code, 'config')
  t.ok(isFatal(err))
  t.match(err.message, 'root_page_id "1 OR 1=1"')
  t.throws(() => cqlId(''))
  t.throws(() => cqlId('12345678901234567890'), 'longer than int64')
})

t.test('isNarrowed: cql, root page or labels narrow the spaces', async (t) => {
  t.notOk(isNarrowed({ spaces: ['A'] }))
  t.notOk(isNarrowed({ spaces: ['A'], cql: '  ', labels: { include: [], exclude: [] } }))
  t.ok(isNarrowed({ spaces: ['A'], cql: 'title ~ "x"' }))
  t.ok(isNarrowed({ spaces: ['A'], root_page_id: '5' }))
  t.ok(isNarrowed({ spaces: ['A'], labels: { include: ['x'] } }))
  t.ok(isNarrowed({ spaces: ['A'], labels: { exclude: ['x'] } }))
})

t.test('scopeCql puts every part together, in order', async (t) => {
  t.equal(scopeCql({ spaces: [] }), 'type = page')
  t.equal(scopeCql({ spaces: ['ENG'] }), 'type = page AND space = "ENG"')
  t.equal(
    scopeCql({
      spaces: ['A', 'B"C'],
      cql: ' label = "x" OR title ~ "y" ',
      root_page_id: '123',
      labels: { include: ['in1', 'in2'], exclude: ['out'] },
    }),
    'type = page AND space in ("A","B\\"C") AND (label = "x" OR title ~ "y") AND ' +
      '(id = 123 OR ancestor = 123) AND label in ("in1","in2") AND label not in ("out")',
  )
  t.throws(() => scopeCql({ spaces: ['A'], root_page_id: 'abc' }), { code: 'config' })
})

t.test('idsCql', async (t) => {
  t.equal(idsCql(['1', '22']), 'type = page AND id in (1,22)')
  t.throws(() => idsCql(['1', 'x']))
})

t.test('the built CQL means what it says (stand-in evaluator)', async (t) => {
  type Page = { id: string; spaceKey: string; labels: string[]; parentId?: string; title: string }
  const pages: Page[] = [
    { id: '1', spaceKey: 'A', labels: [], title: 'Root' },
    { id: '2', spaceKey: 'A', labels: ['in1'], parentId: '1', title: 'Child' },
    { id: '3', spaceKey: 'A', labels: ['in1', 'out'], parentId: '2', title: 'Grandchild' },
    { id: '4', spaceKey: 'B"C', labels: ['in2'], title: 'Other' },
    { id: '5', spaceKey: 'D', labels: ['in1'], title: 'Elsewhere' },
  ]
  const byId = new Map(pages.map((page) => [page.id, page]))
  const ancestors = (page: Page) => {
    const out: string[] = []
    for (let p = page.parentId; p !== undefined; p = byId.get(p)?.parentId) out.push(p)
    return out
  }
  const run = (cql: string) => {
    const predicate = compileCql(cql, {
      type: () => ['page'],
      space: (page) => [page.spaceKey],
      id: (page) => [page.id],
      ancestor: (page) => ancestors(page as unknown as Page),
      label: (page) => page.labels ?? [],
    })
    return pages
      .filter((page) => predicate({ ...page, version: 1, storage: '' }))
      .map((page) => page.id)
  }
  t.same(run(scopeCql({ spaces: ['A', 'B"C'] })), ['1', '2', '3', '4'])
  t.same(run(scopeCql({ spaces: ['A'], root_page_id: '2' })), ['2', '3'])
  t.same(run(scopeCql({ spaces: ['A', 'B"C'], labels: { include: ['in1', 'in2'] } })), [
    '2',
    '3',
    '4',
  ])
  t.same(run(scopeCql({ spaces: ['A'], labels: { exclude: ['out'] } })), ['1', '2'])
  t.same(run(scopeCql({ spaces: [], cql: 'space = D OR id = 1' })), ['1', '5'])
  t.same(run(idsCql(['5', '3', '9'])), ['3', '5'])
})
