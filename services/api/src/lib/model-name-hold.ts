import { randomBytes } from 'node:crypto'
import { ollamaModelName } from '@confluence-bot/shared'
import type { Redis } from 'ioredis'

// A model import's hold on its model name, in Redis: POST /api/models/import (on every api
// replica) and `cnfl models import` take it for the whole import, so two imports of one name
// cannot overlap. It is renewed while the import runs; an importer that died lets it lapse after
// its time to live.

/** Redis key of a model name's hold (the name as Ollama reads it: `llama3.2:latest`). */
const HOLD_PREFIX = 'cnfl:model-import:'
/** Extends a hold, or removes it, only while it is still this import's. */
const RENEW_HOLD = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0`
const DROP_HOLD = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0`

export type NameHold =
  /** Taken: let go of it once the import has ended (any number of calls). */
  | { release: () => Promise<void> }
  /** Another import holds the name; its hold lapses within `leftMs` if that import is gone. */
  | { leftMs: number }

/**
 * Takes the hold on `name` for `ttlMs`, renewed every third of it until released. A Redis that
 * refuses the write (out of memory, unreachable) rejects with its error.
 */
export async function holdModelName(redis: Redis, name: string, ttlMs: number): Promise<NameHold> {
  const key = HOLD_PREFIX + ollamaModelName(name)
  const token = randomBytes(16).toString('hex')
  if ((await redis.set(key, token, 'PX', ttlMs, 'NX')) === null) {
    return { leftMs: Math.max(0, await redis.pttl(key)) }
  }
  // A renewal Redis refuses is not worth failing the import for; at worst the hold lapses and
  // another import of the name could start.
  const renewal = setInterval(
    () => {
      void Promise.allSettled([redis.eval(RENEW_HOLD, 1, key, token, ttlMs)])
    },
    Math.floor(ttlMs / 3),
  )
  renewal.unref()
  let dropped: Promise<unknown> | undefined
  return {
    release: async () => {
      clearInterval(renewal)
      dropped ??= Promise.allSettled([redis.eval(DROP_HOLD, 1, key, token)])
      await dropped
    },
  }
}
