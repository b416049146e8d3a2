// The environment a worker process is started with, set where the process starts: the image
// (Dockerfile), `pnpm start` (scripts/start.ts), the tests and the ingest bench. Measured with
// `pnpm bench ingest` (5,000 pages) on the 2-core machine this is built on:
// - NODE_OPTIONS=--max-semi-space-size=8 caps V8's young generation at 2 × 8 MB. Left alone it
//   grows to 2 × 32 MB and keeps as many freed pages pooled; the converter's short-lived DOM
//   trees survive those big scavenges all the same, so the size bought no speed. Peak RSS
//   during a full sync fell from 610–880 MB to about 500 MB, for about 1 ms more CPU a page.
// - MALLOC_ARENA_MAX=2: glibc otherwise gives each of LanceDB's threads its own malloc arena and
//   keeps their freed memory; two arenas took the peak to about 465 MB.
// Both are plain environment variables: a deployment that sets its own wins (its NODE_OPTIONS
// come after these flags, and a later V8 flag overrides an earlier one).

export const WORKER_NODE_OPTIONS = '--max-semi-space-size=8'
export const WORKER_MALLOC_ARENA_MAX = '2'

/** `env` with the worker's process settings added (what is already set in `env` wins). */
export function workerProcessEnv<T extends Record<string, string | undefined>>(
  env: T,
): T & { NODE_OPTIONS: string; MALLOC_ARENA_MAX: string } {
  const own = env.NODE_OPTIONS?.trim()
  return {
    ...env,
    NODE_OPTIONS: own ? `${WORKER_NODE_OPTIONS} ${own}` : WORKER_NODE_OPTIONS,
    MALLOC_ARENA_MAX: env.MALLOC_ARENA_MAX || WORKER_MALLOC_ARENA_MAX,
  }
}
