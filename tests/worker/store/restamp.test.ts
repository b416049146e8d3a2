import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type ChunkRow, rowChunkId } from '@confluence-bot/shared'
import { Redis } from 'ioredis'
import t from 'tap'
import { openChunkStore } from '../../../services/worker/src/store/chunks.ts'
import { startRedis } from '../../helpers/redis.ts'

// The store's side of restamping: what a page's chunks were stamped with, and rewriting it.

const server = await startRedis()
t.teardown(() => server.stop())

async function store(t: { teardown(fn: () => unknown): void }) {
  const dir = await mkdtemp(join(tmpdir(), 'cnfl-restamp-'))
  const redis = new Redis(server.url)
  const s = await openChunkStore({ uri: dir, redis, vectorIndexMinRows: 300, lockKey: dir })
  t.teardown(async () => {
    await s.close()
    await redis.quit()
    await rm(dir, { recursive: true, force: true })
  })
  return s
}

const chunk = (pageId: string, pos: number, over: Partial<ChunkRow> = {}): ChunkRow => ({
  chunk_id: rowChunkId('s1', pageId, pos),
  source_id: 's1',
  space: 'ENG',
  page_id: pageId,
  version: '1',
  chunk_pos: pos,
  title: 'T',
  breadcrumb: `ENG › T › H${pos}`,
  heading_path: `H${pos}`,
  url: `https://wiki/p/${pageId}#h${pos}`,
  text: `text ${pos}`,
  updated_at: '',
  labels: ['a'],
  vector: null,
  embed_model: '',
  ...over,
})

t.test('an empty store has no stamps, chunks or rows without vectors', async (t) => {
  const s = await store(t)
  t.same(await s.pageStamps('s1'), new Map())
  t.same(await s.pageChunks('s1', ['p1']), [])
  t.equal(await s.countWithoutVectors(), 0)
  t.equal(await s.restampChunks([]), 0)
})

t.test('stamps: a page whose chunks disagree reads as changed', async (t) => {
  const s = await store(t)
  await s.useEmbedding('m', 2)
  await s.replacePages(
    's1',
    [],
    [
      chunk('p1', 0),
      chunk('p1', 1, { labels: ['b'] }),
      chunk('p2', 0, { breadcrumb: 'no heading path at its end' }),
    ],
  )
  const stamps = await s.pageStamps('s1')
  t.match(stamps.get('p1'), { version: '', trail: 'ENG › T', url: 'https://wiki/p/p1' })
  t.match(stamps.get('p2'), { version: '1', trail: '', vectors: false })
  t.same(await s.pageChunks('s1', []), [])
  t.equal((await s.pageChunks('s1', ['p1'])).length, 2)
  t.equal(await s.countWithoutVectors(), 3)
  await t.rejects(
    s.restampChunks([{ chunk_id: rowChunkId('s1', 'p1', 0), breadcrumb: 'x', labels: [] }], 'n'),
    { message: 'vectors of n cannot be stored: the table records m' },
  )
  const item = { chunk_id: rowChunkId('s1', 'p1', 0), breadcrumb: 'x', labels: [] }
  t.equal(await s.restampChunks([{ ...item, vector: [1, 0] }], 'm'), 1)
  t.equal(await s.countWithoutVectors(), 2)
})

t.test('vectors for a table that records no model are refused', async (t) => {
  const s = await store(t)
  await s.replacePages('s1', [], [chunk('p1', 0)])
  await t.rejects(
    s.restampChunks([{ chunk_id: rowChunkId('s1', 'p1', 0), breadcrumb: 'x', labels: [] }], 'm'),
    { message: 'vectors of m cannot be stored: the table records no embedding model' },
  )
})

t.test('a chunk above the first heading has the page trail as its breadcrumb', async (t) => {
  const { chunkBreadcrumb, pageTrail } = await import('../../../services/worker/src/ingest/rows.ts')
  const trail = pageTrail('Engineering', ['Guides'], 'Install')
  t.equal(trail, 'Engineering › Guides › Install')
  t.equal(chunkBreadcrumb(trail, ''), trail)
  t.equal(chunkBreadcrumb(trail, 'Linux › apt'), `${trail} › Linux › apt`)
})
