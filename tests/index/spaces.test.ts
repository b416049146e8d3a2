import { indexedSpaces, SPACES_STALE_MS, spaceList } from '@confluence-bot/index'
import { CHUNKS_TABLE } from '@confluence-bot/shared'
import * as lancedb from '@lancedb/lancedb'
import t from 'tap'
import { tempUri } from './search-helpers.ts'

// The spaces the chunk table holds, counted by distinct page, and the listing the api serves:
// one scan at a time, reused while the table is unchanged and for SPACES_STALE_MS after it.

type Row = { space: string; source_id: string; page_id: string; chunk_pos: number; text: string }

/** The chunks of one page of one source: positions 0..count-1. */
const page = (space: string, source: string, id: string, count: number): Row[] =>
  Array.from({ length: count }, (_, pos) => ({
    space,
    source_id: source,
    page_id: id,
    chunk_pos: pos,
    text: `${id} part ${pos}`,
  }))

async function database(t: Parameters<typeof tempUri>[0]) {
  const db = await lancedb.connect(tempUri(t))
  t.teardown(() => db.close())
  return db
}

/** A connection whose chunk table counts its scans (its queries). */
function counting(db: lancedb.Connection) {
  const counter = { scans: 0, opens: 0 }
  const connection = async () =>
    new Proxy(db, {
      get(target, name) {
        const value = Reflect.get(target, name, target)
        if (name !== 'openTable') return typeof value === 'function' ? value.bind(target) : value
        return async (table: string) => {
          counter.opens += 1
          const opened = await target.openTable(table)
          return new Proxy(opened, {
            get(inner, member) {
              const found = Reflect.get(inner, member, inner)
              if (member !== 'query') return typeof found === 'function' ? found.bind(inner) : found
              return () => {
                counter.scans += 1
                return inner.query()
              }
            },
          })
        }
      },
    })
  return { counter, connection }
}

t.test('a page held by two sources of one space counts once', async (t) => {
  const db = await database(t)
  t.same(await indexedSpaces(db), [], 'no table yet: no space')
  await db.createTable(CHUNKS_TABLE, [
    ...page('ENG', 'src-a', '101', 3),
    ...page('ENG', 'src-a', '102', 1),
    // A second source over the same space: the same pages, one of them at a newer version.
    ...page('ENG', 'src-b', '101', 4),
    ...page('ENG', 'src-b', '102', 1),
    ...page('OPS', 'src-a', '201', 2),
  ])
  t.same(await indexedSpaces(db), [
    { space: 'ENG', pages: 2, chunks: 5 },
    { space: 'OPS', pages: 1, chunks: 2 },
  ])
})

t.test('one scan at a time, reused while fresh or unchanged', async (t) => {
  const db = await database(t)
  const { counter, connection } = counting(db)
  let clock = 1_000_000
  const list = spaceList(connection, { now: () => clock })

  t.same(await list(), [], 'no table: nothing listed')
  t.equal(counter.opens, 0, 'and nothing opened')
  const table = await db.createTable(CHUNKS_TABLE, page('ENG', 'src-a', '101', 2))
  t.same(await list(), [{ space: 'ENG', pages: 1, chunks: 2 }], 'a new table is listed at once')
  t.equal(counter.scans, 1)

  clock += SPACES_STALE_MS + 1
  const burst = await Promise.all(Array.from({ length: 20 }, () => list()))
  t.equal(counter.opens, 2, 'twenty callers share one look at the table')
  t.equal(counter.scans, 1, 'unchanged since: no scan')
  for (const answer of burst) t.same(answer, [{ space: 'ENG', pages: 1, chunks: 2 }])

  await table.add(page('OPS', 'src-a', '201', 1))
  clock += SPACES_STALE_MS - 1
  t.same(await list(), [{ space: 'ENG', pages: 1, chunks: 2 }], 'changed, but still fresh')
  t.equal(counter.opens, 2, 'not even opened')
  clock += 2
  const [first, second] = await Promise.all([list(), list()])
  const now = [
    { space: 'ENG', pages: 1, chunks: 2 },
    { space: 'OPS', pages: 1, chunks: 1 },
  ]
  t.same(first, now, 'changed and stale: scanned again')
  t.same(second, now)
  t.equal(counter.scans, 2, 'once for both callers')
  table.close()
})

t.test('a failed look is shared by its callers and not kept', async (t) => {
  const db = await database(t)
  await db.createTable(CHUNKS_TABLE, page('ENG', 'src-a', '101', 1))
  let broken = true
  let attempts = 0
  const { counter, connection } = counting(db)
  const list = spaceList(async () => {
    attempts += 1
    if (broken) throw new Error('the index is not readable')
    return connection()
  })
  const failures = await Promise.allSettled([list(), list()])
  t.same(
    failures.map((f) => f.status),
    ['rejected', 'rejected'],
  )
  t.equal(attempts, 1, 'both callers waited on one attempt')
  broken = false
  t.same(await list(), [{ space: 'ENG', pages: 1, chunks: 1 }], 'the next call tries again')
  t.equal(counter.scans, 1)
})
