import { type OllamaTarget, ollamaTarget, scrub } from '@confluence-bot/shared'
import { Ollama } from 'ollama'
import { embedDuration, embedFailures } from '../metrics.ts'

// Embeddings through the official `ollama` client: texts go out in batches (one /api/embed
// call per batch, `input` as an array), one batch at a time because Ollama runs one embedding
// model request at a time anyway. "The model is not there" (Ollama down, or the model not
// pulled) is a state, not an error: the caller stores the chunks without vectors and fills them
// in on a later sync. Anything else (a 500, a wrong vector length) throws, so the job retries.

export type EmbedderOptions = { url: string; model: string; batchSize: number }

export class EmbeddingError extends Error {
  override name = 'EmbeddingError'
}

export type Embedder = {
  /** The configured model (EMBED_MODEL). */
  readonly model: string
  /**
   * Vectors for `texts` from `model`, in order, as float32 (what the index stores); null when
   * the model cannot be reached right now. The model is the caller's: a vector is stored under
   * the name of the model that made it, which is the one its sync chose, not necessarily this
   * worker's (a sync crawled before a worker restarted with another EMBED_MODEL).
   */
  embed(texts: readonly string[], model: string): Promise<Float32Array[] | null>
  /** A model's vector length (the configured one's by default), found with one embed call; null when unreachable. */
  dimension(model?: string): Promise<number | null>
  /** Embed calls made so far (one per batch). */
  readonly calls: number
}

function unreachable(err: unknown): boolean {
  const status = (err as { status_code?: number }).status_code
  if (status === 404) return true // "model not found, try pulling it first"
  if (status !== undefined) return false
  // fetch() failures: connection refused, reset, DNS.
  return err instanceof TypeError || (err as { code?: string }).code === 'ECONNREFUSED'
}

/**
 * The client for OLLAMA_URL. Its user info (`http://user:pass@host`, the worker's credential for
 * an Ollama behind a proxy) goes out as `Authorization: Basic` and its query (`?token=…`) on
 * every request: the ollama client would leave the query out, and fetch() refuses a URL with
 * credentials in it.
 */
function ollamaClient({ origin, basePath, query, headers }: OllamaTarget): Ollama {
  return new Ollama({
    host: `${origin}${basePath}`,
    headers,
    // The client builds `${host}/api/<endpoint>`, a string with no query of its own.
    fetch: (input, init) => fetch(`${input}${query}`, init),
  })
}

export function createEmbedder(options: EmbedderOptions): Embedder {
  const target = ollamaTarget(options.url)
  const client = ollamaClient(target)
  let calls = 0
  /** Each model's vector length, from its first answer. */
  const dims = new Map<string, number>()

  // Each reply is copied into float32 at once: the parsed number arrays (8 bytes a value, on the
  // JS heap) die young instead of living through every call of a page batch.
  async function call(input: string[], model: string): Promise<Float32Array[] | null> {
    calls++
    const end = embedDuration.startTimer()
    return embedOnce(input, model).finally(() => end())
  }

  async function embedOnce(input: string[], model: string): Promise<Float32Array[] | null> {
    try {
      const { embeddings } = await client.embed({ model, input, truncate: true })
      if (embeddings.length !== input.length) {
        throw new EmbeddingError(
          `Ollama returned ${embeddings.length} vectors for ${input.length} texts (model ${model})`,
        )
      }
      for (const vector of embeddings) {
        const known = dims.get(model) ?? vector.length
        dims.set(model, known)
        if (vector.length !== known || vector.length === 0) {
          throw new EmbeddingError(
            `Ollama returned a vector of length ${vector.length} from ${model}; expected ${known}`,
          )
        }
      }
      const dim = dims.get(model) as number
      const values = new Float32Array(embeddings.length * dim)
      return embeddings.map((vector, i) => {
        values.set(vector, i * dim)
        return values.subarray(i * dim, (i + 1) * dim)
      })
    } catch (err) {
      const down = unreachable(err)
      embedFailures.inc({ kind: down ? 'unreachable' : 'error' })
      if (down) return null
      if (err instanceof EmbeddingError) throw err
      // Ollama's (or a proxy's) text may quote the request: OLLAMA_URL's credential is hidden.
      throw new EmbeddingError(
        `Ollama's embed call failed (model ${model}): ${scrub(target, (err as Error).message)}`,
      )
    }
  }

  return {
    model: options.model,
    get calls() {
      return calls
    },
    async embed(texts, model) {
      const out: Float32Array[] = []
      for (let i = 0; i < texts.length; i += options.batchSize) {
        const vectors = await call(texts.slice(i, i + options.batchSize), model)
        if (vectors === null) return null
        out.push(...vectors)
      }
      return out
    },
    async dimension(model = options.model) {
      const known = dims.get(model)
      if (known !== undefined) return known
      const vectors = await call(['dimension probe'], model)
      return vectors === null ? null : (vectors[0] as Float32Array).length
    },
  }
}
