import { ollamaTarget, scrub } from '@confluence-bot/shared'
import { Ollama } from 'ollama'
import type { QueryEmbedder } from './search.ts'

// A query's vector from Ollama, with the same client and the same OLLAMA_URL handling as the
// worker's embedder (user info as Basic auth, the query string kept on every request). "No
// answer" (Ollama down or too slow) is null, and the search runs on keywords saying why; a model
// Ollama does not have (404) and any other failure throw with OLLAMA_URL's credential hidden,
// and the search reports that as its reason the same way (so an operator reads "not pulled",
// not "cannot be reached", when the fix is `ollama pull`).

export type OllamaQueryEmbedderOptions = {
  /** OLLAMA_URL */
  url: string
  /** A query waits this long for its vector before the search goes on without it (default 10 s). */
  timeoutMs?: number
}

export const DEFAULT_QUERY_EMBED_TIMEOUT_MS = 10_000

export function ollamaQueryEmbedder(options: OllamaQueryEmbedderOptions): QueryEmbedder {
  const target = ollamaTarget(options.url)
  const timeoutMs = options.timeoutMs ?? DEFAULT_QUERY_EMBED_TIMEOUT_MS
  const client = new Ollama({
    host: `${target.origin}${target.basePath}`,
    headers: target.headers,
    // The client builds `${host}/api/embed` with no query of its own; the deadline covers the
    // whole call (a model that is still loading counts as not there).
    fetch: (input, init) =>
      fetch(`${input}${target.query}`, { ...init, signal: AbortSignal.timeout(timeoutMs) }),
  })
  return async (text, model) => {
    let embeddings: number[][]
    try {
      ;({ embeddings } = await client.embed({ model, input: text, truncate: true }))
    } catch (err) {
      const status = (err as { status_code?: number }).status_code
      // No HTTP status: connection refused or reset, DNS, the deadline.
      if (status === undefined) return null
      if (status === 404) {
        throw new Error(`${model} is not pulled on the Ollama server (ollama pull ${model})`)
      }
      throw new Error(
        `Ollama's embed call failed (model ${model}): ${scrub(target, (err as Error).message)}`,
      )
    }
    const vector = embeddings[0]
    if (vector === undefined || vector.length === 0) {
      throw new Error(`Ollama returned no vector for the query (model ${model})`)
    }
    return Float32Array.from(vector)
  }
}
