import { createRequire } from 'node:module'

// autocannon 9 ships no types: this is the typed slice of its programmatic API the benchmarks
// use. Latencies are in ms with 1 ms resolution (integer hdr-histogram buckets).

export type AutocannonOptions = {
  url: string
  connections: number
  /** Seconds. */
  duration: number
  method?: string
  headers?: Record<string, string>
  body?: string
  pipelining?: number
  /** Seconds without a response before a request counts as a timeout. */
  timeout?: number
}

export type Histogram = {
  average: number
  mean: number
  stddev: number
  min: number
  max: number
  p50: number
  p90: number
  p99: number
  p99_9: number
}

export type AutocannonResult = {
  /** Seconds. */
  duration: number
  errors: number
  timeouts: number
  non2xx: number
  resets: number
  mismatches: number
  '2xx': number
  latency: Histogram
  requests: Histogram & { total: number; sent: number }
  throughput: Histogram
}

const require = createRequire(import.meta.url)
const autocannon = require('autocannon') as (
  options: AutocannonOptions,
) => Promise<AutocannonResult>

export function loadTest(options: AutocannonOptions): Promise<AutocannonResult> {
  return autocannon(options)
}
