// `pnpm --silent cnfl models import FILE --name NAME`: a GGUF file on this machine becomes a model
// of the Ollama at OLLAMA_URL, as POST /api/models/import does it (the same blob and create
// calls, the same checks), but straight to Ollama like the other cnfl commands: no api key, and
// no copy of a multi-GB file into MODEL_IMPORT_DIR, since the file is already on this disk. The
// api route is for a file that is not on the machine (curl from a laptop).
// It takes the same hold on the name in the api's Redis (REDIS_URL) as an api import, so the two
// cannot import one name at once; with Redis unreachable it warns and goes on without. Both also
// look for the name again right before creating, so neither overwrites a model another tool made
// meanwhile without --replace / replace=true.
import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { open, readFile } from 'node:fs/promises'
import { resolve } from 'node:path'
import { Transform } from 'node:stream'
import { loadApiConfig, modelParameters, ollamaModelName, redactUrl } from '@confluence-bot/shared'
import { humanBytes } from '../services/api/src/lib/human-bytes.ts'
import { holdModelName } from '../services/api/src/lib/model-name-hold.ts'
import { OllamaUpstream } from '../services/api/src/lib/ollama-upstream.ts'
import { MODEL_NAME_PATTERN } from '../services/api/src/schemas/models-import.ts'
import { UsageError } from './ingest-usage.ts'
import { oneShotRedis } from './redis.ts'
import { parseCommand } from './search.ts'

export const MODELS_USAGE = `Usage: cnfl models import FILE --name NAME [--system TEXT] [--template FILE]
                         [--parameters JSON] [--replace]

Makes the GGUF file FILE a model named NAME on the Ollama at OLLAMA_URL: the file is hashed,
sent to Ollama as a blob (unless Ollama has it already) and created as a model, with a progress
bar on stderr and one JSON line on stdout at the end. (POST /api/models/import does the same
through the api, for a file on another machine.)

  --name NAME        the model's name in Ollama (refused if taken, unless --replace)
  --system TEXT      its default system prompt
  --template FILE    a file holding its prompt template (Go template syntax)
  --parameters JSON  its default options, e.g. '{"temperature":0.2,"num_ctx":8192}'
  --replace          replace a model of that name
`

const GGUF_MAGIC = Buffer.from('GGUF')

/** A progress bar on stderr: redrawn in place on a terminal, a line per tenth otherwise. */
function progressBar(label: string, total: number) {
  // Redrawn at each percent on a terminal; a tenth per line in a log.
  /* c8 ignore next: tests read stderr through a pipe, never a terminal */
  const [tty, steps] = process.stderr.isTTY === true ? [true, 100] : [false, 10]
  let shown = -1
  return (done: number) => {
    const fraction = done / total
    const step = Math.floor(fraction * steps)
    if (step === shown) return
    shown = step
    const filled = Math.round(fraction * 30)
    const line = `${label} [${'#'.repeat(filled)}${' '.repeat(30 - filled)}] ${humanBytes(done)} / ${humanBytes(total)}`
    /* c8 ignore next: a terminal only */
    process.stderr.write(tty ? `\r${line}${done === total ? '\n' : ''}` : `${line}\n`)
  }
}

/** Reads the file through `counter`-like progress, as a stream (never held in memory). */
function withProgress(path: string, draw: (done: number) => void): NodeJS.ReadableStream {
  let done = 0
  return createReadStream(path).pipe(
    new Transform({
      transform(chunk: Buffer, _encoding, next) {
        done += chunk.length
        draw(done)
        next(null, chunk)
      },
    }),
  )
}

async function sha256Of(path: string, size: number): Promise<string> {
  const hash = createHash('sha256')
  for await (const chunk of withProgress(path, progressBar('hashing  ', size))) {
    hash.update(chunk as Buffer)
  }
  return `sha256:${hash.digest('hex')}`
}

