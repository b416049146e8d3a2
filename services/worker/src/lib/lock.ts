import { randomUUID } from 'node:crypto'
import type { Redis } from 'ioredis'

// A Redis mutex for work that must not run twice at once across processes (the LanceDB chunk
// table has one writer at a time: its commits are optimistic, and concurrent writers retry or
// fail). SET NX PX takes the lock, the holder renews it while it runs, and only the holder's
// token can extend or release it, so a holder that lost the lock (paused past its TTL) never
// releases its successor's.

// KEYS[1] = lock key, ARGV[1] = token, ARGV[2] = ttl in ms.
const RENEW = `if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0`

const RELEASE = `if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0`

export type LockOptions = {
  /** How long the lock outlives a holder that stops renewing it (a dead process). */
  ttlMs?: number
  /** Stops waiting for the lock (rejects with the signal's reason); also passed on to fn. */
  signal?: AbortSignal
  /** First and largest pause between attempts while another holder has the lock. */
  retryMinMs?: number
  retryMaxMs?: number
}

export class LockLostError extends Error {
  override name = 'LockLostError'
}

export const DEFAULT_LOCK_TTL_MS = 30_000

/** Waits for `ms`, or rejects with the signal's reason when it aborts first. */
function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer)
      reject(signal.reason)
    }
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    signal.addEventListener('abort', onAbort, { once: true })
  })
}

/**
 * Runs `fn` while holding the lock `key`, waiting (polling with a jittered backoff) while someone
 * else holds it. `fn` gets a signal that aborts when the lock is lost — renewal found another
 * token, or could not confirm the lock for a whole TTL — or when `options.signal` aborts, so a
 * multi-step holder can stop between steps. The lock is released when `fn` settles.
 */
export async function withLock<T>(
  redis: Redis,
  key: string,
  fn: (signal: AbortSignal) => Promise<T>,
  options: LockOptions = {},
): Promise<T> {
  const ttlMs = options.ttlMs ?? DEFAULT_LOCK_TTL_MS
  const retryMaxMs = options.retryMaxMs ?? 250
  // A signal that never aborts stands in for a missing one, so no path has to ask.
  const signal = options.signal ?? new AbortController().signal
  const token = randomUUID()

  let retryMs = options.retryMinMs ?? 10
  for (;;) {
    signal.throwIfAborted()
    if ((await redis.set(key, token, 'PX', ttlMs, 'NX')) === 'OK') break
    await pause(retryMs * (0.5 + Math.random() / 2), signal)
    retryMs = Math.min(retryMs * 2, retryMaxMs)
  }

  const lost = new AbortController()
  let stopped = false
  let renewTimer: NodeJS.Timeout | undefined
  const stop = () => {
    stopped = true
    clearTimeout(renewTimer)
    clearTimeout(deadline)
  }
  const loseLock = (why: string) => {
    stop()
    lost.abort(new LockLostError(`lock ${key} was lost: ${why}`))
  }
  // The lock is ours until the last confirmed renewal plus the TTL: a renewal that hangs or
  // fails for that long means Redis may already have handed it to someone else.
  const lapse = () => setTimeout(() => loseLock('not renewed within its TTL'), ttlMs)
  let deadline = lapse()
  const renew = async () => {
    // null: Redis did not answer; the next tick tries again and the deadline decides.
    const renewed = await redis.eval(RENEW, 1, key, token, ttlMs).catch(() => null)
    if (stopped) return
    if (renewed === 0) return loseLock('another holder has it')
    if (renewed === 1) {
      clearTimeout(deadline)
      deadline = lapse()
    }
    renewTimer = setTimeout(renew, ttlMs / 3)
  }
  renewTimer = setTimeout(renew, ttlMs / 3)

  try {
    return await fn(AbortSignal.any([signal, lost.signal]))
  } finally {
    stop()
    // A failed release is harmless: the key lapses after ttlMs.
    await redis.eval(RELEASE, 1, key, token).catch(() => {})
  }
}
