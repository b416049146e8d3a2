// How hybrid search fuses its two legs: a reranker of LanceDB's shape (`rerankers.Reranker`:
// `rerankHybrid(query, vecResults, ftsResults)` → one batch of `_rowid` and `_relevance_score`,
// best first), so LanceDB's own RRFReranker and this one are interchangeable in search.ts.
//
// Score fusion, not rank fusion. Each leg's scores are brought to one scale over that leg's own
// candidates, then added with a weight per leg; a chunk one leg did not find gets nothing from it.
// Rank fusion (RRF) throws the scores away: a keyword hit far ahead of the rest and one barely
// ahead of the next count the same, and on the question set RRF at LanceDB's k = 60 fell below
// keyword search alone. The default normalisation is distribution-based (DBSF, as Qdrant defines
// it): the leg's mean ± 3 sample standard deviations map to 0 and 1, so one outlier score does not
// squash the rest as it does under min-max; the legs weigh the same (a neutral default, not one
// tuned to our questions).
//
// FIGURES — `tests/index/eval.test.ts`'s question set (28 English, 28 Korean questions; ranks
// count pages, top k 10, one chunk per page), index built by the real pipeline, stand-in lexical
// embedding at 768 dimensions. hit@1 / hit@5 / MRR. "real": through openSearchIndex with that
// reranker; "sim": the same legs (the candidates search.ts asks for, 30 per leg, widened as it
// does) dumped and fused offline, for variants that are not classes here (the simulation gives
// the real DBSF figures exactly). Three index builds gave the same fused figures; the vector leg
// alone moved by ±0.01 MRR between builds, LanceDB's RRF by ±0.006 between runs (its order of
// tied scores is not stable).
//
//   method                              all              en               ko
//   keyword only (real)                 .893 .982 .938   .964 1.00 .982   .821 .964 .893
//   vector only (real)                  .786 .929 .855   .750 .929 .830   .821 .929 .879
//   LanceDB RRF k=60, per chunk (real)  .875 1.00 .926   .857 1.00 .920   .893 1.00 .932
//   RRF k=2, Qdrant's default (sim)     .857 1.00 .926   .821 1.00 .911   .893 1.00 .940
//   RRF on page ranks, k=60 (sim)       .857 1.00 .920   .821 1.00 .911   .893 1.00 .929
//   RRF, page credit (a), k=60 (sim)    .839 1.00 .906   .821 1.00 .902   .857 1.00 .911
//   RRF keyword ×1.5, k=10 (sim)        .857 .982 .920   .857 1.00 .923   .857 .964 .917
//   RRF keyword ×1.5, k=2 (sim)         .857 1.00 .929   .893 1.00 .946   .821 1.00 .911
//   min-max α=0.75, Weaviate's (real)   .857 1.00 .909   .857 1.00 .909   .857 1.00 .909
//   min-max α=0.5 (real)                .893 1.00 .946   .929 1.00 .964   .857 1.00 .929
//   DBSF α=0.75 (real)                  .857 1.00 .912   .857 1.00 .912   .857 1.00 .912
//   DBSF α=0.5: CHOSEN (real)           .929 1.00 .961   .964 1.00 .982   .893 1.00 .940
//   DBSF α=0.5, capped at 1 (sim)       .893 1.00 .943   .893 1.00 .946   .893 1.00 .940
//   DBSF α=0.5, page credit (b) (sim)   .946 1.00 .964   .964 1.00 .982   .929 1.00 .946
//   (a) a chunk missing from a leg takes its page's best rank there; (b) a chunk takes its page's
//   best normalised score in each leg. α: the vector leg's weight; min-max is relative score
//   fusion (Weaviate's relativeScoreFusion).
//
// The vector weight α swept 0…1 by 0.05 (sim), DBSF's MRR overall: .938 at 0 (keyword alone),
// .929–.940 up to 0.40, .943 at 0.45, .961 at 0.50, .935 at 0.55, .926 at 0.60, .912 at 0.75,
// .855 at 1 (vector alone). The peak is narrow: on 56 questions one page moving from first to
// second is 0.009 of MRR, and seven questions change rank between 0.40 and 0.60. Held out: tuned
// on English alone, α ∈ {0, 0.35, 0.40, 0.45, 0.50} tie at en .982 and give ko .893–.940 (.897 for
// the middle one, 0.40); tuned on Korean alone, α ∈ {0.50, 0.55} tie at ko .940 and give en .982
// or .929. A weight tuned on one language does not carry to the other; the equal weight, which
// nothing tuned, does best in both, hence that default. The page-credit variant gains one
// question's rank (.964) for a rule that ties every chunk of a page with its best one (a page's
// second chunk then crowds out the next page): not taken.
//
// Cost, per query, one reranker call (p50 on the 2-core dev machine, random legs): 30 candidates
// per leg (top 10) 0.025 ms against LanceDB's RRF 0.15 ms (which copies both legs through Arrow
// IPC into native code and back); 480 per leg 0.27 ms (RRF 0.20); 1920, the widest search.ts
// widens to for the per-page cap, 1.2 ms (RRF 0.7).

import { createRequire } from 'node:module'
import type { rerankers } from '@lancedb/lancedb'
import type { RecordBatch, Vector } from 'apache-arrow'