/** The file's size, after checking it exists and begins with the GGUF magic. */
async function checkGguf(path: string, file: string): Promise<number> {
  const handle = await open(path).catch((err: Error) => {
    throw new Error(`cannot read ${file}: ${err.message}`)
  })
  try {
    const head = Buffer.alloc(GGUF_MAGIC.length)
    await handle.read(head, 0, head.length, 0)
    if (!head.equals(GGUF_MAGIC)) {
      throw new Error(`${file} is not a GGUF file (it does not begin with "GGUF")`)
    }
    return (await handle.stat()).size
  } finally {
    await handle.close()
  }
}

/** Refuses a name Ollama would refuse, before the file is read at all. */
function checkName(name: string): void {
  if (name.length > 256 || !new RegExp(MODEL_NAME_PATTERN).test(name)) {
    throw new UsageError(
      `--name ${JSON.stringify(name)} is not a model name Ollama accepts ([host/][namespace/]model[:tag]; letters, digits, _ . -)`,
    )
  }
}

/** Fails when Ollama has a model of that name; `since` says when it was made. */
async function refuseTaken(
  ollama: OllamaUpstream,
  name: string,
  signal: AbortSignal,
  since: string,
): Promise<void> {
  const tags = await ollama.get('/api/tags', signal)
  if (tags.statusCode >= 400) throw await ollama.error(tags)
  const { models } = await ollama.json<{ models: Array<{ name: string }> }>(tags)
  const taken = models.find((m) => ollamaModelName(m.name) === ollamaModelName(name))
  if (taken) {
    throw new Error(
      `Ollama already has a model named ${taken.name}${since}: add --replace to replace it`,
    )
  }
}

/** Redis's answers to a missing or wrong password (and ioredis' own, without a password). */
const AUTH_REFUSED = /NOAUTH|WRONGPASS|invalid password|invalid username-password/i

/**
 * Holds the name in the api's Redis as an api import does (renewed until released); refuses a
 * name an import holds. An unreachable Redis is a warning: the import goes on without the hold.
 */
async function holdName(url: string, name: string, ttlMs: number): Promise<() => Promise<void>> {
  const redis = oneShotRedis(url)
  const where = `Redis at REDIS_URL=${redactUrl(url)}`
  // ioredis reports a refused password as an error event, then fails the connect as "closed".
  const seen: Error[] = []
  redis.on('error', (err: Error) => seen.push(err))
  const refusal = await redis.connect().then(
    () => undefined,
    (err: Error) => err,
  )
  // A Redis that is there but refuses the password is a setting to fix, not one to go without.
  const auth = seen.find((err) => AUTH_REFUSED.test(err.message))
  if (auth) {
    redis.disconnect()
    throw new Error(
      `${where} refused its credentials (${auth.message.split('\n')[0]}): put the api's Redis password in REDIS_URL (redis://:PASSWORD@host:port)`,
    )
  }
  if (refusal) {
    process.stderr.write(
      `cnfl: ${where} is unreachable: an api import of ${name} at the same time is not kept out (the name is still looked for right before creating)\n`,
    )
    redis.disconnect()
    return async () => {}
  }
  try {
    const hold = await holdModelName(redis, name, ttlMs).catch((err: Error) => {
      throw new Error(`${where} did not record the hold on the name ${name} (${err.message})`)
    })
    if ('leftMs' in hold) {
      throw new Error(
        `${name} is being imported right now (through the api, or by another cnfl): wait for that import to end; if it is gone, its hold on the name lapses within ${Math.max(1, Math.ceil(hold.leftMs / 1000))} s`,
      )
    }
    return async () => {
      await hold.release()
      redis.disconnect()
    }
  } catch (err) {
    redis.disconnect()
    throw err
  }
}

/** Create's status lines to stderr; its last line, or a clear error when the stream is cut. */
async function createLines(
  body: AsyncIterable<Buffer>,
  name: string,
): Promise<{ status?: string; error?: string }> {
  let last: { status?: string; error?: string } = {}
  let carry = ''
  const chunks = body[Symbol.asyncIterator]()
  for (;;) {
    // Only a failed read is a cut stream (undici: "other side closed", "terminated").
    const next = await chunks.next().catch((err: Error) => {
      throw new Error(
        `Ollama closed the stream of creating ${name} before it finished (${err.message}): the model may not exist; check \`ollama list\``,
      )
    })
    if (next.done === true) return last
    const lines = (carry + next.value.toString()).split('\n')
    carry = lines.pop() as string
    for (const line of lines.filter((l) => l.trim() !== '')) {
      last = JSON.parse(line) as typeof last
      if (last.status !== undefined) process.stderr.write(`${last.status}\n`)
    }
  }
}

