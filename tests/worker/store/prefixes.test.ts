import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { lancedbConnect } from '@confluence-bot/index'
import { CHUNKS_TABLE, type ChunkRow, EmbedMeta, rowChunkId } from '@confluence-bot/shared'
import { Redis } from 'ioredis'
import t from 'tap'
import { arrow, chunkSchema, rowsToArrow } from '../../../services/worker/src/store/arrow.ts'
import { openChunkStore } from '../../../services/worker/src/store/chunks.ts'
import { startRedis } from '../../helpers/redis.ts'

// The table records which document prefix its vectors were made with and which query prefix
// pairs with them (real LanceDB, real Redis for the writer lock). A vector made with another
// document prefix never lands; a new document prefix resets the vectors as a new model does; a
// new query prefix alone only changes the metadata.

const server = await startRedis()
t.teardown(() => server.stop())

const NOMIC = { document: 'search_document: ', query: 'search_query: ' }

async function fixture(t: { teardown(fn: () => unknown): void }) {
  const dir = await mkdtemp(join(tmpdir(), 'cnfl-prefixes-'))
  const redis = new Redis(server.url)
  const open = async () => {
    const store = await openChunkStore({
      uri: dir,
      redis,
      vectorIndexMinRows: 1000,
      lockKey: `test:lock:${dir}`,
      versionGraceMs: 0,
    })
    t.teardown(() => store.close())
    return store
  }
  /** The table's schema metadata and its vector field's, as a reader (search) sees them. */
  const metadata = async () => {
    const table = await (await lancedbConnect(dir)).openTable(CHUNKS_TABLE)
    const schema = await table.schema()
    const field = schema.fields.find((f) => f.name === 'vector')
    return {
      table: Object.fromEntries(schema.metadata),
      vector: Object.fromEntries(field?.metadata ?? []),
    }
  }
  t.teardown(async () => {
    await redis.quit()
    await rm(dir, { recursive: true, force: true })
  })
  return { dir, open, metadata }
}

const vec = (seed: number) => Array.from({ length: 4 }, (_, i) => (seed + i) / 10)

function chunk(pageId: string, pos: number, over: Partial<ChunkRow> = {}): ChunkRow {
  return {
    chunk_id: rowChunkId('s1', pageId, pos),
    source_id: 's1',
    space: 'ENG',
    page_id: pageId,
    version: '1',
    chunk_pos: pos,
    title: `Page ${pageId}`,
    breadcrumb: `ENG › Page ${pageId}`,
    heading_path: '',
    url: `https://wiki.example.com/${pageId}`,
    text: `chunk ${pos}`,
    updated_at: '2026-01-02T03:04:05.000Z',
    labels: [],
    vector: null,
    embed_model: '',
    ...over,
  }
}

const embedded = (pageId: string, n: number, model = 'm') =>
  Array.from({ length: n }, (_, pos) =>
    chunk(pageId, pos, { vector: vec(pos), embed_model: model }),
  )

const recorded = (model: string, prefixes: { document: string; query: string }) => ({
  [EmbedMeta.model]: model,
  [EmbedMeta.dim]: '4',
  [EmbedMeta.documentPrefix]: prefixes.document,
  [EmbedMeta.queryPrefix]: prefixes.query,
})

t.test(
  'a table made by the first write records the prefixes its vectors were made with',
  async (t) => {
    // The sync chose in another process: the batch's rows and prefixes shape the table.
    const { open, metadata } = await fixture(t)
    const store = await open()
    await store.replacePages('s1', [], embedded('p1', 2), undefined, NOMIC)
    t.same(await metadata(), { table: recorded('m', NOMIC), vector: recorded('m', NOMIC) })
    t.same(await store.embedding(), {
      model: 'm',
      dim: 4,
      documentPrefix: 'search_document: ',
      queryPrefix: 'search_query: ',
    })
    t.equal(await store.countRows('vector IS NOT NULL'), 2)

    // Vectors made with another document prefix (a batch of a sync that chose before a change)
    // are stored as null; those made like the table's are kept.
    await store.replacePages('s1', [], embedded('p2', 2), undefined, { document: '', query: '' })
    await store.replacePages('s1', [], embedded('p3', 1), undefined, NOMIC)
    t.equal(await store.countRows("page_id = 'p2' AND vector IS NULL AND embed_model = ''"), 2)
    t.equal(await store.countRows("page_id = 'p3' AND vector IS NOT NULL"), 1)
    // Without prefixes (a job from before they existed): none, which is not this table's.
    await store.replacePages('s1', [], embedded('p4', 1))
    t.equal(await store.countRows("page_id = 'p4' AND vector IS NULL"), 1)
  },
)

