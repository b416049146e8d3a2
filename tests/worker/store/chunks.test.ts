import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { lancedbConnect, VECTOR_INDEX_MAX_SEGMENTS } from '@confluence-bot/index'
import { CHUNKS_TABLE, type ChunkRow, rowChunkId, sqlString } from '@confluence-bot/shared'
import type { FixedSizeList } from 'apache-arrow'
import { Redis } from 'ioredis'
import { pino } from 'pino'
import t from 'tap'
import {
  type ChunkStoreOptions,
  DEFAULT_CHUNKS_LOCK_KEY,
  openChunkStore,
} from '../../../services/worker/src/store/chunks.ts'
import { startRedis } from '../../helpers/redis.ts'

type Teardown = { teardown(fn: () => unknown): void }

const server = await startRedis()
t.teardown(() => server.stop())

/** A temp LanceDB directory and a Redis connection; stores opened on them close in teardown. */
async function fixture(t: Teardown) {
  const dir = await mkdtemp(join(tmpdir(), 'cnfl-chunks-'))
  const connections: Redis[] = []
  const connect = () => {
    const redis = new Redis(server.url)
    connections.push(redis)
    return redis
  }
  const redis = connect()
  // Each fixture has its own lock key, as if it were its own deployment.
  const lockKey = `test:lock:${dir}`
  const open = async (extra: Partial<ChunkStoreOptions> = {}) => {
    const store = await openChunkStore({
      uri: dir,
      redis,
      vectorIndexMinRows: 300,
      lockKey,
      // Compaction here removes every old version at once (no reader to wait for).
      versionGraceMs: 0,
      ...extra,
    })
    t.teardown(() => store.close())
    return store
  }
  const table = async () => (await lancedbConnect(dir)).openTable(CHUNKS_TABLE)
  t.teardown(async () => {
    await Promise.all(connections.map((c) => c.quit()))
    await rm(dir, { recursive: true, force: true })
  })
  return { dir, redis, connect, open, table, lockKey }
}

/** A unit vector that depends only on `seed`. */
function vec(seed: number, dim = 8): number[] {
  let x = (seed * 2654435761 + 1) >>> 0
  const v = Array.from({ length: dim }, () => {
    x = (x * 1664525 + 1013904223) >>> 0
    return x / 2 ** 32 - 0.5
  })
  const norm = Math.hypot(...v)
  return v.map((c) => c / norm)
}

function chunk(sourceId: string, pageId: string, pos: number, over: Partial<ChunkRow> = {}) {
  return {
    chunk_id: rowChunkId(sourceId, pageId, pos),
    source_id: sourceId,
    space: 'ENG',
    page_id: pageId,
    version: '1',
    chunk_pos: pos,
    title: `Page ${pageId}`,
    breadcrumb: `Engineering > Page ${pageId}`,
    heading_path: `Section ${pos}`,
    url: `https://wiki.example.com/pages/${pageId}#section-${pos}`,
    text: `chunk ${pos} of page ${pageId}`,
    updated_at: '2026-01-02T03:04:05.000Z',
    labels: ['howto', 'team-a'],
    vector: null,
    embed_model: '',
    ...over,
  } satisfies ChunkRow
}

const page = (sourceId: string, pageId: string, n: number, over: Partial<ChunkRow> = {}) =>
  Array.from({ length: n }, (_, pos) => chunk(sourceId, pageId, pos, over))

/** Every stored row without its vector, in a stable order. */
async function dump(table: Awaited<ReturnType<Awaited<ReturnType<typeof fixture>>['table']>>) {
  const rows = await table.query().toArray()
  return rows
    .map((r) => ({
      chunk_id: r.chunk_id as string,
      version: r.version as string,
      text: r.text as string,
      labels: [...r.labels],
      embed_model: r.embed_model as string,
      vector: r.vector === null || r.vector === undefined ? null : [...r.vector].length,
    }))
    .sort((a, b) => a.chunk_id.localeCompare(b.chunk_id))
}

const approx = (a: ArrayLike<number>, b: ArrayLike<number>) =>
  a.length === b.length && Array.from(a).every((x, i) => Math.abs(x - (b[i] as number)) < 1e-6)

