import {
  AppError,
  ErrorCode,
  emptyProgress,
  JobName,
  QueueName,
  readRun,
  type SyncResult,
} from '@confluence-bot/shared'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { Job } from 'bullmq'
import type { FastifyInstance } from 'fastify'
import Type from 'typebox'
import { errorResponses } from '../../schemas/common.ts'
import { JobListQuery, JobListSchema } from '../../schemas/sources.ts'

// Sync and purge jobs (admin): state, progress counters and per-page errors. Counters and
// errors are read from the run's Redis record, which every page batch feeds, so they are live
// while the sync runs and stay after it ends.

type PublicState = 'waiting' | 'active' | 'completed' | 'failed'

const STATE: Record<string, PublicState> = {
  waiting: 'waiting',
  prioritized: 'waiting',
  delayed: 'waiting',
  'waiting-children': 'active',
  active: 'active',
  completed: 'completed',
  failed: 'failed',
}

const iso = (ms: number | undefined) => (ms ? new Date(ms).toISOString() : undefined)

async function describe(fastify: FastifyInstance, job: Job) {
  /* c8 ignore next: a job removed between getJob and getState reads 'unknown' */
  const state = STATE[await job.getState()] ?? 'waiting'
  const run: SyncResult =
    job.name === JobName.sync
      ? await readRun(fastify.redis, job.id as string)
      : { progress: emptyProgress(), errors: [] }
  return {
    id: job.id as string,
    source_id: (job.data as { source_id: string }).source_id,
    name: job.name,
    state,
    progress: run.progress,
    errors: run.errors,
    failed_reason: state === 'failed' ? job.failedReason : undefined,
    attempts: job.attemptsMade,
    created_at: iso(job.timestamp) as string,
    started_at: iso(job.processedOn),
    finished_at: state === 'completed' || state === 'failed' ? iso(job.finishedOn) : undefined,
  }
}

// Jobs of the contract: a sync or a purge of a source. Anything else on the queue (index upkeep,
// or a job someone added by hand from the dashboard) is the dashboard's to show, not the API's.
const isSourceJob = (job: Job | undefined | null): job is Job =>
  job !== undefined &&
  job !== null &&
  (job.name === JobName.sync || job.name === JobName.purge) &&
  typeof (job.data as { source_id?: unknown } | undefined)?.source_id === 'string'

/**
 * When a job last changed: finished, else started, else created. Each state's own list is in this
 * order (finished jobs by finishing time, active ones by start, waiting ones by creation), so
 * merging the states by it never skips a job that a state listed later.
 */
const lastActivity = (job: Job) => job.finishedOn ?? job.processedOn ?? job.timestamp

// Each state is read newest first in pages of this many jobs.
const PAGE = 100
const STATES = [
  'active',
  'waiting-children',
  'waiting',
  'prioritized',
  'delayed',
  'completed',
  'failed',
] as const

const jobs: FastifyPluginAsyncTypebox = async (fastify) => {
  const queue = fastify.queues[QueueName.sync]
  // A job id that names one of the queue's own Redis keys (`meta`, `events`, `id`, …) is no job.
  const ownKeys = new Set(Object.keys(queue.keys))

  /**
   * Up to `limit` source jobs (of one source, if given) from one state, newest first: the state
   * is read page by page until enough match, so filtering never leaves the answer short.
   */
  async function fromState(state: (typeof STATES)[number], limit: number, sourceId?: string) {
    const matched: Job[] = []
    for (let start = 0; matched.length < limit; start += PAGE) {
      const page = await queue.getJobs([state], start, start + PAGE - 1)
      for (const job of page) {
        if (isSourceJob(job) && (sourceId === undefined || job.data.source_id === sourceId)) {
          matched.push(job)
        }
      }
      if (page.length < PAGE) break
    }
    return matched.slice(0, limit)
  }

  fastify.get(
    '/jobs',
    {
      schema: {
        tags: ['sources'],
        summary: 'Recent sync and purge jobs, latest activity first (admin)',
        description: 'Ordered by when each job last changed: finished, else started, else created.',
        querystring: JobListQuery,
        response: { 200: JobListSchema, ...errorResponses(400, 401, 403, 503) },
      },
    },
    async (request) => {
      const { source_id, limit } = request.query
      const perState = await Promise.all(STATES.map((state) => fromState(state, limit, source_id)))
      const selected = perState
        .flat()
        .sort((a, b) => lastActivity(b) - lastActivity(a))
        .slice(0, limit)
      return { jobs: await Promise.all(selected.map((job) => describe(fastify, job))) }
    },
  )

  fastify.get(
    '/jobs/:id',
    {
      schema: {
        tags: ['sources'],
        summary: 'One job: state, progress counters, per-page errors (admin)',
        params: Type.Object({
          id: Type.String({ minLength: 1, maxLength: 200, pattern: '^[A-Za-z0-9_.:-]+$' }),
        }),
        response: { 200: Type.Ref('Job'), ...errorResponses(400, 401, 403, 404, 503) },
      },
    },
    async (request) => {
      const { id } = request.params
      const job = ownKeys.has(id) ? undefined : await queue.getJob(id)
      if (!isSourceJob(job)) throw new AppError(404, ErrorCode.jobNotFound, `No job ${id}`)
      return describe(fastify, job)
    },
  )
}

export default jobs
