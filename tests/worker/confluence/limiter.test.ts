import { Redis } from 'ioredis'
import t, { type Test } from 'tap'
import {
  createLimiter,
  MAX_WAIT_MS,
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

t.test('waits are bounded: a pause is capped, a slot too far off is refused', async (t) => {
  const redis = await setup(t)
  const key = `${RATE_LIMIT_PREFIX}src`
  const limiter = createLimiter(redis, 'src', 1000, { maxWaitMs: 400 })
  // A day's pause is kept for maxWaitMs only (2^31 ms and more would overflow setTimeout).
  await limiter.pauseFor(86_400_000)
  const ttl = await redis.pttl(key)
  t.ok(ttl > 0 && ttl <= 400 + 60_000, `pttl ${ttl}`)
  const started = performance.now()
  await limiter.acquire()
  t.ok(performance.now() - started >= 300, 'the capped pause is sat out')

  // A slot further off than maxWaitMs (here: a pause an older worker stored) is refused at once,
  // retryable, and nothing is reserved.
  const [sec, usec] = (await redis.time()) as [number | string, number | string]
  const far = String(Number(sec) * 1e6 + Number(usec) + 86_400e6)
  await redis.set(key, far, 'PX', 60_000)
  const refusedAt = performance.now()
  await t.rejects(limiter.acquire(), {
    name: 'ConfluenceError',
    code: 'rate_limited',
    fatal: false,
    message:
      /^Requests to source src are held back for another 8640\d s \(a Retry-After pause, or requests queued at its rate limit\), more than the 1 s a request waits: this attempt fails and the job is retried later$/,
  })
  t.ok(performance.now() - refusedAt < 200, 'refused at once')
  t.equal(await redis.get(key), far, 'no slot taken')

  // The default bound is minutes, far below setTimeout's 2^31 ms.
  t.ok(MAX_WAIT_MS <= 5 * 60_000)
  await redis.set(key, far, 'PX', 60_000)
  await t.rejects(createLimiter(redis, 'src', 10).acquire(), { message: /more than the 300 s/ })
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
