// `pnpm --silent cnfl ingest`: runs one sync in the foreground, with a worker in this process,
// and draws its progress on stderr. The same queues, processors and index as the service: a
// worker running elsewhere may take some of the page batches, which is fine.
import { basename, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import {
  createSource,
  getSource,
  JobName,
  listSources,
  loadWorkerConfig,
  readRun,
  redactUrl,
  type SourceSpec,
  type SyncProgress,
  syncJobOptions,
} from '@confluence-bot/shared'
import { Redis } from 'ioredis'
import { pino } from 'pino'
import { inspectExport } from '../services/worker/src/confluence/export.ts'
import { createIngest } from '../services/worker/src/ingest/index.ts'
import { startWorker } from '../services/worker/src/worker.ts'
import { INGEST_USAGE, UsageError } from './ingest-usage.ts'

/** The worker's connection waits for Redis forever; a foreground command says so and stops. */
async function checkRedis(url: string): Promise<void> {
  const probe = new Redis(url, {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    connectTimeout: 3_000,
    retryStrategy: () => null,
  })
  probe.on('error', () => {})
  try {
    await probe.connect()
    await probe.ping()
  } catch {
    throw new Error(
      `Redis at REDIS_URL=${redactUrl(url)} is unreachable: start it (./confluence-bot start runs one) or set REDIS_URL`,
    )
  } finally {
    probe.disconnect()
  }
}

function bar(p: SyncProgress): string {
  const done = p.unchanged + p.converted + p.failed
  const total = Math.max(p.discovered, done)
  const width = 30
  const filled = total === 0 ? 0 : Math.round((width * done) / total)
  return (
    `[${'#'.repeat(filled)}${' '.repeat(width - filled)}] ${done}/${total} pages` +
    ` · ${p.converted} converted · ${p.unchanged} unchanged · ${p.embedded} embedded` +
    ` · ${p.deleted} deleted · ${p.failed} failed`
  )
}

export async function ingest(args: string[], cwd: string): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      export: { type: 'string' },
      kind: { type: 'string' },
      'base-url': { type: 'string' },
      space: { type: 'string', multiple: true },
      name: { type: 'string' },
      full: { type: 'boolean' },
      force: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  })
  if (values.help) {
    process.stdout.write(INGEST_USAGE)
    return 0
  }
  const registering = values.export !== undefined || values.kind !== undefined
  if (positionals.length !== (registering ? 0 : 1)) {
    process.stderr.write(INGEST_USAGE)
    return 2
  }
  const config = loadWorkerConfig()
  await checkRedis(config.REDIS_URL)
  const log = pino(
    /* c8 ignore next: the foreground command keeps the worker quiet unless asked */
    { level: config.LOG_LEVEL === 'info' ? 'warn' : config.LOG_LEVEL },
    pino.destination(2),
  )
  const running = await createIngest(config, log)
  const worker = await startWorker({ ...config, WORKER_HEALTH_PORT: 0 }, log, running.registry)
  const { redis, queues } = running.ingest
  try {
    let spec: SourceSpec | undefined
    if (registering) {
      const name =
        values.name ?? (values.export ? basename(values.export) : (values['base-url'] ?? ''))
      spec = (await listSources(redis)).find((s) => s.name === name)
      if (spec === undefined && values.export !== undefined) {
        const path = resolve(cwd, values.export)
        const info = await inspectExport(path)
        spec = await createSource(redis, {
          name,
          kind: 'export',
          base_url: values['base-url'] ?? '',
          spaces: [info.spaceKey],
          export_path: path,
        })
      } else if (spec === undefined) {
        if (values.kind !== 'cloud' && values.kind !== 'datacenter') {
          throw new UsageError(`--kind must be cloud or datacenter, not ${values.kind}`)
        }
        if (values['base-url'] === undefined || values.space === undefined) {
          throw new UsageError('--kind needs --base-url and at least one --space')
        }
        spec = await createSource(redis, {
          name,
          kind: values.kind,
          base_url: values['base-url'].replace(/\/+$/, ''),
          spaces: values.space as string[],
        })
      }
    } else {
      spec = await getSource(redis, positionals[0] as string)
      if (spec === undefined) throw new UsageError(`no source ${positionals[0]}`)
    }
    process.stderr.write(`syncing ${spec.name} (${spec.id})\n`)

    const options = syncJobOptions(spec.id)
    const job = await queues.sync.add(
      JobName.sync,
      { source_id: spec.id, full: values.full, force: values.force },
      options,
    )
    const id = job.id as string
    if (id !== options.jobId)
      process.stderr.write(`a sync of this source is already running: ${id}\n`)
    /* c8 ignore next 2: a terminal redraws one line; tests read stderr through a pipe */
    const tty = process.stderr.isTTY === true
    const draw = tty ? (line: string) => `\r${line}` : (line: string) => `${line}\n`
    let last = ''
    for (;;) {
      const state = await queues.sync.getJobState(id)
      const { progress, errors } = await readRun(redis, id)
      const line = bar(progress)
      if (line !== last) {
        process.stderr.write(draw(line))
        last = line
      }
      if (state === 'completed' || state === 'failed' || state === 'unknown') {
        /* c8 ignore next: tests read stderr through a pipe, never a terminal */
        if (tty) process.stderr.write('\n')
        const failed = state === 'failed' ? (await queues.sync.getJob(id))?.failedReason : undefined
        for (const e of errors) process.stderr.write(`error: ${e.page_id ?? ''} ${e.message}\n`)
        if (failed !== undefined) process.stderr.write(`sync failed: ${failed}\n`)
        process.stdout.write(
          `${JSON.stringify({ source_id: spec.id, job_id: id, state, progress, errors: errors.length })}\n`,
        )
        return state === 'completed' ? 0 : 1
      }
      await new Promise((r) => setTimeout(r, 250))
    }
  } finally {
    await worker.close()
    await running.close()
  }
}
