import type { SearchIndex } from '@confluence-bot/index'
import { Counter, collectDefaultMetrics, Histogram, Registry } from 'prom-client'

// The api's Prometheus metrics that belong to the process: its requests, searches and Ollama
// failures are counted where they happen (request hooks, the chunk index, the Ollama client),
// which are not all within reach of one Fastify instance. One registry per process, like the
// process itself; what belongs to an app instance (its queues) is read by plugins/app/metrics.ts
// at scrape time. Names carry the `confluence_bot_` prefix; the process and Node.js ones are
// prom-client's defaults, unprefixed, as dashboards expect them.

export const PREFIX = 'confluence_bot_'

export const processRegistry = new Registry()

// Latency buckets from a cached health probe (about a millisecond) to a streamed answer of a
// few minutes.
const REQUEST_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300]
const SEARCH_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

export const httpRequests = new Counter({
  name: `${PREFIX}http_requests_total`,
  help: 'HTTP requests answered, by method, route pattern and status code',
  labelNames: ['method', 'route', 'status_code'] as const,
  registers: [processRegistry],
})

export const httpDuration = new Histogram({
  name: `${PREFIX}http_request_duration_seconds`,
  help: 'Time from a request arriving to its answer being sent (a stream: to its end), by method and route pattern',
  labelNames: ['method', 'route'] as const,
  buckets: REQUEST_BUCKETS,
  registers: [processRegistry],
})

export const searchDuration = new Histogram({
  name: `${PREFIX}search_duration_seconds`,
  help: 'Time one search of the chunk index takes (the search route, grounded answers, MCP), by the mode that ran; `failed` when it threw',
  labelNames: ['mode'] as const,
  buckets: SEARCH_BUCKETS,
  registers: [processRegistry],
})

/** Why a call to Ollama failed. */
export type OllamaFailure = 'unreachable' | 'error_status' | 'stream_cut'

export const ollamaErrors = new Counter({
  name: `${PREFIX}ollama_errors_total`,
  help: 'Failed calls to Ollama: unreachable (no connection), error_status (an error answer), stream_cut (a stream that ended before its last line)',
  labelNames: ['kind'] as const,
  registers: [processRegistry],
})

/** Counts one failed call to Ollama. */
export function countOllamaError(kind: OllamaFailure): void {
  ollamaErrors.inc({ kind })
}

/** Why the api itself stopped a model call (none of these is Ollama's failure). */
export type AnswerStop = 'answer_max_ms' | 'undelivered'

export const answersStopped = new Counter({
  name: `${PREFIX}answers_stopped_total`,
  help: 'Answers and embeddings the api stopped itself: answer_max_ms (the model ran past ANSWER_MAX_MS; cancelled at Ollama), undelivered (the client had not taken the whole response when ANSWER_MAX_MS and its grace had passed; connection closed)',
  labelNames: ['reason'] as const,
  registers: [processRegistry],
})

/** Counts one model call the api stopped. */
export function countAnswerStopped(reason: AnswerStop): void {
  answersStopped.inc({ reason })
}

/** The index with each search timed into searchDuration. */
export function timedSearches(index: SearchIndex): SearchIndex {
  return {
    async search(request) {
      const end = searchDuration.startTimer()
      try {
        const response = await index.search(request)
        end({ mode: response.mode })
        return response
      } catch (err) {
        end({ mode: 'failed' })
        throw err
      }
    },
    close: () => index.close(),
  }
}

let defaults = false
/** Starts prom-client's process metrics (CPU, memory, event loop, GC) once per process. */
export function collectProcessMetrics(): void {
  if (defaults) return
  defaults = true
  collectDefaultMetrics({ register: processRegistry })
}
