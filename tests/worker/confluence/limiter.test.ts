import { Redis } from 'ioredis'
import t, { type Test } from 'tap'
import {
  createLimiter,
  RATE_LIMIT_PREFIX,
  sleep,
} from '../../../services/worker/src/confluence/limiter.ts'
import { startRedis } from '../../helpers/redis.ts'

// Lower bounds only: a slow machine may space requests further apart, never closer.

async function setup(t: Test) {
  const server = await startRedis()
  t.teardown(() => server.stop())
  const redis = new Redis(server.url)
  t.teardown(() => redis.quit())
  return redis
}

t.test('two limiters on one key share the rate', async (t) => {
  const redis = await setup(t)
  const a = createLimiter(redis, 'src-1', 10)
  const b = createLimiter(redis, 'src-1', 10)
  const other = createLimiter(redis, 'src-2', 10)
  const times: number[] = []
  const started = performance.now()
  await Promise.all([
    ...[a, b, a, b, a, b].map(async (limiter) => {
      await limiter.acquire()
      times.push(performance.now() - started)
    }),
    other.acquire(),
  ])
  times.sort((x, y) => x - y)
  // Six slots 100 ms apart: the last starts at least 500 ms after the first.
  t.ok((times.at(-1) as number) >= 500, `last slot at ${times.at(-1)} ms`)
  for (let i = 1; i < times.length; i++) {
    t.ok((times[i] as number) >= i * 100 - 2, `slot ${i} no earlier than ${i * 100} ms`)
  }
  // Another source keeps its own slots: one reservation, not queued behind src-1's six.
  const [one, two] = await redis.mget(`${RATE_LIMIT_PREFIX}src-1`, `${RATE_LIMIT_PREFIX}src-2`)
  t.ok(Number(one) - Number(two) >= 400_000, 'src-2 next slot is ~500 ms before src-1 next one')
  const ttl = await redis.pttl(`${RATE_LIMIT_PREFIX}src-1`)
  t.ok(ttl > 0 && ttl <= 61_000, `the key expires when idle (pttl ${ttl})`)
})

t.test('pauseFor holds back every limiter on the key', async (t) => {
  const redis = await setup(t)
  const a = createLimiter(redis, 'src', 1000)
  const b = createLimiter(redis, 'src', 1000)
  await a.acquire()
  const paused = performance.now()
  await a.pauseFor(300)
  await a.pauseFor(0) // no-op
  await a.pauseFor(100) // never shortens a pause
  await b.acquire()
  t.ok(performance.now() - paused >= 300, 'b waited for the pause')
})

t.test('acquire gives up when the signal aborts', async (t) => {
  const redis = await setup(t)
  const limiter = createLimiter(redis, 'src', 0.5) // one slot every 2 s
  await limiter.acquire()
  const controller = new AbortController()
  const pending = limiter.acquire(controller.signal)
  setTimeout(() => controller.abort(new Error('stop')), 50)
  await t.rejects(pending, { message: 'stop' })
  await t.rejects(limiter.acquire(controller.signal), { message: 'stop' }, 'already aborted')
  t.throws(() => createLimiter(redis, 'src', 0), RangeError)
  t.throws(() => createLimiter(redis, 'src', Number.NaN), RangeError)
})

t.test('sleep', async (t) => {
  await sleep(1)
  await sleep(1, new AbortController().signal)
  const controller = new AbortController()
  controller.abort(new Error('early'))
  await t.rejects(sleep(10, controller.signal), { message: 'early' })
})
