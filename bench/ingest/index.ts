import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  createSource,
  JobName,
  jobId,
  QUEUE_PREFIX,
  QueueName,
  readRun,
  workerProcessEnv,
} from '@confluence-bot/shared'
import { Queue } from 'bullmq'
import { Redis } from 'ioredis'
import { chunkMarkdown } from '../../services/worker/src/chunk/index.ts'
import { convertStorage } from '../../services/worker/src/convert/index.ts'
import {
  type StandInPage,
  startConfluenceStandIn,
} from '../../tests/helpers/confluence-stand-in.ts'
import { startOllamaStandIn } from '../../tests/helpers/ollama-stand-in.ts'
import { runService } from '../../tests/helpers/process.ts'
import { startRedis } from '../../tests/helpers/redis.ts'
import { buildPage } from '../convert/pages.ts'
import { note, reporter, setting } from '../lib/report.ts'
import { percentile } from '../lib/stats.ts'

// `pnpm bench ingest`: the whole ingestion pipeline on PAGES generated pages of realistic size
// (the ~21 KB pages of the convert bench) — a worker process with its default settings, started
// with the process environment it is deployed with (workerProcessEnv), real Redis, real LanceDB
// in a temp directory, the Confluence stand-in (Cloud v2) and the Ollama stand-in (768-d
// vectors), both with no added latency. Figures:
// - pages_per_s: a full sync, enqueue to completion;
// - convert_pages_per_s (the baseline, measured first in this process on one core): storage →
//   markdown → chunks for the same pages; pipeline_vs_convert_ratio = the two divided;
// - maintain_s_after_full_sync: the index upkeep job the sync queued (index builds, compaction);
// - <stage>_ms_p95: per page batch (fetch, convert, embed, write), from the batches' results;
// - worker_peak_rss_mb: the worker's largest RSS seen during the full sync (polled), and its
//   VmHWM once the index upkeep is done too;
// - resync_time_ratio / resync_embed_calls: a second sync with nothing changed;
// - large_pages_worker_peak_rss_mb (and _anon_): a fresh worker syncing a space of
//   BENCH_INGEST_LARGE_PAGES pages of about BENCH_INGEST_LARGE_MB MB of storage each, all in one
//   page batch: what a batch holds beyond its page count (bodies, chunks, vectors, Arrow copies).
// Knobs: BENCH_INGEST_PAGES (5000), BENCH_INGEST_BASELINE_PAGES (400), BENCH_INGEST_LARGE_PAGES
// (6), BENCH_INGEST_LARGE_MB (8).

const BENCH = 'ingest'
const report = reporter(BENCH)
const log = (message: string) => note(BENCH, message)
const PAGES = setting('BENCH_INGEST_PAGES', 5_000, true)
const BASELINE_PAGES = setting('BENCH_INGEST_BASELINE_PAGES', 400, true)
const LARGE_PAGES = setting('BENCH_INGEST_LARGE_PAGES', 6, true)
const LARGE_MB = setting('BENCH_INGEST_LARGE_MB', 8)

function space(count: number): StandInPage[] {
  const bodies = Array.from({ length: 20 }, (_, i) => buildPage(i))
  return Array.from({ length: count }, (_, i) => ({
    id: String(100_001 + i),
    title: `Runbook ${i + 1}`,
    spaceKey: 'ENG',
    parentId: i === 0 ? undefined : String(100_001 + Math.floor((i - 1) / 8)),
    version: 1,
    storage: bodies[i % 20] as string,
  }))
}

/** Pages of about `mb` MB of storage each: the realistic pages of the convert bench, joined. */
function largeSpace(count: number, mb: number): StandInPage[] {
  const bodies = Array.from({ length: 20 }, (_, i) => buildPage(i))
  return Array.from({ length: count }, (_, i) => {
    const parts: string[] = []
    for (let size = 0, n = i; size < mb * 2 ** 20; n++) {
      const body = bodies[n % 20] as string
      parts.push(body)
      size += body.length
    }
    return {
      id: String(900_001 + i),
      title: `Large page ${i + 1}`,
      spaceKey: 'BIG',
      version: 1,
      storage: parts.join(''),
    }
  })
}

