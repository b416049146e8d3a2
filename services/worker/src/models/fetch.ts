import { createHash } from 'node:crypto'
import { createWriteStream } from 'node:fs'
import { access, mkdir, readFile, rename, rm } from 'node:fs/promises'
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
  /** How long a download may bring less than 64 KiB before it is given up (default 60 s). */
  stallWindowMs?: number
}

type Say = (line: string) => void

/** Thrown with the one line the pod's events and logs show. */
export class FetchError extends Error {}

const GGUF_MAGIC = Buffer.from('GGUF')
const MIN_BYTES_PER_WINDOW = 64 * 1024

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

/** The URL without credentials, query or fragment, for log lines. */
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

/** Whether a file exists; any answer but "no such file" is a failure naming `what`. */
async function exists(path: string, what: string, fix: string): Promise<boolean> {
  try {
    await access(path)
    return true
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false
    throw new FetchError(`cannot read ${what} (${(err as Error).message}); to fix: ${fix}`)
  }
}

/**
 * A source as it may be shown: no user or password, no query (a token may ride in either), no
 * fragment. Also for text that is not a URL at all.
 */
export function redactedSource(source: string): string {
  // Up to the last "@": a password with an unescaped "/", "?" or "#" must not show either.
  return source.replace(/^([a-z][a-z0-9+.-]*:\/\/).*@/is, '$1').replace(/[?#].*$/s, '')
}

/** Streams `url` to `target` through a `.part` file, checking the GGUF magic and the digest. */
async function download(
  model: string,
  url: URL,
  target: string,
  stallWindowMs: number,
  say: Say,
): Promise<void> {
  const expected = expectedDigest(model, url)
  const fail = (why: string, fix: string) =>
    new FetchError(`model ${model}: download from ${shown(url)} failed (${why}); to fix: ${fix}`)
  // fetch refuses URLs with credentials: they travel as Basic auth, and are never logged.
  const request = new URL(url)
  request.hash = ''
  request.username = ''
  request.password = ''
  const headers: Record<string, string> = {}
  if (url.username !== '') {
    let user: string
    try {
      user = `${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`
    } catch {
      throw new FetchError(
        `model ${model}: the user or password in the source ${shown(url)} has a malformed %-escape; to fix: write each special character as % and two hex digits`,
      )
    }
    headers.authorization = `Basic ${Buffer.from(user).toString('base64')}`
  }
  say(`fetch-models: downloading ${model} from ${shown(url)}`)
  let response: Response
  try {
    response = await fetch(request, { headers })
  } catch (err) {
    // fetch reports every network failure as "fetch failed", with the reason as its cause (for
    // TLS, OpenSSL's lines: kept on one).
    throw fail(
      (err as Error & { cause: Error }).cause.message.replace(/\s+/g, ' ').trim(),
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
  // A server that stops sending, or trickles, would hold the pod in its init container for ever:
  // each window must bring at least MIN_BYTES_PER_WINDOW.
  let received = 0
  const stalled = new AbortController()
  const watch = setInterval(() => {
    if (received < MIN_BYTES_PER_WINDOW)
      stalled.abort(
        fail(
          `${received} bytes in the last ${stallWindowMs / 1000} s`,
          'check the server; it must send at least 64 KiB in any such window',
        ),
      )
    received = 0
  }, stallWindowMs)
  const check = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      received += chunk.length
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
      { signal: stalled.signal },
    )
    if (head.length < GGUF_MAGIC.length)
      throw fail('not a GGUF file', 'serve the model as a .gguf file')
    const actual = hash.digest('hex')
    if (expected !== undefined && actual !== expected)
      throw fail(`sha256 ${actual}, expected ${expected}`, 'serve the right file or fix #sha256=')
    await rename(part, target)
  } catch (err) {
    await rm(part, { force: true })
    const reason = stalled.signal.aborted ? stalled.signal.reason : err
    if (reason instanceof FetchError) throw reason
    throw fail(
      (reason as Error).message,
      'check the server and the free space of the download volume',
    )
  } finally {
    clearInterval(watch)
  }
  say(
    expected === undefined
      ? `fetch-models: ${model} downloaded (no #sha256 in its source: its content is not verified)`
      : `fetch-models: ${model} downloaded, sha256 verified`,
  )
}

type Manifest = { config?: { digest?: unknown }; layers?: Array<{ digest?: unknown }> }

/**
 * Whether Ollama has the model whole: its manifest, and every blob that names. A damaged
 * manifest or a missing blob (`ollama show` fails on either) does not count: the model is
 * downloaded again, and init-models.sh creates it over the broken one.
 */
async function onVolume(modelsDir: string, model: string): Promise<boolean> {
  const where = `Ollama's model directory ${modelsDir}`
  const fix = 'mount the model volume readable by this container (k8s/components/model-downloads)'
  const path = manifestPath(modelsDir, model)
  if (!(await exists(path, where, fix))) return false
  let manifest: Manifest
  try {
    manifest = JSON.parse(await readFile(path, 'utf8')) as Manifest
  } catch {
    return false
  }
  const digests = [manifest.config, ...(manifest.layers ?? [])].map((part) => part?.digest)
  if (digests.length < 2 || digests.some((digest) => typeof digest !== 'string')) return false
  for (const digest of digests as string[]) {
    if (!(await exists(join(modelsDir, 'blobs', digest.replace(':', '-')), where, fix)))
      return false
  }
  return true
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
    if (await onVolume(settings.modelsDir, model)) {
      say(`fetch-models: ${model} is on the volume`)
      continue
    }
    await mkdir(settings.downloadDir, { recursive: true }).catch((err: Error) => {
      throw new FetchError(
        `model ${model}: cannot create the download directory ${settings.downloadDir} (${err.message}); to fix: mount a writable volume there`,
      )
    })
    // The directory is usable now: a file that cannot be seen there is one to download.
    const target = join(settings.downloadDir, downloadName(model))
    const downloaded = await access(target).then(
      () => true,
      () => false,
    )
    if (downloaded) {
      say(`fetch-models: ${model} is downloaded already`)
      continue
    }
    let url: URL
    try {
      url = new URL(source)
    } catch {
      throw new FetchError(
        `model ${model}: the source "${redactedSource(source)}" is not a URL; to fix: correct its entry in MODEL_SOURCES (confluence-bot-config)`,
      )
    }
    await download(model, url, target, settings.stallWindowMs ?? 60_000, say)
  }
}
