// The queue contract shared by the api (producer) and the worker (consumer): queue names, job
// names and payloads, the key prefix, default job options and job-id builders. Plain data only:
// each service builds its own Queue/Worker instances from these definitions in its composition
// root.

import Type, { type Static, type TSchema } from 'typebox'
import Value from 'typebox/value'

export const QUEUE_PREFIX = 'cnfl'

export const QueueName = {
  /** One job per sync of a source: list, diff, fan out page batches, then delete and maintain. */
  sync: 'confluence-sync',
  /** Batches of changed pages: fetch, convert, chunk, embed and write; spread over workers. */
  pages: 'confluence-pages',
} as const

export type QueueNameValue = (typeof QueueName)[keyof typeof QueueName]

export const ALL_QUEUES: readonly QueueNameValue[] = Object.values(QueueName)

export const JobName = {
  sync: 'sync',
  pages: 'pages',
  /** Removes every chunk of a deleted source. */
  purge: 'purge',
  /** Index upkeep after writes: full-text and vector indexes, compaction. */
  maintain: 'maintain',
  /** Vectors for every chunk that has none (after a model change), whatever its source. */
  refill: 'refill-vectors',
} as const

export type JobNameValue = (typeof JobName)[keyof typeof JobName]

// Payload schemas. Every job's data is checked against its schema by the worker before the
// processor runs, whoever queued it (the api, a Job Scheduler, the CLI, or an admin through the
// queue dashboard, which accepts any data): a processor only ever sees the shape below.

/** A source id as newSourceId() makes them. */
const SourceId = Type.String({ pattern: '^src_[0-9a-f]{12}$' })

/** The characters jobId() keeps (BullMQ's own numeric ids fit too). */
const JobIdText = Type.String({ pattern: '^[A-Za-z0-9_.-]{1,200}$' })

/**
 * The embedding model a sync chose, and the prefixes its vectors are made with (absent: none, as
 * a sync queued before prefixes existed made them); null when no model was reachable.
 */
const EmbeddingSchema = Type.Union([
  Type.Null(),
  Type.Object(
    {
      model: Type.String({ minLength: 1 }),
      dim: Type.Integer({ minimum: 1 }),
      document_prefix: Type.Optional(Type.String()),
      query_prefix: Type.Optional(Type.String()),
    },
    { additionalProperties: false },
  ),
])

export const SyncJobDataSchema = Type.Object(
  {
    source_id: SourceId,
    /** Reconvert and re-embed every page, not only the changed ones. */
    full: Type.Optional(Type.Boolean()),
    /** Delete pages gone from Confluence even beyond SYNC_MAX_DELETE_SHARE. */
    force: Type.Optional(Type.Boolean()),
    // The sync's own state between its two steps (written with job.updateData by the crawl).
    step: Type.Optional(Type.Literal('finish')),
    /** Page ids indexed but not listed any more. */
    gone: Type.Optional(Type.Array(Type.String({ minLength: 1 }))),
    /** Pages the index held when the crawl began (base of the delete guard). */
    indexed: Type.Optional(Type.Integer({ minimum: 0 })),
    embed: Type.Optional(EmbeddingSchema),
  },
  { additionalProperties: false },
)
export type SyncJobData = Static<typeof SyncJobDataSchema>

/** One page of a batch: its listing entry (a PageRef of the worker) and its ancestors' titles. */
export const BatchPageSchema = Type.Object(
  {
    id: Type.String({ minLength: 1 }),
    spaceKey: Type.String(),
    title: Type.String(),
    version: Type.String(),
    parentId: Type.Optional(Type.String()),
    labels: Type.Array(Type.String()),
    updatedAt: Type.Optional(Type.String()),
    url: Type.String(),
    author: Type.Optional(
      Type.Object({ id: Type.String(), name: Type.String() }, { additionalProperties: false }),
    ),
    ancestors: Type.Array(Type.String()),
  },
  { additionalProperties: false },
)

export const PagesJobDataSchema = Type.Object(
  {
    source_id: SourceId,
    /** The sync job this batch belongs to (its counters and progress). */
    run_id: JobIdText,
    batch: Type.Integer({ minimum: 0 }),
    embed: EmbeddingSchema,
    space_names: Type.Record(Type.String(), Type.String()),
    pages: Type.Array(BatchPageSchema),
  },
  { additionalProperties: false },
)
export type PagesJobData = Static<typeof PagesJobDataSchema>

/** The file name an uploaded export of a source is kept under, in EXPORTS_DIR. */
export const exportFileName = (sourceId: string) => `${sourceId}.zip`

export const PurgeJobDataSchema = Type.Object(
  {
    source_id: SourceId,
    /** An uploaded export's file in EXPORTS_DIR: a bare name, always `<source_id>.zip`. */
    export_path: Type.Optional(Type.String({ pattern: '^src_[0-9a-f]{12}\\.zip$' })),
  },
  { additionalProperties: false },
)
export type PurgeJobData = Static<typeof PurgeJobDataSchema>

export const MaintainJobDataSchema = Type.Object({}, { additionalProperties: false })
export type MaintainJobData = Static<typeof MaintainJobDataSchema>

export const RefillJobDataSchema = Type.Object({}, { additionalProperties: false })
export type RefillJobData = Static<typeof RefillJobDataSchema>