t.test('a store over an empty directory reads empty and writes nothing it need not', async (t) => {
  const { open, dir } = await fixture(t)
  const store = await open()
  t.equal(await store.embedding(), null)
  t.same(await store.pageVersions('s1'), new Map())
  t.equal(await store.countRows(), 0)
  t.same(await store.rowsWithoutVectors(undefined, 10), [])
  t.equal(await store.deletePages('s1', ['p1']), 0)
  t.equal(await store.deletePages('s1', []), 0)
  t.equal(await store.deleteSource('s1'), 0)
  t.same(await store.replacePages('s1', [], []), { inserted: 0, updated: 0, deleted: 0 })
  t.same(await store.replacePages('s1', ['p1'], []), { inserted: 0, updated: 0, deleted: 0 })
  t.equal(await store.setVectors('m1', []), 0)
  await t.rejects(store.setVectors('m1', [{ chunk_id: 'x', vector: vec(1) }]), /no chunk table/)
  t.same(await store.maintain(), { rows: 0, indices: [], compacted: false })
  t.same(await (await lancedbConnect(dir)).tableNames(), [], 'no table was created')
})

t.test('writes wait for the writer lock; reads do not take it', async (t) => {
  const { open, redis } = await fixture(t)
  const store = await open({ lockKey: undefined })
  await redis.set(DEFAULT_CHUNKS_LOCK_KEY, 'another-writer')
  let written = false
  const write = store.replacePages('s1', [], page('s1', 'p1', 2)).then(() => {
    written = true
  })
  await sleep(100)
  t.equal(written, false, 'the write waits for the lock')
  t.equal(await store.countRows(), 0, 'a read does not wait')
  t.same(await store.pageVersions('s1'), new Map())
  await redis.del(DEFAULT_CHUNKS_LOCK_KEY)
  await write
  t.equal(await store.countRows(), 2)
  t.equal(await redis.exists(DEFAULT_CHUNKS_LOCK_KEY), 0, 'released')
})

t.test('replacePages twice with the same rows gives the same rows', async (t) => {
  const { open, table } = await fixture(t)
  const store = await open()
  const rows = [...page('s1', 'p1', 3), ...page('s1', 'p2', 2), ...page('s1', 'p3', 4)]
  const first = await store.replacePages('s1', ['p1', 'p2', 'p3'], rows)
  t.same(first, { inserted: 9, updated: 0, deleted: 0 })
  const before = await dump(await table())
  const second = await store.replacePages('s1', ['p1', 'p2', 'p3'], rows)
  t.same(second, { inserted: 0, updated: 9, deleted: 0 })
  t.same(await dump(await table()), before)
  t.equal(await store.countRows(), 9)
  t.same(before[0], {
    chunk_id: 's1:p1:0',
    version: '1',
    text: 'chunk 0 of page p1',
    labels: ['howto', 'team-a'],
    embed_model: '',
    vector: null,
  })
})

t.test('a page that shrinks loses its extra chunks in the same commit', async (t) => {
  const { open, table } = await fixture(t)
  const store = await open()
  await store.replacePages('s1', ['p1', 'p2'], [...page('s1', 'p1', 5), ...page('s1', 'p2', 3)])
  const versionBefore = await (await table()).version()
  const result = await store.replacePages('s1', ['p1'], page('s1', 'p1', 2, { version: '2' }))
  t.same(result, { inserted: 0, updated: 2, deleted: 3 })
  t.equal(await (await table()).version(), versionBefore + 1, 'one commit')
  const rows = await dump(await table())
  t.same(
    rows.map((r) => [r.chunk_id, r.version]),
    [
      ['s1:p1:0', '2'],
      ['s1:p1:1', '2'],
      ['s1:p2:0', '1'],
      ['s1:p2:1', '1'],
      ['s1:p2:2', '1'],
    ],
  )
  const versions = await store.pageVersions('s1')
  t.same(versions.get('p1'), { version: '2', vectors: false })
  t.same(versions.get('p2'), { version: '1', vectors: false })

  // Growing (or keeping its size) deletes nothing, also in one commit.
  const grown = await store.replacePages('s1', ['p1'], page('s1', 'p1', 4, { version: '3' }))
  t.same(grown, { inserted: 2, updated: 2, deleted: 0 })
  t.equal(await (await table()).version(), versionBefore + 2, 'one commit')
  t.equal(await store.countRows("page_id = 'p1' AND version = '3'"), 4)
})

