import {
  defaultJobOptions,
  JobName,
  QUEUE_PREFIX,
  QueueName,
  syncJobOptions,
} from '@confluence-bot/shared'
import { Queue } from 'bullmq'
import t, { type Test } from 'tap'
import { RATE_LIMIT_PREFIX } from '../../../services/worker/src/confluence/limiter.ts'
import { generatedSpace, ingestRig } from '../../helpers/ingest.ts'

// A Retry-After longer than a request waits (http.ts, maxWaitMs) is never slept out inside a job:
// the attempt fails at once with the Retry-After named, the job leaves its concurrency slot, and
// BullMQ's backoff runs it again later. Before, one day's Retry-After kept the sync active for a
// day (counters 0, further syncs deduplicated into it), and one of 2^31 ms or more overflowed
// setTimeout and was silently ignored.

async function sync(t: Test, retryAfter: string) {
  const rig = await ingestRig(t, {
    pages: generatedSpace(3),
    confluence: { faults: [{ status: 429, headers: { 'retry-after': retryAfter } }] },
  })
  await rig.startWorker()
  const source = await rig.register()
  const queue = new Queue(QueueName.sync, { connection: rig.client, prefix: QUEUE_PREFIX })
  t.teardown(() => queue.close())
  const started = Date.now()
  // Queued as the api queues it: with the contract's attempts and backoff.
  const queued = await queue.add(
    JobName.sync,
    { source_id: source },
    { ...structuredClone(defaultJobOptions), ...syncJobOptions(source) },
  )
  const id = queued.id as string
  const run = await rig.waitFor(id, 20_000)
  t.equal(run.state, 'completed', run.failedReason ?? '')
  t.ok(Date.now() - started < 15_000, `done in ${Date.now() - started} ms`)
  t.equal(run.progress.converted, 3, 'the retry did the work')
  const job = await queue.getJob(id)
  t.equal(job?.attemptsMade, 2, 'two attempts')
  t.equal(job?.stacktrace?.length, 1, 'the first one failed')
  t.match(
    job?.stacktrace?.[0],
    `429 and Retry-After: ${retryAfter} s, more than the 60 s a request waits: this attempt fails and the job is retried later`,
  )
  const pause = await rig.client.pttl(`${RATE_LIMIT_PREFIX}${source}`)
  t.ok(pause < 5 * 60_000 + 60_000, `the source is not paused for long (pttl ${pause})`)
}

t.test('a 429 asking for a day fails the attempt, and the job retries later', async (t) => {
  await sync(t, '86400')
})

t.test('a Retry-After beyond setTimeout (2^31 ms or more) is not silently ignored', async (t) => {
  // 2,147,484 s = 2,147,484,000 ms ≥ 2^31 ms: setTimeout would have fired at once.
  await sync(t, '2147484')
})
