import type { Redis } from 'ioredis'

// Requests to one Confluence source are spaced across every worker process: Redis keeps the next
// free slot on its own clock (TIME), so processes on different machines agree on "now". A 429's
// Retry-After moves that slot for everyone, pausing the whole source rather than one request.

export const RATE_LIMIT_PREFIX = 'cnfl:ratelimit:'

/** Idle keys expire this long after their last reserved slot. */
const IDLE_TTL_MS = 60_000

export type Limiter = {
  /** Waits for this process's turn; resolves when the request may be sent. */
  acquire(signal?: AbortSignal): Promise<void>
  /** No request to the source starts before now + ms (for every process sharing the key). */
  pauseFor(ms: number): Promise<void>
}

// KEYS[1]: next free slot, µs on the Redis clock. ARGV[1]: slot spacing (µs); ARGV[2]: pause (µs),
// 0 to reserve a slot instead; ARGV[3]: idle TTL (ms). Returns the µs to wait for the slot.
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
export function createLimiter(redis: Redis, key: string, rps: number): Limiter {
  if (!(rps > 0)) throw new RangeError(`requests per second must be > 0, got ${rps}`)
  const redisKey = `${RATE_LIMIT_PREFIX}${key}`
  const spacingUs = String(Math.round(1_000_000 / rps))
  const ttl = String(IDLE_TTL_MS)
  return {
    async acquire(signal) {
      signal?.throwIfAborted()
      const waitUs = Number(await redis.eval(SCRIPT, 1, redisKey, spacingUs, '0', ttl))
      // setTimeout may fire up to a millisecond early against other clocks: round up, plus one.
      if (waitUs > 0) await sleep(Math.ceil(waitUs / 1000) + 1, signal)
    },
    async pauseFor(ms) {
      if (!(ms > 0)) return
      await redis.eval(SCRIPT, 1, redisKey, spacingUs, String(Math.ceil(ms * 1000)), ttl)
    },
  }
}
