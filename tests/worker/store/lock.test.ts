import { once } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import t from 'tap'
import { LockLostError, withLock } from '../../../services/worker/src/lib/lock.ts'
import { startRedis } from '../../helpers/redis.ts'

const server = await startRedis()
t.teardown(() => server.stop())

let keys = 0
const newKey = () => `test:lock:${++keys}`

async function connection(t: { teardown(fn: () => unknown): void }) {
  const redis = new Redis(server.url)
  t.teardown(() => redis.quit().catch(() => {}))
  return redis
}

/** Runs `fn` as `count` concurrent holders and reports the most that were ever inside at once. */
async function contend(redisFor: (i: number) => Redis, key: string, count: number) {
  let inside = 0
  let most = 0
  const order: number[] = []
  await Promise.all(
    Array.from({ length: count }, (_, i) =>
      withLock(
        redisFor(i),
        key,
        async () => {
          inside++
          most = Math.max(most, inside)
          await sleep(5)
          order.push(i)
          inside--
        },
        { retryMinMs: 1, retryMaxMs: 20 },
      ),
    ),
  )
  return { most, order }
}

/**
 * Holds `key` while `takeAway` makes the lock lapse, until the holder's signal says it is lost;
 * returns the signal's reason.
 */
async function holdUntilLost(
  redis: Redis,
  key: string,
  ttlMs: number,
  takeAway: () => Promise<unknown>,
): Promise<unknown> {
  let lostWith: unknown
  await withLock(
    redis,
    key,
    async (signal) => {
      const taking = takeAway()
      await once(signal, 'abort')
      lostWith = signal.reason
      await taking
    },
    { ttlMs },
  )
  return lostWith
}

t.test('holders in one process run one at a time', async (t) => {
  const redis = await connection(t)
  const key = newKey()
  const { most, order } = await contend(() => redis, key, 12)
  t.equal(most, 1)
  t.same(
    [...order].sort((a, b) => a - b),
    [...Array(12).keys()],
    'every holder ran once',
  )
  t.equal(await redis.exists(key), 0, 'the last holder released the lock')
})

t.test('holders on two connections run one at a time', async (t) => {
  const a = await connection(t)
  const b = await connection(t)
  const { most, order } = await contend((i) => (i % 2 === 0 ? a : b), newKey(), 12)
  t.equal(most, 1)
  t.equal(order.length, 12)
})

t.test('a holder that renews keeps the lock past its TTL', async (t) => {
  const redis = await connection(t)
  const other = await connection(t)
  const key = newKey()
  let outsiderGotIn = false
  let outsider: Promise<void> | undefined
  await withLock(
    redis,
    key,
    async (signal) => {
      // Three TTLs: without renewal the key would be gone and the outsider would get in.
      outsider = withLock(other, key, async () => {
        outsiderGotIn = true
      })
      await sleep(300)
      t.equal(outsiderGotIn, false)
      t.equal(signal.aborted, false)
      t.ok((await redis.pttl(key)) > 0)
    },
    { ttlMs: 100 },
  )
  await outsider
  t.equal(outsiderGotIn, true, 'the outsider got the lock after the release')
})

t.test('the lock of a holder that died lapses after its TTL', async (t) => {
  const dying = new Redis(server.url)
  const other = await connection(t)
  const key = newKey()
  let lostWith: unknown
  const holder = withLock(
    dying,
    key,
    async (signal) => {
      // The process "dies": its connection is gone, renewals fail, the key expires on its own.
      dying.disconnect()
      await once(signal, 'abort')
      lostWith = signal.reason
      return 'finished'
    },
    { ttlMs: 150 },
  )
  await sleep(20)
  const next = await withLock(other, key, async () => 'next holder', { retryMaxMs: 20 })
  t.equal(next, 'next holder')
  t.equal(await holder, 'finished', 'a release that cannot reach Redis does not fail the holder')
  t.type(lostWith, LockLostError)
  t.match((lostWith as Error).message, /not renewed within its TTL/)
})

t.test(
  'only the owner releases: a holder that lost the lock leaves the new owner alone',
  async (t) => {
    const redis = await connection(t)
    const key = newKey()
    // As if the TTL had lapsed and another process had taken the lock.
    const lostWith = await holdUntilLost(redis, key, 90, () => redis.set(key, 'someone-else'))
    t.type(lostWith, LockLostError)
    t.match((lostWith as Error).message, /another holder has it/)
    t.equal(await redis.get(key), 'someone-else', 'the new owner still holds the lock')
  },
)

t.test('a renewal that hangs longer than the TTL counts as lost', async (t) => {
  const redis = await connection(t)
  const busy = await connection(t)
  // Redis runs one script at a time: a script longer than the TTL stalls the renewal.
  const lostWith = await holdUntilLost(redis, newKey(), 150, () =>
    busy.eval(
      `local t = redis.call('TIME')
       local start = t[1] * 1000000 + t[2]
       repeat local n = redis.call('TIME') until n[1] * 1000000 + n[2] - start > 600000
       return 1`,
      0,
    ),
  )
  t.type(lostWith, LockLostError)
  t.match((lostWith as Error).message, /not renewed within its TTL/)
})

t.test('an error in the holder releases the lock and reaches the caller', async (t) => {
  const redis = await connection(t)
  const key = newKey()
  await t.rejects(
    withLock(redis, key, async () => {
      throw new Error('boom')
    }),
    /boom/,
  )
  t.equal(await redis.exists(key), 0)
  t.equal(await withLock(redis, key, async () => 'again'), 'again')
})

t.test('a waiting caller stops when its signal aborts', async (t) => {
  const redis = await connection(t)
  const key = newKey()
  await redis.set(key, 'held', 'PX', 10_000)
  const controller = new AbortController()
  let ran = false
  const waiting = withLock(
    redis,
    key,
    async () => {
      ran = true
    },
    { signal: controller.signal },
  )
  await sleep(30)
  controller.abort(new Error('shutting down'))
  await t.rejects(waiting, /shutting down/)

  await t.rejects(
    withLock(redis, newKey(), async () => {}, { signal: AbortSignal.abort(new Error('already')) }),
    /already/,
  )
  t.equal(ran, false)
  t.equal(await redis.get(key), 'held')
})

t.test("the holder's signal also follows the caller's signal", async (t) => {
  const redis = await connection(t)
  const controller = new AbortController()
  const reason = await withLock(
    redis,
    newKey(),
    async (signal) => {
      controller.abort(new Error('stop'))
      return signal.reason
    },
    { signal: controller.signal },
  )
  t.match(reason, /stop/)
})

t.test('a waiter stops waiting the moment its signal aborts', async (t) => {
  const redis = await connection(t)
  const key = newKey()
  // Another process holds the lock for longer than the waiter will wait.
  await redis.set(key, 'someone-else', 'PX', 10_000)
  const controller = new AbortController()
  const waiting = withLock(redis, key, async () => 'never', {
    signal: controller.signal,
    retryMinMs: 1_000,
    retryMaxMs: 1_000,
  })
  await sleep(50)
  controller.abort(new Error('no longer wanted'))
  await t.rejects(waiting, { message: 'no longer wanted' })
  t.equal(await redis.get(key), 'someone-else', "the holder's lock is untouched")
})