function baseline(pages: StandInPage[]): number {
  const started = performance.now()
  for (const page of pages) {
    const { markdown } = convertStorage(page.storage, { spaceKey: page.spaceKey, pageId: page.id })
    chunkMarkdown(markdown, {
      pageId: page.id,
      title: page.title,
      url: `https://x/${page.id}`,
      space: 'ENG',
      ancestors: [],
    })
  }
  return (pages.length / (performance.now() - started)) * 1000
}

async function memoryMb(pid: number, field: 'VmHWM' | 'VmRSS' | 'RssAnon'): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  const kb = Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1] ?? Number.NaN)
  return kb / 1024
}

/** CPU seconds (user + system) a process has used so far, from /proc. */
async function cpuSeconds(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
  // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) / 100
}

async function main() {
  const pages = space(PAGES)
  for (const page of pages.slice(0, 20)) baseline([page]) // warm-up
  const convertRate = baseline(pages.slice(0, BASELINE_PAGES))
  log(`conversion only: ${convertRate.toFixed(1)} pages/s on one core`)

  const cleanups: Array<() => unknown> = []
  const dir = await mkdtemp(join(tmpdir(), 'cnfl-bench-ingest-'))
  cleanups.push(() => rm(dir, { recursive: true, force: true }))
  const redis = await startRedis()
  cleanups.push(() => redis.stop())
  const ollama = await startOllamaStandIn({ embedDimension: 768 })
  cleanups.push(() => ollama.close())
  const confluence = await startConfluenceStandIn({ pages, pageSize: 250 })
  cleanups.push(() => confluence.close())
  const client = new Redis(redis.url, { maxRetriesPerRequest: null })
  cleanups.push(() => client.quit())
  const queue = new Queue(QueueName.sync, { connection: client, prefix: QUEUE_PREFIX })
  const batches = new Queue(QueueName.pages, { connection: client, prefix: QUEUE_PREFIX })
  cleanups.push(
    () => queue.close(),
    () => batches.close(),
  )
  try {
    const startWorker = (lancedb: string) =>
      runService(
        { teardown: (fn) => cleanups.unshift(fn) },
        'services/worker/src/main.ts',
        workerProcessEnv({
          REDIS_URL: redis.url,
          OLLAMA_URL: ollama.url,
          LANCEDB_URI: join(dir, lancedb),
          EXPORTS_DIR: join(dir, 'exports'),
          CONFLUENCE_ALLOWED_HOSTS: '127.0.0.1',
          CONFLUENCE_REQUESTS_PER_SECOND: '1000',
          WORKER_HEALTH_PORT: '0',
          LOG_LEVEL: 'info',
        }),
      )
    const worker = startWorker('lancedb')
    await worker.waitFor(/worker started/, 60_000)
    const source = await createSource(client, {
      name: 'bench',
      kind: 'cloud',
      base_url: confluence.baseUrl,
      spaces: ['ENG'],
    })

    let pid = worker.child.pid as number
    const sync = async (sourceId = source.id) => {
      const calls = ollama.embedCalls
      const cpuBefore = {
        worker: await cpuSeconds(pid),
        redis: await cpuSeconds(redis.process.pid as number),
        standIns: process.cpuUsage(),
      }
      const started = performance.now()
      let peakRss = 0
      let peakAnon = 0
      const job = await queue.add(
        JobName.sync,
        { source_id: sourceId },
        { jobId: jobId('sync', sourceId, Date.now()) },
      )
      for (;;) {
        const state = await queue.getJobState(job.id as string)
        peakRss = Math.max(peakRss, await memoryMb(pid, 'VmRSS'))
        peakAnon = Math.max(peakAnon, await memoryMb(pid, 'RssAnon'))
        if (state === 'completed') break
        if (state === 'failed')
          throw new Error(`sync failed: ${(await queue.getJob(job.id as string))?.failedReason}`)
        await new Promise((r) => setTimeout(r, 100))
      }
      const seconds = (performance.now() - started) / 1000
      const standIns = process.cpuUsage(cpuBefore.standIns)
      return {
        seconds,
        cpu: {
          worker: (await cpuSeconds(pid)) - cpuBefore.worker,
          redis: (await cpuSeconds(redis.process.pid as number)) - cpuBefore.redis,
          // This process: the two stand-ins, and the bench's own polling.
          standIns: (standIns.user + standIns.system) / 1e6,
        },
        peakRss,
        peakAnon,
        calls: ollama.embedCalls - calls,
        run: await readRun(client, job.id as string),
      }
    }

    log(`full sync of ${PAGES} pages…`)
    const full = await sync()
    const rate = PAGES / full.seconds
    log(`full sync: ${full.seconds.toFixed(1)} s, ${JSON.stringify(full.run.progress)}`)
    if (full.run.progress.converted !== PAGES) throw new Error('not every page was converted')
    report('pages_per_s', rate, 'pages/s')
    report('convert_pages_per_s', convertRate, 'pages/s')
    report('pipeline_vs_convert_ratio', rate / convertRate, 'ratio')
    // Where the two cores went during the full sync, per page: the worker (main thread and
    // LanceDB's threads), the stand-ins (in this process), Redis.
    for (const [who, seconds] of Object.entries(full.cpu)) {
      report(
        `${who === 'standIns' ? 'stand_ins' : who}_cpu_ms_per_page`,
        (seconds * 1000) / PAGES,
        'ms',
      )
    }
    report('worker_peak_rss_mb', full.peakRss, 'MB')
    // RSS counts mapped LanceDB files too; anonymous memory is what the worker itself holds.
    report('worker_peak_anon_rss_mb', full.peakAnon, 'MB')

    // The index upkeep the sync queued (full-text and vector index builds, compaction).
    const maintainStarted = performance.now()
    for (;;) {
      const [maintain] = await queue.getJobs(['completed'], 0, 0)
      const jobs = await queue.getJobs(['completed'])
      if (jobs.some((j) => j.name === JobName.maintain) || maintain?.name === JobName.maintain)
        break
      await new Promise((r) => setTimeout(r, 200))
    }
    report('maintain_s_after_full_sync', (performance.now() - maintainStarted) / 1000, 's')
    report('worker_peak_rss_mb_with_maintain', await memoryMb(pid, 'VmHWM'), 'MB')
    report('embed_calls_full', full.calls, 'calls')

    const done = await batches.getJobs(['completed'])
    for (const stage of ['fetch', 'convert', 'embed', 'write'] as const) {
      const samples = done.map(
        (job) => (job.returnvalue as { ms: Record<string, number> }).ms[stage] as number,
      )
      report(`${stage}_ms_p95`, percentile(samples, 95), 'ms per batch')
    }
    report('batch_pages', Math.round(PAGES / done.length), 'pages')

    const resync = await sync()
    log(`no-change re-sync: ${resync.seconds.toFixed(2)} s, ${JSON.stringify(resync.run.progress)}`)
    report('resync_time_ratio', resync.seconds / full.seconds, 'ratio')
    report('resync_embed_calls', resync.calls, 'calls')
    worker.child.kill('SIGTERM')
    await worker.exit
    for (const line of worker.output().split('\n')) {
      if (/crawl done|sync done/.test(line)) log(`worker: ${line}`)
    }

    // Large pages, all in one batch, synced by a fresh worker (its own index), so its peak is
    // theirs alone.
    const large = largeSpace(LARGE_PAGES, LARGE_MB)
    const largeMb = large.reduce((sum, p) => sum + p.storage.length, 0) / 2 ** 20
    const largeStandIn = await startConfluenceStandIn({ pages: large, pageSize: 250 })
    cleanups.unshift(() => largeStandIn.close())
    const largeWorker = startWorker('lancedb-large')
    await largeWorker.waitFor(/worker started/, 60_000)
    pid = largeWorker.child.pid as number
    const largeSource = await createSource(client, {
      name: 'bench-large',
      kind: 'cloud',
      base_url: largeStandIn.baseUrl,
      spaces: ['BIG'],
    })
    log(`large pages: ${LARGE_PAGES} pages, ${largeMb.toFixed(1)} MB of storage in one batch…`)
    const big = await sync(largeSource.id)
    log(`large pages: ${big.seconds.toFixed(1)} s, ${JSON.stringify(big.run.progress)}`)
    if (big.run.progress.converted !== LARGE_PAGES)
      throw new Error('a large page was not converted')
    report('large_pages_worker_peak_rss_mb', big.peakRss, 'MB')
    report('large_pages_worker_peak_anon_rss_mb', big.peakAnon, 'MB')
    report('large_pages_storage_mb', largeMb, 'MB')
    largeWorker.child.kill('SIGTERM')
    await largeWorker.exit
  } finally {
    for (const fn of cleanups) await fn()
  }
}

await main()