t.test('a listed page without rows is removed; rows name their pages too', async (t) => {
  const { open } = await fixture(t)
  const store = await open()
  await store.replacePages('s1', [], [...page('s1', 'p1', 2), ...page('s1', 'p2', 2)])
  await store.replacePages('s1', [], page('s1', 'p3', 3))
  t.same(await store.replacePages('s1', ['p1'], []), { inserted: 0, updated: 0, deleted: 2 })
  // p2 removed and p3 shrunk (listed only through its rows) in one call.
  const result = await store.replacePages('s1', ['p2'], page('s1', 'p3', 1))
  t.same(result, { inserted: 0, updated: 1, deleted: 4 })
  t.same([...(await store.pageVersions('s1')).keys()], ['p3'])
  t.equal(await store.countRows(), 1)
})

t.test('deletes touch only the named source and pages', async (t) => {
  const { open } = await fixture(t)
  const store = await open()
  await store.replacePages('a', [], [...page('a', 'p1', 2), ...page('a', 'p2', 3)])
  await store.replacePages('b', [], [...page('b', 'p1', 4), ...page('b', 'p2', 1)])
  t.equal(await store.deletePages('b', ['p2', 'missing']), 1)
  t.equal(await store.countRows(`source_id = 'a'`), 5)
  t.equal(await store.deleteSource('a'), 5)
  t.equal(await store.countRows(), 4)
  t.same([...(await store.pageVersions('b')).keys()], ['p1'])
  t.same(await store.pageVersions('a'), new Map())
  t.equal(await store.deleteSource('a'), 0)
})

t.test('rows that do not fit their source or chunk id are refused', async (t) => {
  const { open } = await fixture(t)
  const store = await open()
  await t.rejects(store.replacePages('s1', [], page('s2', 'p1', 1)), /belongs to source s2/)
  await t.rejects(
    store.replacePages('s1', [], [chunk('s1', 'p1', 0, { chunk_id: 's1:p1:7' })]),
    /not rowChunkId/,
  )
  await t.rejects(
    store.replacePages('s1', [], [chunk('s1', 'p1', 0), chunk('s1', 'p1', 0)]),
    /appears twice/,
  )
  t.equal(await store.countRows(), 0)
})

t.test(
  'without a model the table has no vector column; useEmbedding and setVectors fill it',
  async (t) => {
    const { open, table } = await fixture(t)
    const store = await open()
    await store.replacePages('s1', [], [...page('s1', 'p1', 3), ...page('s2', 'p9', 0)])
    await store.replacePages('s2', [], page('s2', 'p9', 2))
    t.equal(await store.embedding(), null)
    t.notOk(
      (await (await table()).schema()).fields.some((f) => f.name === 'vector'),
      'no vector column',
    )
    t.same((await store.pageVersions('s1')).get('p1'), { version: '1', vectors: false })

    const pending = await store.rowsWithoutVectors(undefined, 100)
    t.equal(pending.length, 5)
    t.same(await store.rowsWithoutVectors('s1', 2).then((r) => r.length), 2)
    const one = pending.find((r) => r.chunk_id === 's1:p1:1')
    t.same(one, {
      chunk_id: 's1:p1:1',
      source_id: 's1',
      space: 'ENG',
      page_id: 'p1',
      version: '1',
      chunk_pos: 1,
      title: 'Page p1',
      breadcrumb: 'Engineering > Page p1',
      heading_path: 'Section 1',
      url: 'https://wiki.example.com/pages/p1#section-1',
      text: 'chunk 1 of page p1',
      updated_at: '2026-01-02T03:04:05.000Z',
      labels: ['howto', 'team-a'],
      embed_model: '',
    })

    await t.rejects(
      store.setVectors('m1', [{ chunk_id: 's1:p1:0', vector: vec(0) }]),
      /table records no embedding model/,
    )
    t.equal(await store.useEmbedding('m1', 8), 'added')
    t.same(await store.embedding(), { model: 'm1', dim: 8, documentPrefix: '', queryPrefix: '' })
    t.equal(await store.useEmbedding('m1', 8), 'unchanged')
    t.equal(await store.countRows('vector IS NULL'), 5, 'the new column is all null')

    await t.rejects(
      store.setVectors('m1', [{ chunk_id: 's1:p1:0', vector: vec(0, 4) }]),
      /has 4 dimensions, not 8/,
    )
    await t.rejects(
      store.setVectors('m0', [{ chunk_id: 's1:p1:0', vector: vec(0) }]),
      /table records m1/,
    )
    const s1 = await store.rowsWithoutVectors('s1', 100)
    const items = s1.map((r, i) => ({ chunk_id: r.chunk_id, vector: vec(i) }))
    t.equal(await store.setVectors('m1', [...items, { chunk_id: 'gone', vector: vec(9) }]), 3)
    t.same((await store.pageVersions('s1')).get('p1'), { version: '1', vectors: true })
    t.same((await store.pageVersions('s2')).get('p9'), { version: '1', vectors: false })
    t.same((await store.rowsWithoutVectors(undefined, 100)).map((r) => r.chunk_id).sort(), [
      's2:p9:0',
      's2:p9:1',
    ])
    t.equal(await store.setVectors('m1', items), 0, 'rows that have a vector keep it')

    const stored = await (await table()).query().where(`chunk_id = 's1:p1:2'`).toArray()
    const expected = items.find((i) => i.chunk_id === 's1:p1:2')?.vector as number[]
    t.ok(approx(stored[0].vector.toArray(), expected))
    t.equal(stored[0].embed_model, 'm1')
    t.equal(stored[0].text, 'chunk 2 of page p1', 'other columns are kept')
  },
)

