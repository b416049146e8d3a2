import {
  type Env,
  JobName,
  loadWorkerConfig,
  QUEUE_PREFIX,
  QueueName,
} from '@confluence-bot/shared'
import { Queue, QueueEvents } from 'bullmq'
import { pino } from 'pino'
import t from 'tap'
import { request } from 'undici'
import { startWorker } from '../../services/worker/src/worker.ts'
import { startRedis } from '../helpers/redis.ts'

const silent = pino({ level: 'silent' })

/** The sync queue and its events, closed when the test ends. */
async function syncQueue(t: { teardown(fn: () => unknown): void }, url: string) {
  const connection = { url }
  const queue = new Queue(QueueName.sync, { connection, prefix: QUEUE_PREFIX })
  const events = new QueueEvents(QueueName.sync, { connection, prefix: QUEUE_PREFIX })
  t.teardown(async () => {
    await queue.close()
    await events.close()
  })
  await events.waitUntilReady()
  return { queue, events }
}

async function setup(t: { teardown(fn: () => unknown): void }, env: Env = {}) {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const config = loadWorkerConfig({ REDIS_URL: redis.url, WORKER_HEALTH_PORT: '0', ...env })
  return { redis, config }
}

async function get(port: number, path: string) {
  const res = await request(`http://127.0.0.1:${port}${path}`)
  return { status: res.statusCode, body: (await res.body.json()) as Record<string, unknown> }
}

t.test('the worker runs jobs of its queues with a per-job logger', async (t) => {
  const { redis, config } = await setup(t)
  const seen: unknown[] = []
  const worker = await startWorker(config, silent, {
    [QueueName.sync]: {
      echo: async (job, deps) => {
        seen.push(job.data)
        deps.log.info('processing')
        return { echoed: job.data.value, concurrency: deps.config.WORKER_CONCURRENCY }
      },
    },
  })
  t.teardown(() => worker.close())
  await worker.ready()
  const { queue, events } = await syncQueue(t, redis.url)

  const ok = await queue.add('echo', { value: 42 })
  t.same(await ok.waitUntilFinished(events, 10_000), { echoed: 42, concurrency: 4 })
  t.same(seen, [{ value: 42 }])

  const unknown = await queue.add('no-such-job', {}, { attempts: 3 })
  await t.rejects(unknown.waitUntilFinished(events, 10_000), /No processor for job "no-such-job"/)
  const failed = await queue.getJob(unknown.id as string)
  t.equal(failed?.attemptsMade, 1, 'an unknown job is not retried')
})

t.test(
  'a job of the contract reaches its processor only with data that fits its schema',
  async (t) => {
    const { redis, config } = await setup(t)
    const seen: unknown[] = []
    const worker = await startWorker(config, silent, {
      [QueueName.sync]: {
        [JobName.maintain]: async (job) => {
          seen.push(job.data)
          return 'maintained'
        },
      },
    })
    t.teardown(() => worker.close())
    await worker.ready()
    const { queue, events } = await syncQueue(t, redis.url)

    const ok = await queue.add(JobName.maintain, {})
    t.equal(await ok.waitUntilFinished(events, 10_000), 'maintained')
    const forged = await queue.add(JobName.maintain, { path: '/' }, { attempts: 3 })
    await t.rejects(
      forged.waitUntilFinished(events, 10_000),
      /^maintain job data is invalid: path is not allowed$/,
    )
    t.equal((await queue.getJob(forged.id as string))?.attemptsMade, 1, 'it is not retried')
    t.same(seen, [{}], 'the processor never saw the invalid data')
  },
)

t.test('probes: live always, ready while Redis answers and workers run', async (t) => {
  const { redis, config } = await setup(t)
  const worker = await startWorker(config, silent)
  t.teardown(() => worker.close())
  await worker.ready()
  t.same((await get(worker.healthPort, '/health/live')).body, { status: 'ok' })
  const ready = await get(worker.healthPort, '/health/ready')
  t.equal(ready.status, 200)
  t.match(ready.body, {
    status: 'ok',
    running: { [QueueName.sync]: true },
    redis: { status: 'ok' },
  })
  t.equal((await get(worker.healthPort, '/nope')).status, 404)
  const post = await request(`http://127.0.0.1:${worker.healthPort}/health/live`, {
    method: 'POST',
  })
  t.equal(post.statusCode, 405)
  await post.body.dump()

  await redis.stop()
  const down = await get(worker.healthPort, '/health/ready')
  t.equal(down.status, 503)
  t.match(down.body, { status: 'down', redis: { status: 'down' } })
  t.equal(
    (await get(worker.healthPort, '/health/live')).status,
    200,
    'liveness does not follow Redis',
  )
})

t.test('close lets the active job finish before stopping', async (t) => {
  const { redis, config } = await setup(t)
  let finished = false
  let started: () => void = () => {}
  const running = new Promise<void>((resolve) => {
    started = resolve
  })
  const worker = await startWorker(config, silent, {
    [QueueName.sync]: {
      slow: async () => {
        started()
        await new Promise((r) => setTimeout(r, 300))
        finished = true
        return 'done'
      },
    },
  })
  await worker.ready()
  const queue = new Queue(QueueName.sync, { connection: { url: redis.url }, prefix: QUEUE_PREFIX })
  t.teardown(() => queue.close())
  const job = await queue.add('slow', {})
  await running
  await worker.close()
  t.ok(finished, 'the job ran to the end')
  t.equal(await (await queue.getJob(job.id as string))?.getState(), 'completed')
  await t.rejects(
    request(`http://127.0.0.1:${worker.healthPort}/health/live`),
    'the probe endpoint is closed',
  )
})