function parseParameters(text: string | undefined): Record<string, unknown> | undefined {
  if (text === undefined) return undefined
  const parameters = modelParameters(text)
  if (parameters === undefined) {
    throw new UsageError('--parameters must be a JSON object such as {"temperature":0.2}')
  }
  return parameters
}

async function importModel(args: string[], cwd: string): Promise<number> {
  const { values, positionals } = parseCommand(args, {
    name: { type: 'string' },
    system: { type: 'string' },
    template: { type: 'string' },
    parameters: { type: 'string' },
    replace: { type: 'boolean' },
  })
  const [file] = positionals
  const name = values.name
  if (file === undefined || positionals.length > 1 || name === undefined) {
    throw new UsageError('cnfl models import takes one FILE and --name NAME')
  }
  checkName(name)
  const parameters = parseParameters(values.parameters)
  const template =
    values.template === undefined
      ? undefined
      : await readFile(resolve(cwd, values.template), 'utf8').catch((err: Error) => {
          throw new Error(`cannot read --template ${values.template}: ${err.message}`)
        })
  const path = resolve(cwd, file)
  const size = await checkGguf(path, file)

  const config = loadApiConfig()
  const ollama = new OllamaUpstream(config.OLLAMA_URL, {
    connectTimeoutMs: config.OLLAMA_CONNECT_TIMEOUT_MS,
    connections: 2,
    answerMaxMs: 0,
    responseTimeoutMs: config.OLLAMA_RESPONSE_TIMEOUT_MS,
  })
  const signal = new AbortController().signal
  let release = async () => {}
  try {
    if (values.replace !== true) await refuseTaken(ollama, name, signal, '')
    release = await holdName(config.REDIS_URL, name, config.MODEL_IMPORT_LOCK_MS)
    const digest = await sha256Of(path, size)
    const blobPath = `/api/blobs/${digest}`
    const head = await ollama.blob('HEAD', blobPath, null, signal)
    await head.body.dump()
    if (head.statusCode !== 200) {
      const body = withProgress(path, progressBar('uploading', size))
      const sent = await ollama.blob('POST', blobPath, body, signal)
      if (sent.statusCode >= 400) throw await ollama.error(sent)
      await sent.body.dump()
    }
    // Hashing and uploading take minutes: another tool (an api import) may have made the name.
    if (values.replace !== true) {
      await refuseTaken(ollama, name, signal, ' (made while the file was uploading)')
    }
    const created = await ollama.post(
      '/api/create',
      {
        model: name,
        files: { [`${name.replace(/[/:]/g, '-')}.gguf`]: digest },
        template,
        system: values.system,
        parameters,
        stream: true,
      },
      signal,
    )
    if (created.statusCode >= 400) throw await ollama.error(created)
    const last = await createLines(created.body, name)
    if (last.status !== 'success') {
      throw new Error(
        `Ollama did not create ${name}: ${last.error ?? 'its answer ended before it said success; the model may not exist; check `ollama list`'}`,
      )
    }
    process.stdout.write(`${JSON.stringify({ model: name, digest, size, status: 'success' })}\n`)
    return 0
  } finally {
    // Ollama's errors and its unreachability (AppErrors) reach cnfl as one line each.
    await release()
    await ollama.close()
  }
}

export async function models(args: string[], cwd: string): Promise<number> {
  const [sub, ...rest] = args
  if (sub === '-h' || sub === '--help') {
    process.stdout.write(MODELS_USAGE)
    return 0
  }
  if (sub !== 'import') {
    process.stderr.write(MODELS_USAGE)
    return 2
  }
  return importModel(rest, cwd)
}