t.test(
  'useEmbedding before the table exists shapes the table; foreign vectors are nulled',
  async (t) => {
    const { open, table } = await fixture(t)
    const lines: string[] = []
    const sink = new Writable({
      write(chunk, _enc, done) {
        lines.push(String(chunk))
        done()
      },
    })
    const store = await open({ log: pino({ level: 'warn' }, sink) })
    await t.rejects(store.useEmbedding('', 8), TypeError)
    await t.rejects(store.useEmbedding('m1', 0), TypeError)
    await t.rejects(store.useEmbedding('m1', 1.5), TypeError)
    t.equal(await store.useEmbedding('m1', 8), 'deferred')
    t.same(await store.embedding(), { model: 'm1', dim: 8, documentPrefix: '', queryPrefix: '' })

    const rows = [
      chunk('s1', 'p1', 0, { vector: vec(1), embed_model: 'm1' }),
      chunk('s1', 'p1', 1, { vector: vec(2), embed_model: 'other' }),
      chunk('s1', 'p1', 2, { vector: vec(3, 4), embed_model: 'm1' }),
      chunk('s1', 'p1', 3, { vector: null, embed_model: 'm1' }),
    ]
    await store.replacePages('s1', ['p1'], rows)
    const schema = await (await table()).schema()
    t.equal(schema.metadata.get('embed_model'), 'm1')
    t.equal(schema.metadata.get('embed_dim'), '8')
    const vectorType = schema.fields.find((f) => f.name === 'vector')?.type as FixedSizeList
    t.equal(vectorType.listSize, 8)
    t.same(
      (await dump(await table())).map((r) => [r.chunk_id, r.embed_model, r.vector]),
      [
        ['s1:p1:0', 'm1', 8],
        ['s1:p1:1', '', null],
        ['s1:p1:2', '', null],
        ['s1:p1:3', '', null],
      ],
    )
    t.match(lines.join(''), /"dropped":2.*stored as null/)
    t.same((await store.pageVersions('s1')).get('p1'), { version: '1', vectors: false })
  },
)

t.test(
  'a deferred model is applied when another process created the table meanwhile',
  async (t) => {
    const { open, connect } = await fixture(t)
    const a = await open()
    const b = await open({ redis: connect() })
    t.equal(await a.useEmbedding('m1', 8), 'deferred')
    await b.replacePages('s1', [], page('s1', 'p1', 2))
    t.equal(await b.embedding(), null, 'created without vectors by b')
    await a.replacePages('s1', [], page('s1', 'p2', 1, { vector: vec(5), embed_model: 'm1' }))
    t.same(
      await b.embedding(),
      { model: 'm1', dim: 8, documentPrefix: '', queryPrefix: '' },
      'b sees the column a added',
    )
    t.same((await b.pageVersions('s1')).get('p2'), { version: '1', vectors: true })
    t.equal((await b.rowsWithoutVectors('s1', 10)).length, 2)
  },
)

