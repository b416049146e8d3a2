import { createRequire } from 'node:module'
import { ChunkColumn, type ChunkRow, EmbedMeta, type EmbedSetup } from '@confluence-bot/shared'
import type { Data, Field, FixedSizeList, List, Schema, Table, Utf8 } from 'apache-arrow'

// @lancedb/lancedb is CommonJS and checks Arrow objects with instanceof against the CommonJS
// build of apache-arrow. An ESM `import` of apache-arrow loads its separate ESM build, whose
// classes fail those checks (addColumns(Field) throws "Invalid input type"), so the store takes
// Arrow from the build LanceDB itself uses.
export const arrow = createRequire(import.meta.url)('apache-arrow') as typeof import('apache-arrow')

/**
 * What the vector column holds: vectors of `dim` values from `model`, each made from a chunk
 * with `documentPrefix` before it; a query is embedded with `queryPrefix` before it to match.
 */
export type Embedding = EmbedSetup & { dim: number }

/** A row as written: its vector, if any, is from the table's recorded model and dimension. */
export type WriteRow = Omit<ChunkRow, 'vector'> & { vector: ArrayLike<number> | null }

const utf8 = () => new arrow.Utf8()

/** The nullable vector column for one embedding setup; its metadata records it too. */
export function vectorField(embedding: Embedding): Field {
  return new arrow.Field(
    ChunkColumn.vector,
    new arrow.FixedSizeList(embedding.dim, new arrow.Field('item', new arrow.Float32(), true)),
    true,
    embeddingMetadata(embedding),
  )
}

export const embeddingMetadata = (embedding: Embedding) =>
  new Map([
    [EmbedMeta.model, embedding.model],
    [EmbedMeta.dim, String(embedding.dim)],
    [EmbedMeta.documentPrefix, embedding.documentPrefix],
    [EmbedMeta.queryPrefix, embedding.queryPrefix],
  ])

/** The table schema: ChunkRow's columns, the vector column only when a model is known. */
export function chunkSchema(embedding: Embedding | null): Schema {
  const text = (name: string) => new arrow.Field(name, utf8(), false)
  const fields = [
    text(ChunkColumn.chunkId),
    text(ChunkColumn.sourceId),
    text(ChunkColumn.space),
    text(ChunkColumn.pageId),
    text(ChunkColumn.version),
    new arrow.Field(ChunkColumn.chunkPos, new arrow.Int32(), false),
    text(ChunkColumn.title),
    text(ChunkColumn.breadcrumb),
    text(ChunkColumn.headingPath),
    text(ChunkColumn.url),
    text(ChunkColumn.text),
    text(ChunkColumn.updatedAt),
    new arrow.Field(
      ChunkColumn.labels,
      new arrow.List(new arrow.Field('item', utf8(), true)),
      false,
    ),
    text(ChunkColumn.embedModel),
  ]
  if (embedding === null) return new arrow.Schema(fields)
  return new arrow.Schema([...fields, vectorField(embedding)], embeddingMetadata(embedding))
}

/**
 * The embedding a schema records, or null (no vector column, or one nobody described). A table
 * written before prefixes were recorded has no prefix keys: its vectors were made without one.
 */
export function schemaEmbedding(schema: Schema): Embedding | null {
  const field = schema.fields.find((f) => f.name === ChunkColumn.vector)
  const model = schema.metadata.get(EmbedMeta.model)
  if (field === undefined || model === undefined) return null
  return {
    model,
    dim: (field.type as FixedSizeList).listSize,
    documentPrefix: schema.metadata.get(EmbedMeta.documentPrefix) ?? '',
    queryPrefix: schema.metadata.get(EmbedMeta.queryPrefix) ?? '',
  }
}

// Columns are assembled from typed arrays rather than through LanceDB's row-object conversion:
// about three times faster for batches of a thousand 768-d rows, and the column types come from
// the table's own schema, so the batch always matches it.

function utf8Data(type: Utf8, values: readonly string[]): Data {
  const encoder = new TextEncoder()
  const parts = values.map((v) => encoder.encode(v))
  const valueOffsets = new Int32Array(values.length + 1)
  let size = 0
  parts.forEach((part, i) => {
    size += part.length
    valueOffsets[i + 1] = size
  })
  const data = new Uint8Array(size)
  let at = 0
  for (const part of parts) {
    data.set(part, at)
    at += part.length
  }
  return arrow.makeData({ type, length: values.length, nullCount: 0, valueOffsets, data })
}

function listData(type: List, lists: readonly (readonly string[])[]): Data {
  const valueOffsets = new Int32Array(lists.length + 1)
  lists.forEach((list, i) => {
    valueOffsets[i + 1] = (valueOffsets[i] as number) + list.length
  })
  const child = utf8Data((type.children[0] as Field<Utf8>).type, lists.flat())
  return arrow.makeData({ type, length: lists.length, nullCount: 0, valueOffsets, child })
}

function vectorData(type: FixedSizeList, vectors: readonly (ArrayLike<number> | null)[]): Data {
  const dim = type.listSize
  const values = new Float32Array(vectors.length * dim)
  const nullBitmap = new Uint8Array(Math.ceil(vectors.length / 8))
  let nullCount = 0
  vectors.forEach((vector, i) => {
    if (vector === null) {
      nullCount++
      return
    }
    values.set(vector, i * dim)
    nullBitmap[i >> 3] = (nullBitmap[i >> 3] as number) | (1 << (i & 7))
  })
  const child = arrow.makeData({
    type: (type.children[0] as Field).type,
    length: values.length,
    data: values,
  })
  return arrow.makeData({ type, length: vectors.length, nullCount, nullBitmap, child })
}

/** An Arrow table of `rows` with exactly the columns (and types) of `schema`. */
export function rowsToArrow(schema: Schema, rows: readonly Partial<WriteRow>[]): Table {
  const children = schema.fields.map((field) => {
    const values = rows.map((row) => row[field.name as keyof WriteRow])
    const type = field.type
    if (arrow.DataType.isFixedSizeList(type)) {
      return vectorData(type, values as (ArrayLike<number> | null)[])
    }
    if (arrow.DataType.isList(type)) return listData(type, values as string[][])
    if (arrow.DataType.isInt(type)) {
      return arrow.makeData({
        type,
        length: rows.length,
        data: Int32Array.from(values as number[]),
      })
    }
    return utf8Data(type as Utf8, values as string[])
  })
  const struct = arrow.makeData({
    type: new arrow.Struct(schema.fields),
    length: rows.length,
    nullCount: 0,
    children,
  })
  return new arrow.Table(schema, [new arrow.RecordBatch(schema, struct)])
}
