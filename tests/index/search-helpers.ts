import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ftsIndex } from '@confluence-bot/index'
import {
  CHUNKS_TABLE,
  ChunkColumn,
  type ChunkRow,
  EmbedMeta,
  rowChunkId,
} from '@confluence-bot/shared'
import * as lancedb from '@lancedb/lancedb'
import {
  arrow,
  chunkSchema,
  type Embedding,
  rowsToArrow,
} from '../../services/worker/src/store/arrow.ts'

// Chunk tables for the search tests, written straight through LanceDB with the worker's Arrow
// helpers (the tests that need maintain() use the worker's store itself).

type T = { teardown(fn: () => unknown): void }

export function tempUri(t: T): string {
  const dir = mkdtempSync(join(tmpdir(), 'cnfl-search-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

export type RowSpec = Partial<ChunkRow> & { page_id: string; text: string }

let counter = 0

/** A full chunk row: page `page_id` of source `s1` in space `ENG`, unless the spec says else. */
export function chunkRow(spec: RowSpec, model = 'embed'): ChunkRow {
  const source = spec.source_id ?? 's1'
  const pos = spec.chunk_pos ?? counter++
  const vector = spec.vector ?? null
  return {
    chunk_id: rowChunkId(source, spec.page_id, pos),
    source_id: source,
    space: 'ENG',
    version: '1',
    chunk_pos: pos,
    title: `Page ${spec.page_id}`,
    breadcrumb: `Space › Page ${spec.page_id}`,
    heading_path: '',
    url: `https://wiki.example/pages/${spec.page_id}`,
    updated_at: '2024-05-01T10:00:00.000Z',
    labels: [],
    embed_model: vector === null ? '' : model,
    ...spec,
    vector,
  }
}

/**
 * Writes a chunk table of `rows` (replacing any), recording `embedding` (null: no vector
 * column) and `queryPrefix` in its metadata (none: no such key, as in a table written before
 * prefixes were recorded).
 */
export async function writeTable(
  uri: string,
  rows: RowSpec[],
  embedding: { model: string; dim: number } | null = { model: 'embed', dim: 4 },
  queryPrefix?: string,
  fts = true,
): Promise<lancedb.Table> {
  const db = await lancedb.connect(uri)
  const setup = { documentPrefix: '', queryPrefix: queryPrefix ?? '', ...embedding }
  const made = chunkSchema(embedding === null ? null : (setup as Embedding))
  // Without a prefix: metadata as a table written before prefixes were recorded (no key).
  const metadata = new Map(made.metadata)
  if (queryPrefix === undefined) metadata.delete(EmbedMeta.queryPrefix)
  else metadata.set(EmbedMeta.queryPrefix, queryPrefix)
  const schema = new arrow.Schema(made.fields, metadata)
  const data = rowsToArrow(
    schema,
    rows.map((r) => chunkRow(r, embedding?.model)),
  )
  const table = await db.createTable(CHUNKS_TABLE, data, { mode: 'overwrite' })
  if (fts) await table.createIndex(ChunkColumn.text, { config: ftsIndex(), replace: true })
  return table
}

/** Appends rows to the existing table. */
export async function addRows(uri: string, rows: RowSpec[], model = 'embed') {
  const db = await lancedb.connect(uri)
  const table = await db.openTable(CHUNKS_TABLE)
  await table.add(
    rowsToArrow(
      await table.schema(),
      rows.map((r) => chunkRow(r, model)),
    ),
  )
  table.close()
}

/** An embedder answering from a map of texts (prefix included) and recording its calls. */
export function mapEmbedder(vectors: Record<string, number[]>) {
  const calls: Array<{ text: string; model: string }> = []
  const embed = async (text: string, model: string) => {
    calls.push({ text, model })
    const v = vectors[text]
    return v === undefined ? null : Float32Array.from(v)
  }
  return { embed, calls }
}