/** The schema of each job's data, by job name. */
export const JobDataSchema = {
  [JobName.sync]: SyncJobDataSchema,
  [JobName.pages]: PagesJobDataSchema,
  [JobName.purge]: PurgeJobDataSchema,
  [JobName.maintain]: MaintainJobDataSchema,
  [JobName.refill]: RefillJobDataSchema,
} as const satisfies Record<JobNameValue, TSchema>

export const isJobName = (name: string): name is JobNameValue => Object.hasOwn(JobDataSchema, name)

type SchemaError = {
  keyword: string
  instancePath: string
  params: { requiredProperties?: string[]; additionalProperties?: string[] }
  message: string
}

/** One schema error in words, naming the field: `pages.0.id is required`, `full must be boolean`. */
function describe(error: SchemaError): string | undefined {
  const path = error.instancePath.slice(1).replaceAll('/', '.')
  const fields = (names: string[]) =>
    `${names.map((name) => (path === '' ? name : `${path}.${name}`)).join(', ')} ${names.length > 1 ? 'are' : 'is'}`
  switch (error.keyword) {
    case 'required':
      return `${fields(error.params.requiredProperties as string[])} required`
    case 'additionalProperties':
      return `${fields(error.params.additionalProperties as string[])} not allowed`
    // `false` schemas (each additional property) repeat the error above.
    case 'boolean':
      return undefined
    default:
      return `${path === '' ? 'the data' : path} ${error.message}`
  }
}

/**
 * Why a job's data does not fit its job's schema (every problem, each naming its field), or
 * undefined when it does. A purge's export_path must also be the export of its own source.
 */
export function jobDataProblem(name: JobNameValue, data: unknown): string | undefined {
  const schema: TSchema = JobDataSchema[name]
  if (!Value.Check(schema, data)) {
    const problems = (Value.Errors(schema, data) as SchemaError[]).map(describe)
    return [...new Set(problems.filter((p) => p !== undefined))].join('; ')
  }
  if (name === JobName.purge) {
    const { source_id, export_path } = data as PurgeJobData
    const expected = exportFileName(source_id)
    if (export_path !== undefined && export_path !== expected) {
      return `export_path must be "${expected}" (the export of source ${source_id})`
    }
  }
  return undefined
}

/** Counters a sync reports through job.updateProgress (dashboard and GET /api/jobs/:id). */
export type SyncProgress = {
  discovered: number
  converted: number
  embedded: number
  unchanged: number
  deleted: number
  failed: number
}

export const emptyProgress = (): SyncProgress => ({
  discovered: 0,
  converted: 0,
  embedded: 0,
  unchanged: 0,
  deleted: 0,
  failed: 0,
})

/** What a finished sync returns (job.returnvalue); errors are per page where a page is known. */
export type SyncResult = {
  progress: SyncProgress
  errors: Array<{ page_id?: string; message: string }>
}

/** Retries with exponential backoff and jitter; bounded retention by count and age. */
export const defaultJobOptions = {
  attempts: 5,
  backoff: { type: 'exponential', delay: 2_000, jitter: 0.5 },
  removeOnComplete: { count: 1_000, age: 7 * 24 * 3600 },
  removeOnFail: { count: 5_000, age: 30 * 24 * 3600 },
} as const

/** Builds a job id from parts: `-` separated, never `:`, never digits only. */
export function jobId(kind: string, ...parts: Array<string | number>): string {
  const clean = [kind, ...parts].map((p) => String(p).replace(/[^A-Za-z0-9_.-]+/g, '_'))
  return clean.join('-')
}

/** The Job Scheduler that runs a source's periodic sync. */
export const syncSchedulerId = (sourceId: string) => jobId('schedule', sourceId)

/** One vector refill waits or runs at a time: it works from the table's state, not its data. */
export const REFILL_DEDUP_ID = 'refill-vectors'

/** Options of a vector refill job (after a model change). */
export const refillJobOptions = () => ({
  jobId: jobId('refill', Date.now()),
  deduplication: { id: REFILL_DEDUP_ID },
})

/** One maintenance job waits at a time, however many syncs asked for one. */
export const MAINTAIN_DEDUP_ID = 'maintain-index'

/** Deduplication key: one sync of a source waits or runs at a time. */
export const syncDedupId = (sourceId: string) => jobId('sync', sourceId)

/** Redis keys of one sync run (keyed by the sync job id), kept as long as failed jobs are. */
export const runKeys = (syncJobId: string) => ({
  counters: `${QUEUE_PREFIX}:run:${syncJobId}`,
  /** Page batches already counted, so a retried batch is not counted twice. */
  counted: `${QUEUE_PREFIX}:run:${syncJobId}:counted`,
  errors: `${QUEUE_PREFIX}:run:${syncJobId}:errors`,
})

export const RUN_TTL_S = defaultJobOptions.removeOnFail.age

/** Per-page errors kept per run; beyond this the count still grows, the list does not. */
export const MAX_RUN_ERRORS = 1_000

/** The job a source's Job Scheduler creates on each tick. */
export const scheduledSyncTemplate = (sourceId: string) => ({
  name: JobName.sync,
  data: { source_id: sourceId } satisfies SyncJobData,
})

/** Options of a new sync job: a fresh id, deduplicated per source while one waits or runs. */
export const syncJobOptions = (sourceId: string) => ({
  jobId: jobId('sync', sourceId, Date.now()),
  deduplication: { id: syncDedupId(sourceId) },
})

/** Options of an index upkeep job: one waits at a time, however many writers ask. */
export const maintainJobOptions = () => ({
  jobId: jobId('maintain', Date.now()),
  deduplication: { id: MAINTAIN_DEDUP_ID },
})
