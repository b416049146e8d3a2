import { createHash, randomBytes } from 'node:crypto'
import { createReadStream, createWriteStream, rm as removeFile } from 'node:fs'
import { mkdir, readdir, rm } from 'node:fs/promises'
import type { IncomingMessage } from 'node:http'
import { join, resolve } from 'node:path'
import { pipeline as pipe, Transform, finished as whenDone } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import {
  AppError,
  ErrorCode,
  type ErrorCodeName,
  modelParameters,
  ollamaModelName,
} from '@confluence-bot/shared'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyReply } from 'fastify'
import { holdModelName } from '../../lib/model-name-hold.ts'
import { errorLine, ndjsonLine, relayNdjson } from '../../lib/ndjson.ts'
import { abortOnClientGone, lastLine, onceClosed, sendNdjson } from '../../lib/proxy.ts'
import { mediaType } from '../../plugins/app/errors.ts'
import { errorResponses } from '../../schemas/common.ts'
import {
  ModelImportProgressSchema,
  type ModelImportQuery,
  ModelImportQuerySchema,
} from '../../schemas/models-import.ts'

// POST /api/models/import: a GGUF file becomes an Ollama model. Ollama takes a file only as a
// blob addressed by its SHA-256, known once the whole file has been read: the upload is streamed
// to a temporary file under MODEL_IMPORT_DIR (hashed and checked on the way, never held in
// memory), then sent to Ollama as a blob, then `/api/create` names a model after it. The
// temporary file is removed however the import ends.
// A refusal (too large, not GGUF, the name being imported already, too many imports, a full
// disk) comes while the client may still be sending gigabytes: it is answered at once with
// `Connection: close` and the rest of the body is never read. While an import runs, its name is
// held in Redis (for every api replica and cnfl) and it takes one of MODEL_IMPORT_CONCURRENCY
// slots of this process.

