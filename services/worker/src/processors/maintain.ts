import {
  configuredEmbedSetup,
  type EmbedSetup,
  embeddingInForce,
  listSources,
  sameEmbedModel,
  syncLockKey,
} from '@confluence-bot/shared'
import type { Job } from 'bullmq'
import type { Ingest } from '../ingest/context.ts'
import { documentInput } from '../ingest/rows.ts'
import type { ProcessorDeps } from '../worker.ts'

// Index upkeep after syncs: the full-text index, the vector index once the table is large
// enough, scalar indexes, then compaction (which also folds new rows into the indexes and
// prunes old versions). Queued by every sync's finish step, by a sync's page batches once an
// indexed table has INDEX_FOLD_ROWS rows its indices do not cover (pages.ts), and by purges;
// one job waits or runs at a time, so a request made while one runs is dropped. A sync that
// finishes while one runs therefore asks in vain, and whatever it wrote after this job's fold
// began would wait for the next sync to be folded in: when no sync is under way any more (one
// that is still running asks again as it finishes) and rows are left out, the job folds again.
// Both passes take the writer lock like every write, so page batches wait a few seconds at most
// and write between them; a pass with nothing to fold or compact takes a few ms.

/** Sources whose sync is under way (it holds its source's claim). */
async function syncingSources(ingest: Ingest): Promise<string[]> {
  const ids = (await listSources(ingest.redis)).map((spec) => spec.id)
  const held = await Promise.all(ids.map((id) => ingest.redis.exists(syncLockKey(id))))
  return ids.filter((_, i) => held[i] === 1)
}

export function createMaintainProcessor(ingest: Ingest) {
  /** Rows written since the fold that a sync finishing meanwhile will not ask for again. */
  async function leftBehind(): Promise<boolean> {
    const behind = (await ingest.store.unindexedRows()) ?? 0
    return behind > 0 && (await syncingSources(ingest)).length === 0
  }

  return async function maintain(_job: Job, { log }: ProcessorDeps) {
    const started = performance.now()
    let report = await ingest.store.maintain()
    let passes = 1
    if (await leftBehind()) {
      report = await ingest.store.maintain()
      passes = 2
    }
    const ms = Math.round(performance.now() - started)
    log.info({ ...report, passes, ms }, 'index maintained')
    return { ...report, passes, ms }
  }
}

/** Two setups make the same vectors: a new query prefix alone changes none of them. */
const sameVectors = (a: EmbedSetup, b: EmbedSetup) =>
  sameEmbedModel(a.model, b.model) && a.documentPrefix === b.documentPrefix

/** Chunks embedded per round of a refill. */
const REFILL_BATCH = 256

/** What a refill reports as its progress (the dashboard shows it) and returns. */
export type RefillProgress = { filled: number; remaining: number }

// Vectors for every chunk without one, whatever its source: queued when a sync changes the
// embedding model or document prefix (which drops every vector table-wide), so no source waits
// for its own next sync to be searchable by meaning again. It works from the table's state, not
// from its data: a refill retried or run late fills what is missing then, and one that finds the
// table recording another model or document prefix than the one in force leaves it to the sync
// that will switch it (and queue its own).

export function createRefillProcessor(ingest: Ingest) {
  return async function refill(job: Job, { log }: ProcessorDeps): Promise<RefillProgress> {
    let filled = 0
    for (;;) {
      const recorded = await ingest.store.embedding()
      const remaining = await ingest.store.countWithoutVectors()
      await job.updateProgress({ filled, remaining } satisfies RefillProgress)
      const inForce =
        recorded !== null &&
        sameVectors(
          recorded,
          await embeddingInForce(ingest.redis, recorded, configuredEmbedSetup(ingest.config)),
        )
      if (recorded === null || !inForce) {
        log.info(
          { recorded: recorded?.model, filled },
          'the index records another model or document prefix: refill left to its next sync',
        )
        return { filled, remaining }
      }
      // A source whose sync is under way fills its own chunks in that sync's finish step (and
      // counts them there): the refill takes every other source's.
      const syncing = await syncingSources(ingest)
      const rows = await ingest.store.rowsWithoutVectors(undefined, REFILL_BATCH, syncing)
      if (rows.length === 0) break
      const input = documentInput(recorded.documentPrefix)
      const vectors = await ingest.embedder.embed(rows.map(input), recorded.model)
      // Retried by the job's backoff: the model may be back by then.
      if (vectors === null) throw new Error(`embedding model ${recorded.model} unreachable`)
      filled += await ingest.store.setVectors(
        recorded.model,
        rows.map((row, i) => ({ chunk_id: row.chunk_id, vector: vectors[i] as Float32Array })),
        recorded.documentPrefix,
      )
    }
    // Whatever is left belongs to syncs under way, which fill it in their finish step.
    await job.updateProgress({ filled, remaining: 0 } satisfies RefillProgress)
    log.info({ filled }, 'vectors refilled')
    return { filled, remaining: 0 }
  }
}
