import type { Redis } from 'ioredis'
import {
  emptyProgress,
  MAX_RUN_ERRORS,
  QUEUE_PREFIX,
  RUN_TTL_S,
  runKeys,
  type SyncProgress,
  type SyncResult,
} from './index.ts'

// A sync's counters and per-page errors live in Redis, not in one process: the page batches
// that feed them run on any worker. Each batch adds its figures exactly once (a retried batch
// finds itself in the `counted` set), so counters stay true under retries and crashes. Pages
// given vectors count once per run however many writes they took (a page whose chunks span two
// batches of the vector fill, or a page batch and the fill): they join the same set as
// `embedded:<page id>`, a member no batch id can be (job ids never hold `:`), so a new run's
// reset of the set resets them too.

type Counter = keyof SyncProgress
const COUNTERS: readonly Counter[] = Object.keys(emptyProgress()) as Counter[]

/** Job id of the sync that holds a source (one sync of a source at a time); expires on its own. */
export const syncLockKey = (sourceId: string) => `${QUEUE_PREFIX}:sync-lock:${sourceId}`

/**
 * The embedding model every sync uses: the EMBED_MODEL of the worker that started last. During a
 * rolling update, workers of the old and the new model run side by side; each would switch the
 * table to its own model at each crawl it runs. The newest worker's choice holds for all of them
 * (a rollback starts workers of the old model, which then hold).
 */
export const embedModelKey = `${QUEUE_PREFIX}:embed-model`

/** The model every sync uses now: the newest worker's, else (none recorded) `configured`. */
export async function wantedEmbedModel(
  redis: Pick<Redis, 'get'>,
  configured: string,
): Promise<string> {
  return (await redis.get(embedModelKey)) ?? configured
}

// KEYS: counters, counted, errors. ARGV: batch id, ttl, max errors, errors JSON, embedded page
// ids JSON, then counter/amount pairs. Returns 0 when the batch was already counted.
const ADD_ONCE = `
if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then return 0 end
for i = 6, #ARGV, 2 do redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1]) end
local embedded = 0
for _, id in ipairs(cjson.decode(ARGV[5])) do
  embedded = embedded + redis.call('SADD', KEYS[2], 'embedded:' .. id)
end
if embedded > 0 then redis.call('HINCRBY', KEYS[1], 'embedded', embedded) end
local errors = cjson.decode(ARGV[4])
for _, e in ipairs(errors) do redis.call('RPUSH', KEYS[3], e) end
redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[3]) - 1)
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[2]) end
return 1
`

export type PageError = { page_id?: string; message: string }

/**
 * Adds a batch's figures to its run, once per batch id. `embeddedPages`: pages that got vectors;
 * each adds 1 to `embedded` the first time the run sees it.
 */
export async function addToRun(
  redis: Redis,
  runId: string,
  batchId: string,
  counts: Partial<SyncProgress>,
  errors: readonly PageError[] = [],
  embeddedPages: readonly string[] = [],
): Promise<boolean> {
  const keys = runKeys(runId)
  const pairs = Object.entries(counts).flatMap(([k, v]) => [k, String(v)])
  const added = await redis.eval(
    ADD_ONCE,
    3,
    keys.counters,
    keys.counted,
    keys.errors,
    batchId,
    String(RUN_TTL_S),
    String(MAX_RUN_ERRORS),
    JSON.stringify(errors.map((e) => JSON.stringify(e))),
    JSON.stringify(embeddedPages),
    ...pairs,
  )
  return added === 1
}

export async function readRun(redis: Redis, runId: string): Promise<SyncResult> {
  const keys = runKeys(runId)
  const [counters, errors] = await Promise.all([
    redis.hgetall(keys.counters),
    redis.lrange(keys.errors, 0, -1),
  ])
  const progress = emptyProgress()
  for (const name of COUNTERS) progress[name] = Number(counters[name] ?? 0)
  return { progress, errors: errors.map((e) => JSON.parse(e) as PageError) }
}
