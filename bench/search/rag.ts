import { buildApp } from '@confluence-bot/api'
import { loadApiConfig } from '@confluence-bot/shared'
import { Client } from 'undici'
import { startOllamaStandIn } from '../../tests/helpers/ollama-stand-in.ts'
import { median, percentile } from '../lib/stats.ts'

// What grounding adds to a chat's first token: the api app (buildApp, in this process, over a
// real socket) on the bench's table and Redis, the Ollama stand-in for the chat model and the
// question's embedding (768-d, no added latency). Each question is asked twice, alternately:
// with retrieval (embed the question, hybrid search, excerpts into the prompt) and with
// `rag.enabled:false`; one message each, so there is no follow-up to rewrite. The relevance
// floor is 0: the stand-in's lexical vectors are not the table's synthetic ones, and a
// question whose excerpts all fell below the floor would be answered without the model.

export type RagTimes = { withRag: number[]; without: number[] }

/** Milliseconds to the first answer token of a streamed /api/chat; throws on anything else. */
async function firstToken(client: Client, question: string, rag: boolean): Promise<number> {
  const body = JSON.stringify({
    messages: [{ role: 'user', content: question }],
    stream: true,
    ...(rag ? {} : { rag: { enabled: false } }),
  })
  const started = performance.now()
  const response = await client.request({
    method: 'POST',
    path: '/api/chat',
    headers: { 'content-type': 'application/json' },
    body,
  })
  let elapsed = -1
  let text = ''
  let sources = -1
  for await (const chunk of response.body) {
    if (elapsed >= 0) continue
    text += (chunk as Buffer).toString('utf8')
    for (const line of text.split('\n').slice(0, -1)) {
      const parsed = JSON.parse(line) as {
        sources?: unknown[]
        done?: boolean
        message?: { content?: string }
      }
      if (parsed.sources !== undefined) sources = parsed.sources.length
      if (parsed.done === false && (parsed.message?.content ?? '') !== '') {
        elapsed = performance.now() - started
        break
      }
    }
  }
  if (response.statusCode !== 200 || elapsed < 0) {
    throw new Error(`/api/chat answered ${response.statusCode} without a token: ${text}`)
  }
  if (rag && sources <= 0) throw new Error(`a grounded answer without excerpts: ${text}`)
  return elapsed
}

export async function ragFirstToken(
  lancedbUri: string,
  redisUrl: string,
  questions: readonly string[],
): Promise<RagTimes> {
  const ollama = await startOllamaStandIn({ embedDimension: 768 })
  const app = buildApp({
    config: loadApiConfig({
      OLLAMA_URL: ollama.url,
      LANCEDB_URI: lancedbUri,
      REDIS_URL: redisUrl,
      // The stand-in's query vectors have nothing to do with the bench's synthetic ones: their
      // similarities may be negative, and every excerpt must reach the model here.
      RAG_MIN_SIMILARITY: '-1',
      LOG_LEVEL: 'warn',
    }),
  })
  const url = await app.listen({ host: '127.0.0.1', port: 0 })
  const client = new Client(url, { pipelining: 1 })
  try {
    for (const q of questions.slice(0, 5)) {
      await firstToken(client, q, true)
      await firstToken(client, q, false)
    }
    const times: RagTimes = { withRag: [], without: [] }
    for (const q of questions) {
      times.withRag.push(await firstToken(client, q, true))
      times.without.push(await firstToken(client, q, false))
    }
    return times
  } finally {
    await client.close()
    await app.close()
    await ollama.close()
  }
}

export function ragFigures(times: RagTimes): Record<string, number> {
  return {
    rag_first_token_ms_p50: median(times.withRag),
    rag_first_token_ms_p95: percentile(times.withRag, 95),
    plain_first_token_ms_p50: median(times.without),
    plain_first_token_ms_p95: percentile(times.without, 95),
    rag_first_token_added_ms_p50: median(times.withRag) - median(times.without),
    rag_first_token_added_ms_p95: percentile(times.withRag, 95) - percentile(times.without, 95),
  }
}
