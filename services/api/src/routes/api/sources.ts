import { randomBytes } from 'node:crypto'
import { createWriteStream } from 'node:fs'
import { mkdir, rename, rm } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { Transform } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import {
  type ApiConfig,
  AppError,
  checkSourceCql,
  checkSourceHost,
  createKeyring,
  createSource,
  ErrorCode,
  exportFileName,
  getSource,
  hasSourceAuth,
  JobName,
  jobId,
  listSources,
  newSourceId,
  openExportZip,
  publicSource,
  QueueName,
  removeSource,
  SecretsKeyMissingError,
  type SourceInputError,
  SourceNameTakenError,
  type SourceSpec,
  type SyncJobData,
  scheduledSyncTemplate,
  syncDedupId,
  syncJobOptions,
  syncSchedulerId,
  updateSource,
} from '@confluence-bot/shared'
import type { FastifyPluginAsyncTypebox, TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { CronExpressionParser } from 'cron-parser'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import Type from 'typebox'
import { mediaType } from '../../plugins/app/errors.ts'
import { OPTIONAL_BODY } from '../../plugins/external/swagger.ts'
import { errorResponses } from '../../schemas/common.ts'
import {
  ExportUploadQuery,
  JobAcceptedSchema,
  SourceCreateSchema,
  SourceIdParams,
  SourceListSchema,
  SyncRequestSchema,
} from '../../schemas/sources.ts'

// Confluence sources (admin): register, list, delete, sync, and upload (or replace) an HTML
// space export.
// A source's periodic sync is a BullMQ Job Scheduler created and removed with it.

// The source schema is shared (app.addSchema); responses name it by reference.
const SourceRef = Type.Ref('ConfluenceSource')

const ZIP_TYPES = ['application/zip', 'application/x-zip-compressed', 'application/octet-stream']

async function view(fastify: FastifyInstance, spec: SourceSpec) {
  return {
    ...publicSource(spec),
    has_credentials: await hasSourceAuth(fastify.redis, spec.id),
  }
}

async function found(fastify: FastifyInstance, id: string): Promise<SourceSpec> {
  const spec = await getSource(fastify.redis, id)
  if (spec === undefined) throw new AppError(404, ErrorCode.sourceNotFound, `No source ${id}`)
  return spec
}

/**
 * Refuses a cron pattern the queue's scheduler could not run (the same parser BullMQ uses), before
 * anything is stored or uploaded. `field` names it for the caller (`body/schedule`).
 */
function checkSchedule(pattern: string | undefined, field: string): void {
  if (pattern === undefined) return
  try {
    CronExpressionParser.parse(pattern, { tz: 'UTC' })
  } catch (err) {
    throw new AppError(
      400,
      ErrorCode.validation,
      `${field} "${pattern}" is not a valid cron pattern: ${(err as Error).message}`,
    )
  }
}

/**
 * Creates the source's Job Scheduler (its pattern was checked before anything was stored). Should
 * Redis fail between the two writes, the worker reconciles schedulers with sources at boot.
 */
async function schedule(fastify: FastifyInstance, spec: SourceSpec): Promise<void> {
  if (spec.schedule === undefined) return
  await fastify.queues[QueueName.sync].upsertJobScheduler(
    syncSchedulerId(spec.id),
    { pattern: spec.schedule, tz: 'UTC' },
    scheduledSyncTemplate(spec.id),
  )
}

async function enqueueSync(
  fastify: FastifyInstance,
  request: FastifyRequest,
  sourceId: string,
  body: { full?: boolean; force?: boolean } = {},
) {
  const options = syncJobOptions(sourceId)
  const job = await fastify.queues[QueueName.sync].add(
    JobName.sync,
    { source_id: sourceId, ...body },
    options,
  )
  const deduplicated = job.id !== options.jobId
  // The request's log line names the job, and the worker's lines name it too: one joins both.
  request.log.info({ jobId: job.id, queue: QueueName.sync, sourceId, deduplicated }, 'sync queued')
  return { job_id: job.id as string, deduplicated }
}

const tooLarge = (limit: number) =>
  new AppError(
    413,
    ErrorCode.payloadTooLarge,
    `The export is over ${limit} bytes (EXPORT_UPLOAD_LIMIT)`,
  )

/**
 * Streams a request body to `path`, refusing it past `limit` bytes. A declared length is checked
 * first; an undeclared one is read to its end (and dropped past the limit), so the client still
 * gets its 413 instead of a reset connection.
 */
async function saveUpload(
  stream: NodeJS.ReadableStream,
  declared: number,
  path: string,
  limit: number,
) {
  if (declared > limit) throw tooLarge(limit)
  let size = 0
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      size += chunk.length
      done(null, size > limit ? undefined : chunk)
    },
  })
  await pipeline(stream, counter, createWriteStream(path))
  if (size > limit) throw tooLarge(limit)
}

