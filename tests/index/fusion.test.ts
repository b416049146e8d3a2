import { createRequire } from 'node:module'
import {
  openSearchIndex,
  type ScoreFusionOptions,
  ScoreFusionReranker,
  type SearchHit,
} from '@confluence-bot/index'
import { rerankers } from '@lancedb/lancedb'
import type { RecordBatch, Vector } from 'apache-arrow'
import t, { type Test } from 'tap'
import { mapEmbedder, tempUri, writeTable } from './search-helpers.ts'

// Hybrid search's fusion: the arithmetic of distribution-based and relative score fusion on
// batches shaped as search.ts hands them to a reranker (and as LanceDB's RRFReranker takes
// them), then the reranker a search index is opened with doing the fusing.

const arrow = createRequire(import.meta.url)('apache-arrow') as typeof import('apache-arrow')

/** A leg's batch: row ids and their `_distance` (vector leg) or `_score` (full-text leg). */
function leg(column: '_distance' | '_score', rows: Array<[number, number]>): RecordBatch {
  const ids = arrow.makeVector(BigUint64Array.from(rows, ([id]) => BigInt(id)))
  const values = arrow.makeVector(Float32Array.from(rows, ([, value]) => value))
  return new arrow.RecordBatch({ _rowid: ids.data[0], [column]: values.data[0] } as never)
}

/** The fused batch as [row id, relevance] pairs, best first. */
function pairs(batch: RecordBatch): Array<[number, number]> {
  const ids = batch.getChild('_rowid') as Vector
  const scores = batch.getChild('_relevance_score') as Vector
  return Array.from({ length: batch.numRows }, (_, i) => [
    Number(ids.get(i)),
    scores.get(i) as number,
  ])
}

async function fuse(
  options: ScoreFusionOptions,
  vec: Array<[number, number]>,
  fts: Array<[number, number]>,
) {
  const reranker = new ScoreFusionReranker(options)
  return pairs(await reranker.rerankHybrid('q', leg('_distance', vec), leg('_score', fts)))
}

function near(t: Test, got: Array<[number, number]>, want: Array<[number, number]>) {
  t.same(
    got.map(([id]) => id),
    want.map(([id]) => id),
    'order',
  )
  got.forEach(([id, score], i) => {
    const expected = (want[i] as [number, number])[1]
    t.ok(Math.abs(score - expected) < 1e-5, `row ${id}: ${score} ≈ ${expected}`)
  })
}

t.test('distribution-based fusion: mean ± 3 sample deviations → 0…1, the legs alike', async (t) => {
  const fused = await fuse(
    {},
    [
      [1, 0.1],
      [2, 0.2],
      [3, 0.6],
    ],
    [
      [3, 5],
      [4, 1],
    ],
  )
  // Vector leg, negated distances −0.1, −0.2, −0.6: mean −0.3, sample deviation √0.07; 0 at
  // −0.3 − 3√0.07, 1 at −0.3 + 3√0.07. Full-text leg 5, 1: mean 3, deviation 2√2.
  const sd = Math.sqrt(0.07)
  const v = (x: number) => (x + 0.3 + 3 * sd) / (6 * sd)
  const k = (x: number) => (x - 3 + 6 * Math.SQRT2) / (12 * Math.SQRT2)
  near(t, fused, [
    [3, 0.5 * v(-0.6) + 0.5 * k(5)],
    [1, 0.5 * v(-0.1)],
    [2, 0.5 * v(-0.2)],
    [4, 0.5 * k(1)],
  ])
  t.equal(new ScoreFusionReranker().normalisation, 'distribution', 'the default')
  t.equal(new ScoreFusionReranker().vectorWeight, 0.5)
})

t.test('relative score fusion: min-max → 0…1, weighted toward the vector leg', async (t) => {
  const fused = await fuse(
    { normalisation: 'min-max', vectorWeight: 0.75 },
    [
      [1, 0.1],
      [2, 0.2],
      [3, 0.6],
    ],
    [
      [3, 5],
      [4, 1],
    ],
  )
  near(t, fused, [
    [1, 0.75],
    [2, 0.75 * 0.8],
    [3, 0.25],
    [4, 0],
  ])
})

t.test('a standout score counts, where rank fusion sees a tie', async (t) => {
  // Row 1 and row 2 are as near as makes no difference; the full-text leg finds row 2 far ahead
  // of anything else. RRF gives each one first and one second place: a tie.
  const vec: Array<[number, number]> = [
    [1, 0.3],
    [2, 0.3001],
    [5, 0.5],
    [6, 0.6],
  ]
  const fts: Array<[number, number]> = [
    [2, 12],
    [1, 2],
    [7, 1.9],
    [8, 1.8],
  ]
  const rrf = await rerankers.RRFReranker.create()
  const ranks = pairs(await rrf.rerankHybrid('q', leg('_distance', vec), leg('_score', fts)))
  t.equal(ranks[0]?.[1], ranks[1]?.[1], 'RRF: rows 1 and 2 tie')
  const fused = await fuse({}, vec, fts)
  t.same(
    fused.slice(0, 2).map(([id]) => id),
    [2, 1],
  )
  t.ok((fused[0] as [number, number])[1] - (fused[1] as [number, number])[1] > 0.1)
})

