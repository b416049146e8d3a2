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

const jobs: FastifyPluginAsyncTypebox = async (fastify) => {
  const queue = fastify.queues[QueueName.sync]

  fastify.get(
    '/jobs',
    {
      schema: {
        tags: ['sources'],
        summary: 'Recent sync and purge jobs, newest first (admin)',
        querystring: JobListQuery,
        response: { 200: JobListSchema, ...errorResponses(400, 401, 403, 503) },
      },
    },
    async (request) => {
      const { source_id, limit } = request.query
      // Newest first within each state; filtered by source, then cut to the limit.
      const found = await queue.getJobs(
        ['active', 'waiting-children', 'waiting', 'prioritized', 'delayed', 'completed', 'failed'],
        0,
        source_id === undefined ? limit - 1 : 999,
      )
      const selected = found
        .filter((job): job is Job => job !== undefined && job !== null)
        .filter((job) => job.name !== JobName.maintain)
        .filter((job) => source_id === undefined || job.data?.source_id === source_id)
        .sort((a, b) => b.timestamp - a.timestamp)
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
        params: Type.Object({ id: Type.String({ minLength: 1, maxLength: 200 }) }),
        response: { 200: Type.Ref('Job'), ...errorResponses(401, 403, 404, 503) },
      },
    },
    async (request) => {
      const job = await queue.getJob(request.params.id)
      if (job === undefined || job === null || job.name === JobName.maintain) {
        throw new AppError(404, ErrorCode.jobNotFound, `No job ${request.params.id}`)
      }
      return describe(fastify, job)
    },
  )
}

export default jobs
