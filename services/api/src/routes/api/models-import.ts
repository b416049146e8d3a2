import { createHash, randomBytes } from 'node:crypto'
import { createReadStream, createWriteStream, rm as removeFile } from 'node:fs'
import { mkdir, rm } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { pipeline as pipe, Transform } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { AppError, ErrorCode, modelParameters, ollamaModelName } from '@confluence-bot/shared'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyRequest } from 'fastify'
import { errorLine, relayNdjson } from '../../lib/ndjson.ts'
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

const GGUF_TYPE = 'application/octet-stream'
const GGUF_MAGIC = Buffer.from('GGUF')
/** How often a progress line reports the upload to Ollama. */
const PROGRESS_MS = 500

type Received = { digest: string; size: number }

/**
 * Streams the body to `path`, hashing it. Past `limit` bytes, or when it does not begin with
 * the GGUF magic, the rest is read and dropped (not written), so the client gets its 413 or 400
 * rather than a reset connection.
 */
async function receive(request: FastifyRequest, path: string, limit: number): Promise<Received> {
  const tooLarge = () =>
    new AppError(
      413,
      ErrorCode.payloadTooLarge,
      `The file is over ${limit} bytes (MODEL_IMPORT_LIMIT)`,
    )
  if (Number(request.headers['content-length'] ?? 0) > limit) throw tooLarge()
  const hash = createHash('sha256')
  let size = 0
  let head = Buffer.alloc(0)
  let refused = false
  const check = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      size += chunk.length
      if (head.length < GGUF_MAGIC.length) {
        head = Buffer.concat([head, chunk]).subarray(0, GGUF_MAGIC.length)
        refused ||= !GGUF_MAGIC.subarray(0, head.length).equals(head)
      }
      refused ||= size > limit
      if (refused) return done()
      hash.update(chunk)
      done(null, chunk)
    },
  })
  await pipeline(request.body as NodeJS.ReadableStream, check, createWriteStream(path))
  if (size > limit) throw tooLarge()
  if (refused || size < GGUF_MAGIC.length) {
    throw new AppError(
      400,
      ErrorCode.notGguf,
      'The body is not a GGUF file (it does not begin with "GGUF"): send the model file itself',
    )
  }
  return { digest: `sha256:${hash.digest('hex')}`, size }
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

const line = (value: object) => `${JSON.stringify(value)}\n`

const modelsImport: FastifyPluginAsyncTypebox = async (fastify) => {
  const { config, ollama } = fastify
  // In this scope only, an octet-stream body is the request stream itself (no BODY_LIMIT, never
  // buffered); every other route refuses it (415).
  fastify.addContentTypeParser(GGUF_TYPE, (_request, payload, done) => done(null, payload))

  /** 409 when Ollama already has a model of that name (Ollama's create would overwrite it). */
  async function refuseExisting(name: string, signal: AbortSignal): Promise<void> {
    const response = await ollama.get('/api/tags', signal)
    if (response.statusCode >= 400) throw await ollama.error(response)
    const { models } = await ollama.json<{ models: Array<{ name: string }> }>(response)
    const wanted = ollamaModelName(name)
    const found = models.find((model) => ollamaModelName(model.name) === wanted)
    if (found) {
      throw new AppError(
        409,
        ErrorCode.modelExists,
        `Ollama already has a model named ${found.name}: choose another name, or send replace=true to replace it`,
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
        transform(chunk: Buffer, _encoding, done) {
          completed += chunk.length
          done(null, chunk)
        },
      })
      // pipeline() passes a read error on to the body, so the upload fails instead of hanging.
      const body = pipe(createReadStream(path), counter, () => {})
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
        yield line({ ...progress, completed })
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
    yield line({ ...progress, completed: file.size })
  }

  /** The progress of the blob upload, then create's own lines; always ends in success or error. */
  async function* importLines(
    query: ModelImportQuery,
    path: string,
    file: Received,
    parameters: Record<string, unknown> | undefined,
    signal: AbortSignal,
  ): AsyncGenerator<Buffer | string> {
    try {
      yield* uploadBlob(path, file, signal)
      await rm(path, { force: true })
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
      yield* relayNdjson(upstream.body, {
        interruptedMessage: (reason) =>
          `Creating ${query.name} on Ollama at ${ollama.url} stopped before it finished (${reason})`,
        isAborted: () => signal.aborted,
        scrub: ollama.scrub,
      })
    } catch (err) {
      if (signal.aborted) return
      const failure = ollama.unavailable(err) as Error
      const code = failure instanceof AppError ? failure.code : ErrorCode.ollamaError
      yield errorLine(code, `Importing ${query.name} failed: ${ollama.scrub(failure.message)}`)
    } finally {
      await rm(path, { force: true })
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
          'model exists. A failed import creates no model.',
        querystring: ModelImportQuerySchema,
        response: {
          200: {
            description: 'Imported',
            content: {
              'application/json': { schema: ModelImportProgressSchema },
              'application/x-ndjson': { schema: ModelImportProgressSchema },
            },
          },
          ...errorResponses(400, 401, 403, 409, 413, 415, 502, 503),
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
    },
    async (request, reply) => {
      if (mediaType(request.headers['content-type']) !== GGUF_TYPE) {
        throw new AppError(
          415,
          ErrorCode.unsupportedMediaType,
          `Send the GGUF file as the body with Content-Type: ${GGUF_TYPE}`,
        )
      }
      const { query } = request
      const parameters = parseParameters(query.parameters)
      const abort = abortOnClientGone(request, reply)
      if (query.replace !== true) await refuseExisting(query.name, abort.signal)

      const dir = resolve(config.MODEL_IMPORT_DIR)
      await mkdir(dir, { recursive: true })
      const path = join(dir, `${randomBytes(8).toString('hex')}.gguf.part`)
      // However the request ends (a client gone before the lines were read included).
      // (The callback form: a failure to remove is not worth an unhandled rejection.)
      onceClosed(request, reply, () => removeFile(path, { force: true }, () => {}))
      let file: Received
      try {
        file = await receive(request, path, config.MODEL_IMPORT_LIMIT)
        if (query.digest !== undefined && query.digest !== file.digest) {
          throw new AppError(
            400,
            ErrorCode.digestMismatch,
            `The file that arrived has the digest ${file.digest}, not ${query.digest}: it was changed or cut on the way`,
          )
        }
      } catch (err) {
        await rm(path, { force: true })
        throw err
      }
      const lines = importLines(query, path, file, parameters, abort.signal)
      if (query.stream === true) return sendNdjson(reply, lines)

      const last = JSON.parse(await lastLine(lines)) as {
        status?: string
        error?: string
        message?: string
      }
      if (last.status === 'success') return { status: 'success', digest: file.digest }
      const unavailable = last.error === ErrorCode.ollamaUnavailable
      throw new AppError(
        unavailable ? 503 : 502,
        unavailable ? ErrorCode.ollamaUnavailable : ErrorCode.ollamaError,
        last.message as string,
      )
    },
  )
}

export default modelsImport