t.test('a leg with nothing to compare: one score, equal scores, none', async (t) => {
  near(t, await fuse({}, [[1, 0.2]], [[2, 3]]), [
    [1, 0.25],
    [2, 0.25],
  ])
  near(t, await fuse({ normalisation: 'min-max' }, [[1, 0.2]], []), [[1, 0.25]])
  near(
    t,
    await fuse(
      {},
      [],
      [
        [4, 2],
        [5, 2],
      ],
    ),
    [
      [4, 0.25],
      [5, 0.25],
    ],
  )
  t.same(await fuse({}, [], []), [], 'nothing found, nothing fused')
})

t.test('ties keep the order the legs gave, the vector leg first', async (t) => {
  const fused = await fuse(
    { normalisation: 'min-max' },
    [
      [9, 0.1],
      [3, 0.1],
    ],
    [
      [7, 1],
      [2, 1],
    ],
  )
  t.same(
    fused.map(([id]) => id),
    [9, 3, 7, 2],
  )
})

t.test('a NaN distance earns nothing and leaves the scale alone', async (t) => {
  // A zero vector has no direction: its cosine distance is NaN.
  const fused = await fuse(
    { normalisation: 'min-max' },
    [
      [1, 0.1],
      [2, Number.NaN],
      [3, 0.5],
    ],
    [[2, 4]],
  )
  near(t, fused, [
    [1, 0.5],
    [2, 0.25],
    [3, 0],
  ])
})

t.test('nothing below 0: found far below the rest is no worse than not found', async (t) => {
  // Ten chunks at distance 0 and one at 1: mean ± 3σ does not reach down to it.
  const vec: Array<[number, number]> = [
    ...Array.from({ length: 10 }, (_, i): [number, number] => [i + 1, 0]),
    [11, 1],
  ]
  const fused = await fuse({}, vec, [[12, 1]])
  const score = new Map(fused)
  t.equal(score.get(11), 0)
  t.ok((score.get(1) as number) > 0.25)
  t.equal(score.get(12), 0.25, 'the other leg: one score, the middle')
})

t.test('the vector weight is a share from 0 to 1', async (t) => {
  for (const vectorWeight of [-0.1, 1.5, Number.NaN]) {
    t.throws(() => new ScoreFusionReranker({ vectorWeight }), {
      constructor: RangeError,
      message: /vectorWeight must be from 0 to 1/,
    })
  }
  // Weight 1: the full-text leg counts for nothing, its rows follow in their order.
  const fused = await fuse(
    { vectorWeight: 1, normalisation: 'min-max' },
    [
      [1, 0.2],
      [2, 0.1],
    ],
    [
      [3, 9],
      [1, 1],
    ],
  )
  near(t, fused, [
    [2, 1],
    [1, 0],
    [3, 0],
  ])
  t.equal(new ScoreFusionReranker({ vectorWeight: 0 }).vectorWeight, 0)
})

t.test('a search index fuses through the reranker it is opened with', async (t) => {
  const uri = tempUri(t)
  await writeTable(uri, [
    { page_id: 'a', text: 'How to install the agent on Linux', vector: [1, 0, 0, 0] },
    { page_id: 'b', text: 'Rotating the audit logs', vector: [0, 1, 0, 0] },
    { page_id: 'c', text: 'Install notes for Windows', vector: [0.6, 0.8, 0, 0] },
  ])
  const { embed } = mapEmbedder({ 'install agent': [1, 0, 0, 0] })
  const seen: Array<{ query: string; vec: number; fts: number }> = []
  const rrf = await rerankers.RRFReranker.create()
  const spy: rerankers.Reranker = {
    async rerankHybrid(query, vecResults, ftsResults) {
      seen.push({ query, vec: vecResults.numRows, fts: ftsResults.numRows })
      return rrf.rerankHybrid(query, vecResults, ftsResults)
    },
  }
  const withRrf = await openSearchIndex({ uri, embed, reranker: spy })
  const byDefault = await openSearchIndex({ uri, embed })
  t.teardown(async () => {
    await withRrf.close()
    await byDefault.close()
  })
  const pages = (hits: SearchHit[]) => hits.map((hit) => hit.page_id)
  const rrfHits = (await withRrf.search({ query: 'install agent' })).results
  t.same(seen, [{ query: 'install agent', vec: 3, fts: 2 }], 'both legs, the query')
  t.same(pages(rrfHits), ['a', 'c', 'b'])
  // RRF's scores: 1/60 for a first place in a leg, 1/61 for a second…
  t.ok(Math.abs((rrfHits[0]?.score as number) - 2 / 60) < 1e-6)
  const dbsf = (await byDefault.search({ query: 'install agent' })).results
  t.same(pages(dbsf), ['a', 'c', 'b'])
  t.ok((dbsf[0]?.score as number) > 0.5, 'score fusion: first in both legs, above the middle')
  t.equal(seen.length, 1, 'the default index did not ask the other reranker')
})