// LanceDB checks Arrow objects against the CommonJS build of apache-arrow it loads itself.
const arrow = createRequire(import.meta.url)('apache-arrow') as typeof import('apache-arrow')

/**
 * 'distribution': mean ± 3 standard deviations of the leg's scores → 0…1 (DBSF);
 * 'min-max': the leg's lowest and highest score → 0…1 (relative score fusion).
 */
export type ScoreNormalisation = 'distribution' | 'min-max'

export type ScoreFusionOptions = {
  /** Default 'distribution'. */
  normalisation?: ScoreNormalisation
  /** The vector leg's share of a fused score, from 0 to 1 (default 0.5: the legs weigh alike). */
  vectorWeight?: number
}

/** One leg's scores on a common scale: `(score - low) / span`. */
type Scale = { low: number; span: number }

function distributionScale(scores: readonly number[]): Scale {
  const mean = scores.reduce((sum, x) => sum + x, 0) / scores.length
  const variance = scores.reduce((sum, x) => sum + (x - mean) ** 2, 0) / (scores.length - 1)
  const sd = Math.sqrt(variance)
  return { low: mean - 3 * sd, span: 6 * sd }
}

function minMaxScale(scores: readonly number[]): Scale {
  const low = Math.min(...scores)
  return { low, span: Math.max(...scores) - low }
}

/**
 * Each score on the leg's scale. A leg of one score, or of equal ones, says nothing about how
 * its candidates compare: each gets the middle, 0.5 (a single score's sample variance is NaN,
 * which lands here too). A score that is not a number (NaN: the distance to a zero vector, which
 * has no direction) is left out of the scale and earns nothing.
 *
 * Nothing goes below 0: a candidate a leg found far below the rest of its candidates (under the
 * mean − 3σ) would otherwise lose more than one the leg did not find at all. There is no cap
 * above 1: a hit standing out of its leg's distribution is the signal score fusion keeps and
 * rank fusion loses (capped at 1, MRR fell from .961 to .943 on the question set; no candidate
 * there fell below 0, so the floor changes none of the figures).
 */
function normalised(scores: readonly number[], scaleOf: (scores: number[]) => Scale): number[] {
  const { low, span } = scaleOf(scores.filter(Number.isFinite))
  return scores.map((x) => {
    if (!Number.isFinite(x)) return 0
    return span > 0 ? Math.max(0, (x - low) / span) : 0.5
  })
}

/** Rows of a leg's batch: row ids and scores, higher better, in the leg's order. */
function legOf(batch: RecordBatch, column: '_distance' | '_score') {
  const ids = (batch.getChild('_rowid') as Vector).toArray() as BigUint64Array
  const raw = [...((batch.getChild(column) as Vector).toArray() as Float32Array)]
  // A distance is smaller for better: negated, it orders as a score does, and the scale does not
  // care where zero is.
  return { ids, scores: column === '_distance' ? raw.map((d) => -d) : raw }
}

/**
 * Distribution-based (default) or relative score fusion of hybrid search's two legs, in the
 * shape of LanceDB's rerankers. Input batches hold `_rowid` and `_distance` (vector leg) or
 * `_score` (BM25, full-text leg), best first; the result holds `_rowid` and `_relevance_score`,
 * best first, ties in the order the legs gave them (vector leg first).
 */
export class ScoreFusionReranker implements rerankers.Reranker {
  readonly normalisation: ScoreNormalisation
  readonly vectorWeight: number

  constructor(options: ScoreFusionOptions = {}) {
    const weight = options.vectorWeight ?? 0.5
    if (!(weight >= 0 && weight <= 1)) {
      throw new RangeError(`vectorWeight must be from 0 to 1, not ${weight}`)
    }
    this.normalisation = options.normalisation ?? 'distribution'
    this.vectorWeight = weight
  }

  async rerankHybrid(
    _query: string,
    vecResults: RecordBatch,
    ftsResults: RecordBatch,
  ): Promise<RecordBatch> {
    const scaleOf = this.normalisation === 'distribution' ? distributionScale : minMaxScale
    // Each row once, in the order first seen (vector leg first), with its fused score.
    const slot = new Map<bigint, number>()
    const rows: bigint[] = []
    const fused: number[] = []
    const legs = [
      [legOf(vecResults, '_distance'), this.vectorWeight],
      [legOf(ftsResults, '_score'), 1 - this.vectorWeight],
    ] as const
    for (const [{ ids, scores }, weight] of legs) {
      const norm = normalised(scores, scaleOf)
      for (let i = 0; i < ids.length; i++) {
        const id = ids[i] as bigint
        const j = slot.get(id) ?? rows.push(id) - 1
        slot.set(id, j)
        fused[j] = (fused[j] ?? 0) + weight * (norm[i] as number)
      }
    }
    // Ties keep the order first seen (the sort is stable).
    const order = rows.map((_, j) => j).sort((a, b) => (fused[b] as number) - (fused[a] as number))
    const rowIds = arrow.makeVector(BigUint64Array.from(order, (j) => rows[j] as bigint))
    const relevance = arrow.makeVector(Float32Array.from(order, (j) => fused[j] as number))
    return new arrow.RecordBatch({
      _rowid: rowIds.data[0],
      _relevance_score: relevance.data[0],
    } as never)
  }
}
