import type { EmbedPrefixes, PagesJobData } from '@confluence-bot/shared'
import type { Embedding } from '../store/chunks.ts'

// A sync's choice of embedding travels in job data (its own step data and its page batches'),
// in the snake_case of the shared job schemas.

/** The embedding a sync chose, as job data carries it; null when no model was reachable. */
export type JobEmbedding = PagesJobData['embed']

export const jobEmbedding = (chosen: Embedding | null): JobEmbedding =>
  chosen === null
    ? null
    : {
        model: chosen.model,
        dim: chosen.dim,
        document_prefix: chosen.documentPrefix,
        query_prefix: chosen.queryPrefix,
      }

/**
 * The prefixes of a job's embedding. A job queued before prefixes existed names none: its sync
 * chose a model only, and the table it read recorded no prefix.
 */
export const jobPrefixes = (embed: JobEmbedding): EmbedPrefixes => ({
  document: embed?.document_prefix ?? '',
  query: embed?.query_prefix ?? '',
})