t.test('a model change leaves no vector of the old model, same or other dimension', async (t) => {
  const { open, table } = await fixture(t)
  const store = await open()
  await store.useEmbedding('m1', 8)
  const rows = Array.from({ length: 30 }, (_, p) =>
    page('s1', `p${p}`, 10).map((r, i) => ({ ...r, vector: vec(p * 10 + i), embed_model: 'm1' })),
  ).flat()
  await store.replacePages('s1', [], rows)
  const built = await store.maintain()
  t.ok(built.indices.includes('vector_idx'), 'vector index on 300 rows')

  t.equal(await store.useEmbedding('m2', 8), 'replaced')
  t.same(await store.embedding(), { model: 'm2', dim: 8, documentPrefix: '', queryPrefix: '' })
  t.equal(await store.countRows("embed_model != ''"), 0)
  t.equal(await store.countRows('vector IS NOT NULL'), 0)
  t.notOk(
    (await (await table()).listIndices()).some((i) => i.columns.includes('vector')),
    'the old index went with the old vectors',
  )
  t.notOk([...(await store.pageVersions('s1')).values()].some((p) => p.vectors))
  t.equal((await store.rowsWithoutVectors('s1', 1000)).length, 300)

  // A page job that embedded with the old model writes after the change: no old vector lands.
  await store.replacePages('s1', [], page('s1', 'p0', 2, { vector: vec(1), embed_model: 'm1' }))
  t.equal(await store.countRows('vector IS NOT NULL'), 0)
  await store.setVectors('m2', [{ chunk_id: 's1:p1:0', vector: vec(77) }])
  t.equal(await store.countRows("embed_model = 'm2'"), 1)

  t.equal(await store.useEmbedding('m3', 4), 'replaced')
  const schema = await (await table()).schema()
  const vectorType = schema.fields.find((f) => f.name === 'vector')?.type as FixedSizeList
  t.equal(vectorType.listSize, 4)
  t.equal(await store.countRows('vector IS NOT NULL'), 0)
  t.equal(await store.countRows("embed_model != ''"), 0)
  t.equal(await store.countRows(), 292)
  await store.setVectors('m3', [{ chunk_id: 's1:p1:0', vector: vec(1, 4) }])
  t.same((await store.pageVersions('s1')).get('p0'), { version: '1', vectors: false })
  t.equal(await store.countRows("embed_model = 'm3'"), 1)
})

t.test('maintain builds the full-text and scalar indices, then compacts', async (t) => {
  const { open, table } = await fixture(t)
  const store = await open()
  for (let p = 0; p < 4; p++) {
    await store.replacePages('s1', [], page('s1', `p${p}`, 3, { text: `ordinary words ${p}` }))
  }
  await store.replacePages('s1', [], [chunk('s1', 'p9', 0, { text: 'the zeppelin manual' })])
  const report = await store.maintain()
  t.same(report, {
    rows: 13,
    indices: ['source_id_idx', 'space_idx', 'text_idx'],
    compacted: true,
  })
  const hits = await (await table())
    .query()
    .fullTextSearch('zeppelin')
    .select(['chunk_id', '_score'])
    .toArray()
  t.same(
    hits.map((h) => h.chunk_id),
    ['s1:p9:0'],
  )
  // Rows written after the index are found too once maintain has folded them in.
  await store.replacePages('s1', [], [chunk('s1', 'p10', 0, { text: 'zeppelin again' })])
  const again = await store.maintain()
  t.same(again.indices, report.indices)
  const more = await (await table())
    .search('zeppelin', 'fts')
    .select(['chunk_id', '_score'])
    .toArray()
  t.same(more.map((h) => h.chunk_id).sort(), ['s1:p10:0', 's1:p9:0'])
  t.equal(await store.countRows(), 14)

  const forced = await store.maintain({ force: true })
  t.same(forced.indices, report.indices, 'rebuilt under the same names')
  t.equal((await (await table()).listVersions()).length, 1, 'old versions removed')
})