const sources: FastifyPluginAsyncTypebox = async (fastify) => {
  const { config } = fastify
  const keyring = createKeyring(config)

  fastify.post(
    '/sources',
    {
      schema: {
        tags: ['sources'],
        summary: 'Register a Confluence Cloud or Data Center source (admin)',
        body: SourceCreateSchema,
        response: {
          201: SourceRef,
          ...errorResponses(400, 401, 403, 409, 413, 415, 503),
        },
      },
    },
    async (request, reply) => {
      const body = request.body
      checkSchedule(body.schedule, 'body/schedule')
      try {
        checkSourceCql(body.cql, 'body/cql')
      } catch (err) {
        // checkSourceCql throws SourceInputError only, its message naming the field.
        throw new AppError(400, ErrorCode.validation, (err as SourceInputError).message)
      }
      try {
        await checkSourceHost(body.base_url, config.CONFLUENCE_ALLOWED_HOSTS)
      } catch (err) {
        // checkSourceHost throws SourceHostError only, always with a message for the caller.
        throw new AppError(400, ErrorCode.sourceRefused, (err as Error).message)
      }
      const input = { ...body, base_url: body.base_url.replace(/\/+$/, '') }
      let spec: SourceSpec
      try {
        spec = await createSource(fastify.redis, input, undefined, keyring)
      } catch (err) {
        if (err instanceof SourceNameTakenError) {
          throw new AppError(409, ErrorCode.sourceExists, err.message)
        }
        if (err instanceof SecretsKeyMissingError) {
          throw new AppError(400, ErrorCode.sourceRefused, err.message)
        }
        throw err
      }
      await schedule(fastify, spec)
      reply.code(201)
      return view(fastify, spec)
    },
  )

  fastify.get(
    '/sources',
    {
      schema: {
        tags: ['sources'],
        summary: 'List the registered sources (admin)',
        response: { 200: SourceListSchema, ...errorResponses(401, 403, 503) },
      },
    },
    async () => {
      const all = await listSources(fastify.redis)
      return { sources: await Promise.all(all.map((spec) => view(fastify, spec))) }
    },
  )

  fastify.get(
    '/sources/:id',
    {
      schema: {
        tags: ['sources'],
        summary: 'One source (admin)',
        params: SourceIdParams,
        response: { 200: SourceRef, ...errorResponses(400, 401, 403, 404, 503) },
      },
    },
    async (request) => view(fastify, await found(fastify, request.params.id)),
  )

  fastify.delete(
    '/sources/:id',
    {
      schema: {
        tags: ['sources'],
        summary: 'Delete a source; a purge job removes its chunks from the index (admin)',
        params: SourceIdParams,
        response: { 202: JobAcceptedSchema, ...errorResponses(400, 401, 403, 404, 503) },
      },
    },
    async (request, reply) => {
      const spec = await found(fastify, request.params.id)
      await fastify.queues[QueueName.sync].removeJobScheduler(syncSchedulerId(spec.id))
      await removeSource(fastify.redis, spec)
      // Only a zip kept under EXPORTS_DIR is ours to delete: an export the CLI registered before
      // it kept zips there points at the operator's own file, which stays.
      const managed = spec.export_path === exportFileName(spec.id)
      const job = await fastify.queues[QueueName.sync].add(
        JobName.purge,
        { source_id: spec.id, ...(managed ? { export_path: spec.export_path } : {}) },
        { jobId: jobId('purge', spec.id) },
      )
      request.log.info({ jobId: job.id, queue: QueueName.sync, sourceId: spec.id }, 'purge queued')
      reply.code(202)
      return { job_id: job.id as string }
    },
  )

  fastify.post(
    '/sources/:id/sync',
    {
      schema: {
        tags: ['sources'],
        summary: 'Start a sync of a source (admin)',
        description:
          'Answers 202 with the job id. While a sync of the same source waits or runs, the id of that sync is returned instead (`deduplicated: true`).',
        params: SourceIdParams,
        body: SyncRequestSchema,
        response: {
          202: JobAcceptedSchema,
          ...errorResponses(400, 401, 403, 404, 413, 415, 503),
        },
        [OPTIONAL_BODY]: true,
      },
      // `curl -X POST …/sync` with no body is a plain sync.
      preValidation: async (request) => {
        request.body ??= {}
      },
    },
    async (request, reply) => {
      const spec = await found(fastify, request.params.id)
      reply.code(202)
      return enqueueSync(fastify, request, spec.id, request.body)
    },
  )

  // The export routes live in a scope of their own: only there is a zip body a stream (streamed
  // to disk as it arrives, never held in memory); every other route refuses such a body (415).
  await fastify.register(async (upload) => {
    upload.addContentTypeParser(ZIP_TYPES, (_request, payload, done) => done(null, payload))
    registerUpload(upload, config)
    registerReplace(upload, config)
  })
}

