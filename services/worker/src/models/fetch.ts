import { createHash } from 'node:crypto'
import { createWriteStream } from 'node:fs'
import { access, mkdir, rename, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { Readable, Transform } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import type { ReadableStream as WebReadableStream } from 'node:stream/web'

// Downloads the GGUF files that MODEL_SOURCES serves over http(s), for the Ollama pod's init
// containers. The stock `ollama/ollama` image has neither curl nor wget, so this runs first, in
// the worker's image (Node's fetch), and leaves each verified file where `init-models.sh` looks
// for it; the Ollama init container then creates the model from it without any network.

export type FetchSettings = {
  /** The models to provide: CHAT_MODEL and EMBED_MODEL. */
  models: string[]
  /** MODEL_SOURCES: `name=source` entries separated by white space; the last one for a name wins. */
  sources: string
  /** Where verified downloads are left, as `<name with unsafe characters as _>.gguf`. */
  downloadDir: string
  /** Ollama's model directory (OLLAMA_MODELS), read to skip models already on the volume. */
  modelsDir: string
}

type Say = (line: string) => void

/** Thrown with the one line the pod's events and logs show. */
export class FetchError extends Error {}

const GGUF_MAGIC = Buffer.from('GGUF')

/** The source MODEL_SOURCES gives each model; a model it does not name has none here. */
export function sourcesOf(text: string): Map<string, string> {
  const sources = new Map<string, string>()
  for (const entry of text.split(/\s+/)) {
    const at = entry.indexOf('=')
    if (at > 0) sources.set(entry.slice(0, at), entry.slice(at + 1))
  }
  return sources
}

/** The file name `init-models.sh` expects for a model's download (its `tr -c` rule). */
export const downloadName = (model: string) => `${model.replace(/[^A-Za-z0-9._-]/g, '_')}.gguf`

/**
 * Where Ollama keeps a model's manifest: `manifests/<host>/<namespace>/<model>/<tag>`, with the
 * registry's defaults for what the name leaves out (`registry.ollama.ai`, `library`, `latest`).
 */
export function manifestPath(modelsDir: string, model: string): string {
  const slash = model.lastIndexOf('/')
  const colon = model.indexOf(':', slash + 1)
  const tag = colon === -1 ? 'latest' : model.slice(colon + 1)
  const parts = (colon === -1 ? model : model.slice(0, colon)).split('/')
  const defaults = ['registry.ollama.ai', 'library']
  const full = [...defaults.slice(0, Math.max(0, 3 - parts.length)), ...parts]
  return join(modelsDir, 'manifests', ...full, tag)
}

/** The URL without credentials or fragment, for log lines. */
function shown(url: URL): string {
  return `${url.protocol}//${url.host}${url.pathname}`
}

/** The expected sha256 of a `#sha256=HEX` fragment (any case), or undefined without a fragment. */
function expectedDigest(model: string, url: URL): string | undefined {
  if (url.hash === '') return undefined
  if (!/^#sha256=[0-9a-f]{64}$/i.test(url.hash))
    throw new FetchError(
      `model ${model}: the source ${shown(url)} ends in "${url.hash}"; to fix: end it in #sha256= and the file's 64 hex digit sha256, or nothing`,
    )
  return url.hash.slice('#sha256='.length).toLowerCase()
}

const exists = (path: string) =>
  access(path).then(
    () => true,
    () => false,
  )

/** Streams `url` to `target` through a `.part` file, checking the GGUF magic and the digest. */
async function download(model: string, url: URL, target: string, say: Say): Promise<void> {
  const expected = expectedDigest(model, url)
  const fail = (why: string, fix: string) =>
    new FetchError(`model ${model}: download from ${shown(url)} failed (${why}); to fix: ${fix}`)
  // fetch refuses URLs with credentials: they travel as Basic auth, and are never logged.
  const request = new URL(url)
  request.hash = ''
  request.username = ''
  request.password = ''
  const headers: Record<string, string> = {}
  if (url.username !== '')
    headers.authorization = `Basic ${Buffer.from(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`).toString('base64')}`
  say(`fetch-models: downloading ${model} from ${shown(url)}`)
  let response: Response
  try {
    response = await fetch(request, { headers })
  } catch (err) {
    // fetch reports every network failure as "fetch failed", with the reason as its cause.
    throw fail(
      (err as Error & { cause: Error }).cause.message,
      'serve the GGUF inside the cluster and allow the Ollama pod to reach it (NetworkPolicy)',
    )
  }
  if (!response.ok || response.body === null) {
    await response.body?.cancel()
    throw fail(`HTTP ${response.status}`, 'check the URL in MODEL_SOURCES (confluence-bot-config)')
  }
  const part = `${target}.part`
  const hash = createHash('sha256')
  let head = Buffer.alloc(0)
  const check = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      if (head.length < GGUF_MAGIC.length) {
        head = Buffer.concat([head, chunk]).subarray(0, GGUF_MAGIC.length)
        if (!GGUF_MAGIC.subarray(0, head.length).equals(head))
          return done(fail('not a GGUF file', 'serve the model as a .gguf file'))
      }
      hash.update(chunk)
      done(null, chunk)
    },
  })
  try {
    await pipeline(
      Readable.fromWeb(response.body as WebReadableStream<Uint8Array>),
      check,
      createWriteStream(part),
    )
    if (head.length < GGUF_MAGIC.length)
      throw fail('not a GGUF file', 'serve the model as a .gguf file')
    const actual = hash.digest('hex')
    if (expected !== undefined && actual !== expected)
      throw fail(`sha256 ${actual}, expected ${expected}`, 'serve the right file or fix #sha256=')
    await rename(part, target)
  } catch (err) {
    await rm(part, { force: true })
    if (err instanceof FetchError) throw err
    throw fail((err as Error).message, 'check the server and the free space of the download volume')
  }
  say(`fetch-models: ${model} downloaded and verified`)
}

/**
 * Leaves a verified GGUF in `downloadDir` for every model with an http(s) source that is neither
 * on the volume nor downloaded already. Other sources are `init-models.sh`'s to handle.
 */
export async function fetchModels(settings: FetchSettings, say: Say): Promise<void> {
  const sources = sourcesOf(settings.sources)
  for (const model of settings.models) {
    const source = sources.get(model) ?? 'registry'
    if (!/^https?:\/\//i.test(source)) continue
    if (await exists(manifestPath(settings.modelsDir, model))) {
      say(`fetch-models: ${model} is on the volume`)
      continue
    }
    const target = join(settings.downloadDir, downloadName(model))
    if (await exists(target)) {
      say(`fetch-models: ${model} is downloaded already`)
      continue
    }
    let url: URL
    try {
      url = new URL(source)
    } catch {
      throw new FetchError(
        `model ${model}: the source "${source}" is not a URL; to fix: correct its entry in MODEL_SOURCES (confluence-bot-config)`,
      )
    }
    await mkdir(settings.downloadDir, { recursive: true }).catch((err: Error) => {
      throw new FetchError(
        `model ${model}: cannot create the download directory ${settings.downloadDir} (${err.message}); to fix: mount a writable volume there`,
      )
    })
    await download(model, url, target, say)
  }
}