t.test('the vector index waits for vectorIndexMinRows rows with vectors', async (t) => {
  const { open, table } = await fixture(t)
  const store = await open()
  await store.useEmbedding('m1', 8)
  const make = (from: number, n: number) =>
    Array.from({ length: n }, (_, i) =>
      chunk('s1', `p${from + i}`, 0, { vector: vec(from + i), embed_model: 'm1' }),
    )
  await store.replacePages('s1', [], [...make(0, 299), ...page('s1', 'novec', 5)])
  const below = await store.maintain()
  t.equal(below.rows, 304)
  t.notOk(below.indices.includes('vector_idx'), 'not at 299 rows with vectors')

  await store.replacePages('s1', [], make(299, 1))
  const at = await store.maintain()
  t.ok(at.indices.includes('vector_idx'), 'built at 300')
  const index = (await (await table()).listIndices()).find((i) => i.name === 'vector_idx')
  t.equal(index?.indexType, 'IvfHnswSq')
  const nearest = await (await table())
    .query()
    .nearestTo(vec(42))
    .distanceType('cosine')
    // The index is approximate (quantised vectors): a wider search and an exact re-rank make
    // the exact match certain instead of likely.
    .ef(300)
    .refineFactor(10)
    .select(['chunk_id', '_distance'])
    .limit(1)
    .toArray()
  t.equal(nearest[0]?.chunk_id, 's1:p42:0')
})

t.test('a first sync’s appends are compacted, then indexed once over every row', async (t) => {
  const { open, table } = await fixture(t)
  const store = await open()
  await store.useEmbedding('m1', 8)
  // Twenty page batches appended one by one, as a first sync writes them: twenty fragments.
  for (let b = 0; b < 20; b++) {
    const rows = Array.from({ length: 4 }, (_, p) =>
      page('s1', `p${b * 4 + p}`, 4).map((r, i) => ({
        ...r,
        vector: vec(b * 100 + p * 10 + i),
        embed_model: 'm1',
      })),
    ).flat()
    await store.replacePages('s1', [], rows)
  }
  t.equal((await (await table()).stats()).fragmentStats.numFragments, 20)
  const report = await store.maintain()
  t.same(report, {
    rows: 320,
    indices: ['source_id_idx', 'space_idx', 'text_idx', 'vector_idx'],
    compacted: true,
  })
  const t1 = await table()
  t.equal((await t1.stats()).fragmentStats.numFragments, 1, 'one fragment left')
  for (const name of ['vector_idx', 'text_idx']) {
    const stats = await t1.indexStats(name)
    t.equal(stats?.numIndexedRows, 320, `${name} covers every row`)
    t.equal(stats?.numUnindexedRows, 0)
  }
  t.equal((await t1.indexStats('vector_idx'))?.distanceType, 'cosine')

  // A later sync's rows are folded into the indices the table has, nothing rebuilt.
  await store.replacePages('s1', [], page('s1', 'late', 3, { vector: vec(9), embed_model: 'm1' }))
  const later = await store.maintain()
  t.same(later.indices, report.indices)
  t.equal((await t1.indexStats('vector_idx'))?.numUnindexedRows, 0, 'new rows folded in')
  t.equal(await store.countRows(), 323)
})

t.test(
  'the vector index is rebuilt as one once upkeep passes leave more than VECTOR_INDEX_MAX_SEGMENTS',
  async (t) => {
    const { open, table } = await fixture(t)
    const lines: string[] = []
    const log = pino(
      { level: 'info' },
      new Writable({
        write(chunk, _encoding, done) {
          lines.push(String(chunk))
          done()
        },
      }),
    )
    const store = await open({ log })
    await store.useEmbedding('m1', 8)
    const rows = (from: number, n: number) =>
      Array.from({ length: n }, (_, i) =>
        chunk('s1', `p${from + i}`, 0, { vector: vec(from + i), embed_model: 'm1' }),
      )
    await store.replacePages('s1', [], rows(0, 300))
    await store.maintain()
    const segments = async () => (await (await table()).indexStats('vector_idx'))?.numIndices
    t.equal(await segments(), 1)
    // Each later pass folds its rows in as a segment of their own, until there would be too many.
    const seen: Array<number | undefined> = []
    for (let pass = 1; pass <= VECTOR_INDEX_MAX_SEGMENTS; pass++) {
      await store.replacePages('s1', [], rows(1000 + pass * 10, 10))
      await store.maintain()
      seen.push(await segments())
    }
    const growing = Array.from({ length: VECTOR_INDEX_MAX_SEGMENTS - 1 }, (_, i) => i + 2)
    t.same(seen, [...growing, 1], 'segments grow by one per pass, then the index is one again')
    const stats = await (await table()).indexStats('vector_idx')
    t.equal(stats?.numIndexedRows, 300 + VECTOR_INDEX_MAX_SEGMENTS * 10, 'every row indexed')
    t.equal(stats?.numUnindexedRows, 0)
    t.equal(lines.filter((l) => l.includes('index rebuilt')).length, 1, 'the rebuild is logged')
    const nearest = await (await table())
      .query()
      .nearestTo(vec(1000 + 3 * 10 + 4))
      .distanceType('cosine')
      .ef(300)
      .refineFactor(10)
      .select(['chunk_id'])
      .limit(1)
      .toArray()
    t.equal(nearest[0]?.chunk_id, 's1:p1034:0', 'a folded row is found through the rebuilt index')
  },
)

