import type { Redis } from 'ioredis'
import { type EmbedPrefixSettings, embedPrefixes } from '../config/embed-prefixes.ts'
import { sameEmbedModel } from '../index-schema/index.ts'
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
 * How a table's vectors are made, and what a query must be given to match them: the embedding
 * model and the two task prefixes (EmbedPrefixes, as the table's metadata records them).
 */
export type EmbedSetup = { model: string; documentPrefix: string; queryPrefix: string }

/** A process's own setup: EMBED_MODEL and its prefixes (embedPrefixes). */
export function configuredEmbedSetup(config: EmbedPrefixSettings): EmbedSetup {
  const { document, query } = embedPrefixes(config)
  return { model: config.EMBED_MODEL, documentPrefix: document, queryPrefix: query }
}

/** Same model (as Ollama reads names) and the same prefixes. */
export const sameEmbedSetup = (a: EmbedSetup, b: EmbedSetup): boolean =>
  sameEmbedModel(a.model, b.model) &&
  a.documentPrefix === b.documentPrefix &&
  a.queryPrefix === b.queryPrefix

/**
 * The embedding setup of every live worker: member `<worker>\n<model>\n<[document, query]
 * prefixes as JSON>`, scored with the time (ms) its claim lapses. A worker claims at start,
 * renews while it runs and withdraws as it stops; a worker that died lapses on its own. A
 * member without the prefixes (`<worker>\n<model>`) is a worker from before prefixes existed:
 * it embeds with none.
 */
export const embedModelsKey = `${QUEUE_PREFIX}:embed-models`

/** How long a worker's claim holds without renewal (it renews three times as often). */
export const EMBED_CLAIM_MS = 60_000

// JSON keeps a prefix's newlines (or anything else in it) from breaking the member apart.
const claimMember = (worker: string, setup: EmbedSetup) =>
  `${worker}\n${setup.model}\n${JSON.stringify([setup.documentPrefix, setup.queryPrefix])}`

function claimedSetup(member: string): EmbedSetup {
  const [, model, prefixes = '["",""]'] = member.split('\n') as [string, string, string?]
  const [documentPrefix, queryPrefix] = JSON.parse(prefixes) as [string, string]
  return { model, documentPrefix, queryPrefix }
}

export async function claimEmbedModel(
  redis: Redis,
  worker: string,
  setup: EmbedSetup,
  now = Date.now(),
): Promise<void> {
  await redis
    .multi()
    .zremrangebyscore(embedModelsKey, '-inf', now)
    .zadd(embedModelsKey, now + EMBED_CLAIM_MS, claimMember(worker, setup))
    .exec()
}

export async function withdrawEmbedModel(redis: Redis, worker: string, setup: EmbedSetup) {
  await redis.zrem(embedModelsKey, claimMember(worker, setup))
}

/**
 * The embedding setup syncs use now. The table's setup (model and both prefixes) holds while any
 * live worker is configured with it: during a rolling update the new workers embed as the old
 * ones do, and the table switches once, when the last old worker has gone; a rollback, an
 * aborted rollout or an old worker restarting mid-way switch nothing. This matters as much for
 * a new document prefix as for a new model: an old worker still writing vectors without the
 * new prefix would mix two kinds of vectors under one model. A table without a model (or whose
 * setup no live worker names) takes `configured`, the calling worker's own.
 */
export async function embeddingInForce(
  redis: Redis,
  recorded: EmbedSetup | null,
  configured: EmbedSetup,
  now = Date.now(),
): Promise<EmbedSetup> {
  if (recorded === null) return configured
  const live = await redis.zrangebyscore(embedModelsKey, `(${now}`, '+inf')
  const held = live.some((member) => sameEmbedSetup(claimedSetup(member), recorded))
  return held ? recorded : configured
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