const GGUF_TYPE = 'application/octet-stream'
/** A line that ends an import's stream: Ollama's success, or an error line. */
const FINAL_LINE = /^\{"(status":"success"|error")/m
/**
 * Bytes a file stream holds before it waits (Node's defaults: 16 KiB written, 64 KiB read). With
 * 1 MiB, disk writes are batched while the socket keeps arriving, and the push reads the file in
 * large pieces. `pnpm bench import`, 1 GB, same run: 158 → 231 MB/s end to end (receiving
 * 308 → 390, pushing 327 → 567; straight to Ollama 700–790), for about 12 MB more memory.
 */
const STREAM_BUFFER = 1 << 20
const GGUF_MAGIC = Buffer.from('GGUF')
/** How often a progress line reports the upload to Ollama. */
const PROGRESS_MS = 500
/** Seconds a client refused for too many imports is told to wait: an import takes minutes. */
const BUSY_RETRY_AFTER_S = 60
/**
 * A part file: `<pid>-<random>.gguf.part`, named after the api process writing it, so that at
 * start one api removes what a crashed one left without touching a live import of another api
 * process sharing the directory on this machine, nor any file it did not write (a browser's
 * `model.gguf.part` in a directory MODEL_IMPORT_DIR was pointed at).
 */
const PART_FILE = /^([1-9][0-9]*)-[0-9a-f]+\.gguf\.part$/
/** Errors of a file system with no room left (a full disk, or a user's quota). */
const NO_ROOM = new Set(['ENOSPC', 'EDQUOT'])
/**
 * Errors of a MODEL_IMPORT_DIR the api cannot write at all: no permission, a read-only file
 * system, a file where a directory should be (EEXIST, ENOTDIR), or a parent mkdir could not make
 * (ENOENT, which a read-only mount gives for a missing directory).
 */
const UNWRITABLE = new Set(['EACCES', 'EPERM', 'EROFS', 'ENOTDIR', 'EEXIST', 'ENOENT'])
/** The status of an import's last line, by its error code (any other failure is Ollama's: 502). */
const LINE_STATUS = new Map<string, number>([
  [ErrorCode.modelExists, 409],
  [ErrorCode.ollamaUnavailable, 503],
  [ErrorCode.ollamaTimeout, 504],
])

type Received = { digest: string; size: number }

const tooLarge = (limit: number) =>
  new AppError(
    413,
    ErrorCode.payloadTooLarge,
    `The file is over ${limit} bytes (MODEL_IMPORT_LIMIT)`,
  )

const notGguf = () =>
  new AppError(
    415,
    ErrorCode.notGguf,
    'The body is not a GGUF file (it does not begin with "GGUF"): send the model file itself',
  )

/**
 * Streams the body to `path`, hashing it. Past `limit` bytes, when it does not begin with the
 * GGUF magic, or when the file cannot be written, reading stops there: the request is left
 * paused (not destroyed, so the refusal can still be answered) and the connection is closed
 * after the answer.
 */
async function receive(body: IncomingMessage, path: string, limit: number): Promise<Received> {
  const hash = createHash('sha256')
  let size = 0
  let head = Buffer.alloc(0)
  const check = new Transform({
    highWaterMark: STREAM_BUFFER,
    transform(chunk: Buffer, _encoding, done) {
      size += chunk.length
      if (head.length < GGUF_MAGIC.length) {
        head = Buffer.concat([head, chunk]).subarray(0, GGUF_MAGIC.length)
        if (!GGUF_MAGIC.subarray(0, head.length).equals(head)) return done(notGguf())
      }
      if (size > limit) return done(tooLarge(limit))
      hash.update(chunk)
      done(null, chunk)
    },
    flush(done) {
      done(size < GGUF_MAGIC.length ? notGguf() : null)
    },
  })
  // pipe(), not pipeline(): a refusal must not destroy the request (and with it the socket the
  // answer goes out on). A client that goes away still fails the write.
  whenDone(body, (err) => {
    if (err) check.destroy(err)
  })
  body.pipe(check)
  try {
    await pipeline(check, createWriteStream(path, { highWaterMark: STREAM_BUFFER }))
  } catch (err) {
    body.unpipe(check)
    body.pause()
    throw err
  }
  return { digest: `sha256:${hash.digest('hex')}`, size }
}

/** A file system error of MODEL_IMPORT_DIR as the 503 that says what to fix; others as they are. */
function diskFailure(dir: string, err: unknown): unknown {
  const code = (err as NodeJS.ErrnoException).code as string
  if (NO_ROOM.has(code)) {
    return new AppError(
      503,
      ErrorCode.importDirFull,
      `MODEL_IMPORT_DIR=${dir} is full (${code}): the upload was stopped and removed; free room there, or give it a larger volume`,
    )
  }
  if (UNWRITABLE.has(code)) {
    return new AppError(
      503,
      ErrorCode.importDirUnwritable,
      `MODEL_IMPORT_DIR=${dir} cannot be written by the api (${code}): make it a writable directory, or point MODEL_IMPORT_DIR at one`,
    )
  }
  return err
}

/** Whether process `pid` runs (EPERM: it does, as another user). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** The default options as a JSON object, or a 400 naming the query parameter. */
function parseParameters(text: string | undefined): Record<string, unknown> | undefined {
  if (text === undefined) return undefined
  const parameters = modelParameters(text)
  if (parameters === undefined) {
    throw new AppError(
      400,
      ErrorCode.validation,
      'querystring/parameters must be a JSON object such as {"temperature":0.2}',
    )
  }
  return parameters
}

const modelsImport: FastifyPluginAsyncTypebox = async (fastify) => {
  const { config, ollama, redis } = fastify
  const dir = resolve(config.MODEL_IMPORT_DIR)
  // In this scope only, an octet-stream body is the request stream itself (no BODY_LIMIT, never
  // buffered); every other route refuses it (415).
  fastify.addContentTypeParser(GGUF_TYPE, (_request, payload, done) => done(null, payload))

  // At start: part files of uploads cut by a crash (theirs is this pid if it came back with it,
  // as a restarted container's first process does; or a pid no process has any more). Only names
  // of the api's own pattern: anything else in the directory is not the api's to remove.
  const names = await readdir(dir).catch(() => [] as string[])
  const stale = names.filter((name) => {
    const owner = PART_FILE.exec(name)?.[1]
    return owner !== undefined && (Number(owner) === process.pid || !alive(Number(owner)))
  })
  await Promise.allSettled(stale.map((name) => rm(join(dir, name), { force: true })))
  if (stale.length > 0) {
    fastify.log.info(
      { dir, files: stale.length },
      'removed part files of interrupted model imports',
    )
  }

  /** Imports this process is running (each holds one of MODEL_IMPORT_CONCURRENCY). */
  let importing = 0

  /**
   * Holds `name` for this import across every api replica and `cnfl models import` (in Redis,
   * lib/model-name-hold.ts); the release may be called any number of times.
   */
  async function holdName(name: string, reply: FastifyReply): Promise<() => Promise<void>> {
    const hold = await holdModelName(redis, name, config.MODEL_IMPORT_LOCK_MS).catch(
      (err: Error) => {
        // A Redis that refuses writes (out of memory, a read-only replica) or is gone.
        throw new AppError(
          503,
          ErrorCode.redisUnavailable,
          `Redis (REDIS_URL) did not record this import's hold on the name ${name} (${err.message}); nothing was imported, retry once Redis takes writes`,
        )
      },
    )
    if ('release' in hold) return hold.release
    // The hold of an import that runs is renewed; one whose importer died lapses in what is left.
    const seconds = Math.max(1, Math.ceil(hold.leftMs / 1000))
    reply.header('retry-after', String(seconds))
    throw new AppError(
      409,
      ErrorCode.importInProgress,
      `${name} is being imported already (on this or another api process, or by cnfl): wait for that import to end; if it is gone (its process died), the hold on the name lapses within ${seconds} s (MODEL_IMPORT_LOCK_MS). To replace the model it makes, send replace=true then`,
    )
  }

  /**
   * 409 when Ollama already has a model of that name (Ollama's create would overwrite it).
   * `since` says when it was made, for a model found on the last look before create.
   */
  async function refuseExisting(name: string, signal: AbortSignal, since: string): Promise<void> {
    const response = await ollama.get('/api/tags', signal)
    if (response.statusCode >= 400) throw await ollama.error(response)
    const { models } = await ollama.json<{ models: Array<{ name: string }> }>(response)
    const wanted = ollamaModelName(name)
    const found = models.find((model) => ollamaModelName(model.name) === wanted)
    if (found) {
      throw new AppError(
        409,
        ErrorCode.modelExists,
        `Ollama already has a model named ${found.name}${since}: choose another name, or send replace=true to replace it`,
      )
    }
  }

  /** Sends the file as a blob unless Ollama has it, with progress lines while it goes. */
  async function* uploadBlob(path: string, file: Received, signal: AbortSignal) {
    const blobPath = `/api/blobs/${file.digest}`
    const head = await ollama.blob('HEAD', blobPath, null, signal)
    await head.body.dump()
    const progress = { status: `uploading ${file.digest}`, digest: file.digest, total: file.size }
    if (head.statusCode !== 200) {
      let completed = 0
      const counter = new Transform({
        highWaterMark: STREAM_BUFFER,
        transform(chunk: Buffer, _encoding, done) {
          completed += chunk.length
          done(null, chunk)
        },
      })
      // pipeline() passes a read error on to the body, so the upload fails instead of hanging.
      const body = pipe(createReadStream(path, { highWaterMark: STREAM_BUFFER }), counter, () => {})
      const sent = ollama.blob('POST', blobPath, body, signal)
      let finished = false
      const settled = sent.then(
        () => {
          finished = true
        },
        () => {
          finished = true
        },
      )
      while (!finished) {
        yield ndjsonLine({ ...progress, completed })
        let timer: NodeJS.Timeout | undefined
        await Promise.race([
          settled,
          new Promise((wake) => {
            timer = setTimeout(wake, PROGRESS_MS)
          }),
        ])
        clearTimeout(timer)
      }
      const response = await sent
      if (response.statusCode >= 400) throw await ollama.error(response)
      await response.body.dump()
    }
    yield ndjsonLine({ ...progress, completed: file.size })
  }

  /** The progress of the blob upload, then create's own lines; always ends in success or error. */
  async function* importLines(
    query: ModelImportQuery,
    path: string,
    file: Received,
    parameters: Record<string, unknown> | undefined,
    signal: AbortSignal,
    release: () => Promise<void>,
  ): AsyncGenerator<Buffer | string> {
    try {
      yield* uploadBlob(path, file, signal)
      await rm(path, { force: true })
      // The hold keeps api imports apart, not `cnfl models import`, a pull or another tool: a
      // model made under the name during the upload is not overwritten. The blob stays; Ollama
      // prunes blobs no model uses.
      if (query.replace !== true) {
        await refuseExisting(query.name, signal, ' (made while the file was uploading)')
      }
      const upstream = await ollama.post(
        '/api/create',
        {
          model: query.name,
          files: { [`${query.name.replace(/[/:]/g, '-')}.gguf`]: file.digest },
          template: query.template,
          system: query.system,
          parameters,
          stream: true,
        },
        signal,
      )
      if (upstream.statusCode >= 400) throw await ollama.error(upstream)
      for await (const part of relayNdjson(upstream.body, {
        interruptedMessage: (reason) =>
          `Creating ${query.name} on Ollama at ${ollama.url} stopped before it finished (${reason})`,
        isAborted: () => signal.aborted,
        scrub: ollama.scrub,
      })) {
        // The last line (success, or the relay's error line): the name is let go before it goes
        // out, so a client that imports the name again as soon as it reads it finds it free.
        if (FINAL_LINE.test(part.toString())) await release()
        yield part
      }
    } catch (err) {
      if (signal.aborted) return
      const failure = ollama.unavailable(err) as Error
      const code = failure instanceof AppError ? failure.code : ErrorCode.ollamaError
      await release()
      yield errorLine(code, `Importing ${query.name} failed: ${ollama.scrub(failure.message)}`)
    } finally {
      await rm(path, { force: true })
      // However it ended (a client gone, an abort): the name is free again.
      await release()
    }
  }

  fastify.post(
    '/models/import',
    {
      schema: {
        tags: ['models'],
        summary: 'Import a GGUF file as an Ollama model (admin)',
        description:
          'The body is the GGUF file itself (`Content-Type: application/octet-stream`), streamed to ' +
          'MODEL_IMPORT_DIR (never held in memory; up to MODEL_IMPORT_LIMIT bytes), then sent to ' +
          'Ollama as a blob and made a model named `name`. With `stream=true`, progress lines as ' +
          "NDJSON (`uploading sha256:…` with `completed`/`total`, then Ollama's own), ending with " +
          '`{"status":"success"}` or `{error, message}`; otherwise `{"status":"success"}` once the ' +
          'model exists. A failed import creates no model. Refusals come before the body is read ' +
          '(or as soon as it shows the problem) and close the connection: 409 `model_exists` ' +
          '(unless `replace=true`) or `import_in_progress` (the name is being imported, on any api ' +
          'replica or by `cnfl models import`; Retry-After says when its hold lapses), 413 over ' +
          'MODEL_IMPORT_LIMIT, 415 `not_gguf` or another Content-Type, 503 `imports_busy` past ' +
          'MODEL_IMPORT_CONCURRENCY imports on this api process (with Retry-After) or ' +
          '`import_dir_full` when MODEL_IMPORT_DIR has no room left, `import_dir_unwritable` when it ' +
          'cannot be written, `redis_unavailable` when Redis does not record the hold. A name taken ' +
          'during the upload (by another tool) is also a 409 `model_exists`, after the upload. 504 ' +
          '`ollama_timeout` when Ollama does not begin answering within OLLAMA_RESPONSE_TIMEOUT_MS.',
        querystring: ModelImportQuerySchema,
        response: {
          200: {
            description: 'Imported',
            content: {
              'application/json': { schema: ModelImportProgressSchema },
              'application/x-ndjson': { schema: ModelImportProgressSchema },
            },
          },
          ...errorResponses(400, 401, 403, 409, 413, 415, 502, 503, 504),
        },
      },
      config: {
        // The body is read as a stream, not validated; the document still shows it.
        swaggerTransform: ({ schema, url }: { schema: object; url: string }) => ({
          url,
          schema: {
            ...schema,
            consumes: [GGUF_TYPE],
            body: { type: 'string', format: 'binary', description: 'The GGUF file' },
          },
        }),
      },
      // Before any parser reads the body (the JSON one would read it all, up to BODY_LIMIT, to
      // then call it not JSON): a wrong type is refused at once, the connection closed.
      preParsing: async (request, reply) => {
        if (mediaType(request.headers['content-type']) !== GGUF_TYPE) {
          reply.raw.shouldKeepAlive = false
          throw new AppError(
            415,
            ErrorCode.unsupportedMediaType,
            `Send the GGUF file as the body with Content-Type: ${GGUF_TYPE} (this request has ${request.headers['content-type'] ?? 'none'})`,
          )
        }
      },
    },
    async (request, reply) => {
      // Until the whole body has arrived, an answer closes the connection: keeping it open would
      // have Node read (and drop) all the rest of a multi-GB body first.
      const keepAlive = reply.raw.shouldKeepAlive
      reply.raw.shouldKeepAlive = false
      const { query } = request
      const parameters = parseParameters(query.parameters)
      const limit = config.MODEL_IMPORT_LIMIT
      if (Number(request.headers['content-length'] ?? 0) > limit) throw tooLarge(limit)
      const abort = abortOnClientGone(request, reply)
      if (query.replace !== true) await refuseExisting(query.name, abort.signal, '')

      const releaseName = await holdName(query.name, reply)
      if (importing >= config.MODEL_IMPORT_CONCURRENCY) {
        await releaseName()
        reply.header('retry-after', String(BUSY_RETRY_AFTER_S))
        throw new AppError(
          503,
          ErrorCode.importsBusy,
          `This api process is running ${importing} model imports, its most (MODEL_IMPORT_CONCURRENCY); retry in ${BUSY_RETRY_AFTER_S} s`,
        )
      }
      importing += 1
      let counted = true
      const release = async () => {
        if (counted) {
          counted = false
          importing -= 1
        }
        await releaseName()
      }
      const path = join(dir, `${process.pid}-${randomBytes(8).toString('hex')}.gguf.part`)
      // However the request ends (a client gone before the lines were read included).
      // (The callback form: a failure to remove is not worth an unhandled rejection.)
      onceClosed(request, reply, () => {
        void release()
        removeFile(path, { force: true }, () => {})
      })
      let file: Received
      try {
        // Held now: a model made under the name since the first look is found.
        if (query.replace !== true) await refuseExisting(query.name, abort.signal, '')
        const failed = (err: unknown) => {
          throw diskFailure(dir, err)
        }
        await mkdir(dir, { recursive: true }).catch(failed)
        file = await receive(request.body as IncomingMessage, path, limit).catch(failed)
        reply.raw.shouldKeepAlive = keepAlive
        if (query.digest !== undefined && query.digest !== file.digest) {
          throw new AppError(
            400,
            ErrorCode.digestMismatch,
            `The file that arrived has the digest ${file.digest}, not ${query.digest}: it was changed or cut on the way`,
          )
        }
      } catch (err) {
        // (Under a MODEL_IMPORT_DIR with a file in its path, even this fails: ENOTDIR.)
        await rm(path, { force: true }).catch(() => undefined)
        // Before the refusal goes out: the client may retry the name at once.
        await release()
        throw err
      }
      const lines = importLines(query, path, file, parameters, abort.signal, release)
      if (query.stream === true) return sendNdjson(reply, lines)

      const last = JSON.parse(await lastLine(lines)) as {
        status?: string
        error?: string
        message?: string
      }
      if (last.status === 'success') return { status: 'success', digest: file.digest }
      const status = LINE_STATUS.get(last.error as string)
      throw new AppError(
        status ?? 502,
        (status === undefined ? ErrorCode.ollamaError : last.error) as ErrorCodeName,
        last.message as string,
      )
    },
  )
}

export default modelsImport
