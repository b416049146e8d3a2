import type { Redis } from 'ioredis'
import { ConfluenceError } from './errors.ts'

// Requests to one Confluence source are spaced across every worker process: Redis keeps the next
// free slot on its own clock (TIME), so processes on different machines agree on "now". A 429's
// Retry-After moves that slot for everyone, pausing the whole source rather than one request.
//
// Waiting is bounded: a job that waits holds one of its queue's concurrency slots and keeps the
// worker's shutdown from draining it, so no pause is kept longer than maxWaitMs, and a request
// whose slot is further off than that (requests queued at a very low rate, or a pause written by
// an older worker) fails with a retryable error instead of sleeping: the job retries later.

export const RATE_LIMIT_PREFIX = 'cnfl:ratelimit:'

/** Idle keys expire this long after their last reserved slot. */
const IDLE_TTL_MS = 60_000

/** Default longest wait for a slot, and longest pause kept (far below setTimeout's 2^31 ms). */
export const MAX_WAIT_MS = 5 * 60_000

export type Limiter = {
  /**
   * Waits for this process's turn; resolves when the request may be sent. Rejects at once, with
   * a retryable ConfluenceError and no slot taken, when that turn is more than maxWaitMs away.
   */
  acquire(signal?: AbortSignal): Promise<void>
  /** No request to the source starts before now + ms, at most maxWaitMs (every process). */
  pauseFor(ms: number): Promise<void>
}

// KEYS[1]: next free slot, µs on the Redis clock. ARGV[1]: slot spacing (µs); ARGV[2]: pause (µs),
// 0 to reserve a slot instead; ARGV[3]: idle TTL (ms); ARGV[4]: longest wait for a slot (µs).
// Returns the µs to wait for the slot, or minus that wait when it is too long (nothing reserved).
const SCRIPT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local nextSlot = tonumber(redis.call('GET', KEYS[1]) or '0')
local pause = tonumber(ARGV[2])
local wait = 0
if pause > 0 then
  nextSlot = math.max(nextSlot, now + pause)
else
  local slot = math.max(nextSlot, now)
  if slot - now > tonumber(ARGV[4]) then return now - slot end
  nextSlot = slot + tonumber(ARGV[1])
  wait = slot - now
end
local ttl = math.ceil((nextSlot - now) / 1000) + tonumber(ARGV[3])
redis.call('SET', KEYS[1], string.format('%.0f', nextSlot), 'PX', ttl)
return wait
`

/** Resolves after ms, or rejects with the signal's reason as soon as it aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason)
      return
    }
    const onAbort = () => {
      clearTimeout(timer)
      reject(signal?.reason)
    }
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}

/** `key` names the source (its id); the Redis key is `cnfl:ratelimit:<key>`. */
export function createLimiter(
  redis: Redis,
  key: string,
  rps: number,
  { maxWaitMs = MAX_WAIT_MS }: { maxWaitMs?: number } = {},
): Limiter {
  if (!(rps > 0)) throw new RangeError(`requests per second must be > 0, got ${rps}`)
  const redisKey = `${RATE_LIMIT_PREFIX}${key}`
  const spacingUs = String(Math.round(1_000_000 / rps))
  const ttl = String(IDLE_TTL_MS)
  const maxWaitUs = String(Math.round(maxWaitMs * 1000))
  return {
    async acquire(signal) {
      signal?.throwIfAborted()
      const waitUs = Number(await redis.eval(SCRIPT, 1, redisKey, spacingUs, '0', ttl, maxWaitUs))
      if (waitUs < 0) {
        throw new ConfluenceError(
          'rate_limited',
          `Requests to source ${key} are held back for another ${Math.ceil(-waitUs / 1e6)} s ` +
            `(a Retry-After pause, or requests queued at its rate limit), more than the ` +
            `${Math.ceil(maxWaitMs / 1000)} s a request waits: this attempt fails and the job is retried later`,
        )
      }
      // setTimeout may fire up to a millisecond early against other clocks: round up, plus one.
      if (waitUs > 0) await sleep(Math.ceil(waitUs / 1000) + 1, signal)
    },
    async pauseFor(ms) {
      if (!(ms > 0)) return
      const pauseUs = String(Math.ceil(Math.min(ms, maxWaitMs) * 1000))
      await redis.eval(SCRIPT, 1, redisKey, spacingUs, pauseUs, ttl, maxWaitUs)
    },
  }
}