// The body is read as a stream, not validated; the document still shows it (a file upload in
// Swagger UI).
const zipBodyDoc = {
  swaggerTransform: ({ schema, url }: { schema: object; url: string }) => ({
    url,
    schema: {
      ...schema,
      consumes: ZIP_TYPES,
      body: { type: 'string', format: 'binary', description: 'The export zip' },
    },
  }),
}

function checkZipType(request: FastifyRequest): void {
  if (!ZIP_TYPES.includes(mediaType(request.headers['content-type']))) {
    throw new AppError(
      415,
      ErrorCode.unsupportedMediaType,
      'Send the export zip as the body with Content-Type: application/zip',
    )
  }
}

/**
 * Streams the request's zip to `partial` and reads its header with the reader the worker syncs
 * it with (so both agree on every zip): a body that is not an export is a 400 (the file is
 * removed by the caller). Returns the space the export holds and its number of page files.
 */
async function receiveZip(
  request: FastifyRequest,
  partial: string,
  config: ApiConfig,
): Promise<{ space: string; pages: number }> {
  try {
    await saveUpload(
      request.body as NodeJS.ReadableStream,
      Number(request.headers['content-length'] ?? 0),
      partial,
      config.EXPORT_UPLOAD_LIMIT,
    )
  } catch (err) {
    if (err instanceof AppError) throw err
    throw new AppError(400, ErrorCode.invalidExport, (err as Error).message)
  }
  try {
    const ex = await openExportZip(partial)
    ex.zip.close()
    return { space: ex.spaceKey, pages: ex.files.size }
  } catch (err) {
    // openExportZip says why (ExportZipError).
    throw new AppError(
      400,
      ErrorCode.invalidExport,
      `The upload is not a Confluence HTML space export: ${(err as Error).message}`,
    )
  }
}

/**
 * Refuses (409) an export of another space than the one the source holds: its pages would join
 * the old space's under one source, and the old zip would be lost. A source that has not synced
 * yet names no space, and takes any export (as `cnfl ingest --export` does).
 */
function refuseOtherSpace(spec: SourceSpec, key: string): void {
  if (spec.spaces.length === 0) return
  const held = [...spec.spaces].sort().join(', ')
  if (key !== held) {
    throw new AppError(
      409,
      ErrorCode.invalidExport,
      `The export holds the space ${key}, but source ${spec.id} holds the space(s) ${held}: upload it as a new source (POST /api/sources/export) instead`,
    )
  }
}

/**
 * Refuses (409) while a sync of the source is under way: it listed the old zip, and its page
 * batches would read the new one. A sync that still waits to start reads the new zip: it stands.
 */
async function refuseWhileSyncing(fastify: FastifyInstance, sourceId: string): Promise<void> {
  const queue = fastify.queues[QueueName.sync]
  const id = await queue.getDeduplicationJobId(syncDedupId(sourceId))
  const job = id === null ? undefined : await queue.getJob(id)
  if (job === undefined) return
  const state = await job.getState()
  // A sync waiting for its retry after its crawl (its step recorded) is under way too.
  if (['active', 'waiting-children'].includes(state) || (job.data as SyncJobData).step) {
    throw new AppError(
      409,
      ErrorCode.syncRunning,
      `A sync of source ${sourceId} is under way (job ${job.id}): replace the export once it has finished`,
    )
  }
}