t.test('a deferred choice records its prefixes when this process first writes', async (t) => {
  const { open, metadata } = await fixture(t)
  const store = await open()
  t.equal(await store.useEmbedding('m', 4, NOMIC), 'deferred')
  t.same(await store.embedding(), {
    model: 'm',
    dim: 4,
    documentPrefix: 'search_document: ',
    queryPrefix: 'search_query: ',
  })
  // Rows made otherwise do not override the sync's choice: their vectors are dropped instead.
  await store.replacePages('s1', [], embedded('p1', 1), undefined, { document: '', query: '' })
  t.same((await metadata()).table, recorded('m', NOMIC))
  t.equal(await store.countRows('vector IS NULL'), 1)
})

t.test('a new document prefix resets every vector; a new query prefix keeps them', async (t) => {
  const { open, metadata } = await fixture(t)
  const store = await open()
  await store.useEmbedding('m', 4, NOMIC)
  await store.replacePages('s1', [], embedded('p1', 3), undefined, NOMIC)
  t.equal(await store.useEmbedding('m', 4, NOMIC), 'unchanged')

  const query = { ...NOMIC, query: 'find: ' }
  t.equal(await store.useEmbedding('m', 4, query), 'relabelled')
  t.same(await metadata(), { table: recorded('m', query), vector: recorded('m', query) })
  t.equal(await store.countRows("vector IS NOT NULL AND embed_model = 'm'"), 3, 'vectors kept')
  t.same((await store.pageVersions('s1')).get('p1'), { version: '1', vectors: true })
  t.equal(await store.useEmbedding('m', 4, query), 'unchanged')

  const document = { ...query, document: 'passage: ' }
  t.equal(await store.useEmbedding('m', 4, document), 'replaced')
  t.same(await metadata(), { table: recorded('m', document), vector: recorded('m', document) })
  t.equal(await store.countRows('vector IS NOT NULL'), 0, 'vectors reset')
  t.equal(await store.countRows("embed_model != ''"), 0)
  t.equal((await store.rowsWithoutVectors('s1', 10)).length, 3)

  // Vectors of the old prefix cannot be stored any more, by the fill or by a restamp.
  const item = { chunk_id: rowChunkId('s1', 'p1', 0), vector: vec(9) }
  await t.rejects(store.setVectors('m', [item], 'search_document: '), {
    message: /document prefix "passage: "/,
  })
  await t.rejects(store.setVectors('m', [item]), /document prefix "passage: "/)
  const restamp = { chunk_id: item.chunk_id, breadcrumb: 'x', labels: [], vector: vec(9) }
  await t.rejects(store.restampChunks([restamp], 'm', 'search_document: '), /document prefix/)
  t.equal(await store.countRows('vector IS NOT NULL'), 0)
  // Made with the new one, they are.
  t.equal(await store.setVectors('m', [item], 'passage: '), 1)
  t.equal(
    await store.restampChunks(
      [{ ...restamp, chunk_id: rowChunkId('s1', 'p1', 1) }],
      'm',
      'passage: ',
    ),
    1,
  )
  t.equal(await store.countRows('vector IS NOT NULL'), 2)
})

t.test('a table written before prefixes were recorded reads as made without any', async (t) => {
  const { dir, open, metadata } = await fixture(t)
  // As the store wrote it then: model and dimension only, in the table and on the vector field.
  const full = chunkSchema({ model: 'm', dim: 4, documentPrefix: '', queryPrefix: '' })
  const legacy = (meta: Map<string, string>) =>
    new Map([...meta].filter(([key]) => key === EmbedMeta.model || key === EmbedMeta.dim))
  const schema = new arrow.Schema(
    full.fields.map((f) =>
      f.name === 'vector' ? new arrow.Field(f.name, f.type, f.nullable, legacy(f.metadata)) : f,
    ),
    legacy(full.metadata),
  )
  const db = await lancedbConnect(dir)
  await db.createTable(CHUNKS_TABLE, rowsToArrow(schema, embedded('p1', 2)))
  t.same((await metadata()).table, { [EmbedMeta.model]: 'm', [EmbedMeta.dim]: '4' })

  const store = await open()
  t.same(await store.embedding(), { model: 'm', dim: 4, documentPrefix: '', queryPrefix: '' })
  // Same setup without prefixes: nothing to change (and nothing written).
  t.equal(await store.useEmbedding('m', 4), 'unchanged')
  t.equal(await store.setVectors('m', [{ chunk_id: rowChunkId('s1', 'p1', 0), vector: vec(1) }]), 0)
  // The model's prefixes now configured: its vectors lack them, so they are made again.
  t.equal(await store.useEmbedding('m', 4, NOMIC), 'replaced')
  t.same((await metadata()).table, recorded('m', NOMIC))
  t.equal(await store.countRows('vector IS NOT NULL'), 0)
})