t.test('a table emptied by deletes is maintained without building indices', async (t) => {
  const { open } = await fixture(t)
  const store = await open()
  await store.replacePages('s1', [], page('s1', 'p1', 2))
  await store.deleteSource('s1')
  const report = await store.maintain()
  t.equal(report.rows, 0)
  t.same(report.indices, [])
})

t.test('two stores on two Redis connections writing at once end with the union', async (t) => {
  const { open, connect } = await fixture(t)
  const a = await open()
  const b = await open({ redis: connect() })
  const writes = []
  for (let i = 0; i < 15; i++) {
    writes.push(a.replacePages('s1', [`a${i}`], page('s1', `a${i}`, (i % 4) + 1)))
    writes.push(b.replacePages('s1', [`b${i}`], page('s1', `b${i}`, (i % 3) + 1)))
  }
  writes.push(b.replacePages('s2', [], page('s2', 'x', 3)))
  await Promise.all(writes)
  let expected = 3
  for (let i = 0; i < 15; i++) expected += (i % 4) + 1 + (i % 3) + 1
  t.equal(await a.countRows(), expected)
  t.equal(await b.countRows(), expected)
  const pages = await a.pageVersions('s1')
  t.equal(pages.size, 30)
  t.ok([...pages.keys()].every((id) => /^[ab]\d+$/.test(id)))
  t.equal(
    await a.countRows("chunk_id LIKE 's1:a%'"),
    Array.from({ length: 15 }, (_, i) => (i % 4) + 1).reduce((x, y) => x + y),
  )
})

t.test('hostile quotes and backslashes in ids stay data', async (t) => {
  const { open } = await fixture(t)
  const store = await open()
  const evil = "o'brien\\'); DELETE FROM chunks; --"
  const page1 = "it's \\ 'page'"
  await store.replacePages(evil, [], [...page(evil, page1, 3), ...page(evil, "x'' OR 1=1", 2)])
  await store.replacePages('o', [], page('o', 'brien', 2))
  await store.replacePages("o'brien", [], page("o'brien", page1, 1))
  t.same([...(await store.pageVersions(evil)).keys()].sort(), [page1, "x'' OR 1=1"])
  t.equal(await store.countRows(`source_id = ${sqlString(evil)}`), 5)
  t.equal((await store.rowsWithoutVectors(evil, 100)).length, 5)
  t.same(await store.replacePages(evil, [page1], page(evil, page1, 1)), {
    inserted: 0,
    updated: 1,
    deleted: 2,
  })
  t.equal(await store.deletePages(evil, ["x'' OR 1=1"]), 2)
  t.equal(await store.countRows(), 4)
  t.equal(await store.deleteSource(evil), 1)
  t.same(
    [...(await store.pageVersions("o'brien")).keys()],
    [page1],
    'a source whose id is a prefix of the hostile one is untouched',
  )
  t.equal(await store.countRows(), 3)
})

t.test('a page whose chunks disagree on the version reads as changed', async (t) => {
  const { open } = await fixture(t)
  const store = await open()
  await store.useEmbedding('m1', 8)
  await store.replacePages(
    's1',
    [],
    [
      chunk('s1', 'p1', 0, { version: '3', vector: vec(1), embed_model: 'm1' }),
      chunk('s1', 'p1', 1, { version: '4', vector: vec(2), embed_model: 'm1' }),
      chunk('s1', 'p2', 0, { version: '4', vector: vec(3), embed_model: 'm1' }),
      chunk('s1', 'p2', 1, { version: '4' }),
    ],
  )
  const pages = await store.pageVersions('s1')
  t.same(pages.get('p1'), { version: '', vectors: true })
  t.same(pages.get('p2'), { version: '4', vectors: false })
})