function registerReplace(fastify: FastifyInstance, config: ApiConfig) {
  fastify.withTypeProvider<TypeBoxTypeProvider>().put(
    '/sources/:id/export',
    {
      schema: {
        tags: ['sources'],
        summary:
          "Replace an export source's zip with a newer export of its space, and sync it (admin)",
        description:
          'The body is the new zip (`Content-Type: application/zip`), streamed to EXPORTS_DIR and checked before it replaces the old one at once. Answers 202 with the incremental sync it queued (or the one already waiting): changed pages are indexed again, pages no longer in the export are deleted. 409 when the source is not an export source, when the zip is an export of another space than the one the source holds (a source that has not synced yet takes any), or while a sync of it is under way.',
        params: SourceIdParams,
        response: {
          202: JobAcceptedSchema,
          ...errorResponses(400, 401, 403, 404, 409, 413, 415, 503),
          409: Type.Ref('Error', {
            description:
              'The source is not an export source, the zip holds another space than the source (`invalid_export`, naming both), or a sync of it is under way',
          }),
        },
      },
      config: zipBodyDoc,
    },
    async (request, reply) => {
      checkZipType(request)
      const spec = await found(fastify, request.params.id)
      if (spec.kind !== 'export') {
        throw new AppError(
          409,
          ErrorCode.notAnExportSource,
          `Source ${spec.id} is a ${spec.kind} source: only an export source takes a zip (POST /api/sources/export uploads a new one)`,
        )
      }
      await refuseWhileSyncing(fastify, spec.id)
      const dir = resolve(config.EXPORTS_DIR)
      await mkdir(dir, { recursive: true })
      // A name of its own: two replacements of one source never write the same file.
      const partial = join(dir, `${spec.id}.${randomBytes(6).toString('hex')}.zip.part`)
      const file = exportFileName(spec.id)
      try {
        const { space, pages } = await receiveZip(request, partial, config)
        // Checked again now that the zip is here: the source may be gone, or a sync begun.
        const current = await found(fastify, spec.id)
        refuseOtherSpace(current, space)
        // Every export holds its space's home page at least: one with none would have the sync
        // delete every page (or be refused by the delete guard forever), the real zip lost.
        if (pages === 0) {
          throw new AppError(
            400,
            ErrorCode.invalidExport,
            'The export holds no page files next to its index.html: export the space again',
          )
        }
        await refuseWhileSyncing(fastify, spec.id)
        await rename(partial, join(dir, file))
        // A source the CLI registered before kept its zip elsewhere: now it is under EXPORTS_DIR.
        if (current.export_path !== file) {
          await updateSource(fastify.redis, { ...current, export_path: file })
        }
      } finally {
        await rm(partial, { force: true })
      }
      reply.code(202)
      return enqueueSync(fastify, request, spec.id)
    },
  )
}

function registerUpload(fastify: FastifyInstance, config: ApiConfig) {
  fastify.withTypeProvider<TypeBoxTypeProvider>().post(
    '/sources/export',
    {
      schema: {
        tags: ['sources'],
        summary: 'Upload a Confluence HTML space export zip as a new source, and sync it (admin)',
        description:
          'The body is the zip itself (`Content-Type: application/zip`), streamed to EXPORTS_DIR. Answers 201 with the source; its first sync is queued.',
        querystring: ExportUploadQuery,
        response: { 201: SourceRef, ...errorResponses(400, 401, 403, 409, 413, 415, 503) },
      },
      config: zipBodyDoc,
    },
    async (request, reply) => {
      checkZipType(request)
      checkSchedule(request.query.schedule, 'querystring/schedule')
      const id = newSourceId()
      const dir = resolve(config.EXPORTS_DIR)
      await mkdir(dir, { recursive: true })
      const partial = join(dir, `${id}.zip.part`)
      let export_path = exportFileName(id)
      let space: string
      try {
        space = (await receiveZip(request, partial, config)).space
        await rename(partial, join(dir, export_path))
      } catch (err) {
        await rm(partial, { force: true })
        throw err
      }
      let spec: SourceSpec
      try {
        spec = await createSource(
          fastify.redis,
          {
            name: request.query.name,
            kind: 'export',
            base_url: (request.query.base_url ?? '').replace(/\/+$/, ''),
            spaces: [space],
            export_path,
            schedule: request.query.schedule,
          },
          id,
        )
      } catch (err) {
        await rm(join(dir, export_path), { force: true })
        export_path = ''
        if (err instanceof SourceNameTakenError) {
          throw new AppError(409, ErrorCode.sourceExists, err.message)
        }
        throw err
      }
      await schedule(fastify, spec)
      await enqueueSync(fastify, request, spec.id)
      reply.code(201)
      return view(fastify, spec)
    },
  )
}

export default sources
