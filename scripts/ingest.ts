// `pnpm --silent cnfl ingest`: runs one sync in the foreground and draws its progress on stderr.
// Its queues are the service's, and a worker takes any job of them: one started here would run
// other syncs' page batches with this shell's settings (allowed hosts, embedding model). So while
// a worker is connected (the service's, or another `cnfl ingest`'s) the sync is left to it and
// followed from here. Only when none is, at the start or later, does this process start its own
// (same processors and index), which takes other jobs too until it exits, as any worker does; a
// worker started elsewhere meanwhile may take some of this sync's batches, which is fine.
import { randomBytes } from 'node:crypto'
import { copyFile, mkdir, rename, rm } from 'node:fs/promises'
import { basename, join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import {
  createSource,
  exportFileName,
  getSource,
  JobName,
  listSources,
  loadWorkerConfig,
  newSourceId,
  readRun,
  redactUrl,
  type SourceKind,
  type SourceSpec,
  type SyncJobData,
  type SyncProgress,
  syncDedupId,
  syncJobOptions,
  updateSource,
} from '@confluence-bot/shared'
import type { Queue } from 'bullmq'
import type { Redis as RedisClient } from 'ioredis'
import { pino } from 'pino'
import { inspectExport } from '../services/worker/src/confluence/export.ts'
import { createIngest } from '../services/worker/src/ingest/index.ts'
import { startWorker } from '../services/worker/src/worker.ts'
import { INGEST_USAGE, UsageError } from './ingest-usage.ts'
import { oneShotRedis } from './redis.ts'

/**
 * Whether a worker is connected to the sync or the pages queue, as CLIENT LIST shows BullMQ's
 * named connections (a paused or stopping worker counts until they close). A Redis that does not
 * list its clients (an ACL without CLIENT, some hosted ones) cannot tell: false, and this
 * process runs a worker, as it always did.
 */
async function workerConnected(queues: Record<'sync' | 'pages', Queue>): Promise<boolean> {
  try {
    const lists = await Promise.all([queues.sync.getWorkers(), queues.pages.getWorkers()])
    // Where CLIENT LIST is not a command, BullMQ answers one entry that names no connection.
    return lists.some((workers) => workers.some((w) => w.rawname !== undefined))
  } catch (err) {
    process.stderr.write(`could not tell whether a worker is running: ${(err as Error).message}\n`)
    return false
  }
}

/** The worker's connection waits for Redis forever; a foreground command says so and stops. */
async function checkRedis(url: string): Promise<void> {
  const probe = oneShotRedis(url)
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

type Options = {
  export?: string
  kind?: string
  'base-url'?: string
  space?: string[]
  name?: string
}

/** What the command line asks for: a source of this kind, site and spaces. */
type Wanted = { kind: SourceKind; base_url?: string; spaces: string[] }

const label = (spec: SourceSpec) => `${spec.id} "${spec.name}"`
const trimUrl = (url: string) => url.replace(/\/+$/, '')

/** Why a source is not the one the command line asks for; '' when it is. */
function mismatch(spec: SourceSpec, want: Wanted): string {
  if (spec.kind !== want.kind) return `it is a ${spec.kind} source`
  if (want.base_url !== undefined && spec.base_url !== want.base_url) {
    return `its base URL is ${spec.base_url || '(none)'}`
  }
  const spaces = [...spec.spaces].sort().join(', ')
  // An uploaded export names its space once it has synced: until then any export may be it.
  if (spaces !== [...want.spaces].sort().join(', ') && !(want.kind === 'export' && !spaces)) {
    return `it holds the space(s) ${spaces}`
  }
  if (spec.cql !== undefined || spec.root_page_id !== undefined || spec.labels !== undefined) {
    return 'its scope is narrowed (cql, root page or labels)'
  }
  return ''
}

/**
 * The registered source the command line means, matched by kind, base URL and spaces (never by
 * name alone); undefined when none is, and a new one may be registered under `name`. Anything
 * ambiguous is refused with what to do instead.
 */
function pick(all: SourceSpec[], want: Wanted, given: string | undefined, name: string) {
  const named = all.find((s) => s.name === name)
  const why = named === undefined ? '' : mismatch(named, want)
  if (named !== undefined && why) {
    throw new UsageError(
      `source ${label(named)} is not this one: ${why}. Pass another --name to register a new source, or sync it by id`,
    )
  }
  if (named !== undefined) return named
  const matches = all.filter((s) => s.spaces.length > 0 && mismatch(s, want) === '')
  if (matches.length > 1) {
    throw new UsageError(
      `several sources match: ${matches.map(label).join(', ')}. Pass the name of one with --name, or sync it by id`,
    )
  }
  const [match] = matches
  if (match !== undefined && given !== undefined) {
    throw new UsageError(
      `source ${label(match)} already holds this; a second would index it twice. Pass --name "${match.name}", or sync it by id`,
    )
  }
  return match
}

/**
 * Refuses while a sync of the source is under way: it listed the old zip, and its page batches
 * would read the new one (as PUT /api/sources/:id/export does). A sync still waiting stands.
 */
async function refuseWhileSyncing(queue: Queue, spec: SourceSpec): Promise<void> {
  const id = await queue.getDeduplicationJobId(syncDedupId(spec.id))
  const job = id === null ? undefined : await queue.getJob(id)
  if (job === undefined) return
  const state = await job.getState()
  if (['active', 'waiting-children'].includes(state) || (job.data as SyncJobData).step) {
    throw new Error(
      `a sync of ${label(spec)} is under way (job ${job.id}): replace its export once it has finished`,
    )
  }
}

/**
 * `--export FILE.zip`: the export source of that space (its zip replaced by this one, checked
 * first), or a new one. Either way the zip is kept under EXPORTS_DIR as `<source id>.zip`, as an
 * upload is, so a sync by any worker and a later purge find it.
 */
async function exportSource(
  redis: RedisClient,
  queue: Queue,
  values: Options,
  cwd: string,
  exportsDir: string,
): Promise<SourceSpec> {
  const file = resolve(cwd, values.export as string)
  const dir = resolve(exportsDir)
  await mkdir(dir, { recursive: true })
  const partial = join(dir, `cli-${randomBytes(6).toString('hex')}.zip.part`)
  try {
    await copyFile(file, partial)
    const info = await inspectExport(partial).catch((err: Error) => {
      throw new Error(err.message.replace(partial, file))
    })
    const base = values['base-url']
    const want: Wanted = {
      kind: 'export',
      ...(base === undefined ? {} : { base_url: trimUrl(base) }),
      spaces: [info.spaceKey],
    }
    const all = await listSources(redis)
    const name = values.name ?? basename(file)
    const spec = pick(all, want, values.name, name)
    if (spec !== undefined) {
      await refuseWhileSyncing(queue, spec)
      const kept = exportFileName(spec.id)
      await rename(partial, join(dir, kept))
      if (spec.export_path !== kept) await updateSource(redis, { ...spec, export_path: kept })
      process.stderr.write(`replaced the export of ${label(spec)} with ${file}\n`)
      return spec
    }
    // Registered first: should the name be taken meanwhile, no zip is left without a source.
    const id = newSourceId()
    const created = await createSource(
      redis,
      {
        name,
        kind: 'export',
        base_url: want.base_url ?? '',
        spaces: want.spaces,
        export_path: exportFileName(id),
      },
      id,
    )
    await rename(partial, join(dir, exportFileName(id)))
    return created
  } finally {
    await rm(partial, { force: true })
  }
}

/** `--kind K --base-url URL --space KEY…`: the source of that site and spaces, or a new one. */
async function siteSource(redis: RedisClient, values: Options): Promise<SourceSpec> {
  if (values.kind !== 'cloud' && values.kind !== 'datacenter') {
    throw new UsageError(`--kind must be cloud or datacenter, not ${values.kind}`)
  }
  if (values['base-url'] === undefined || values.space === undefined) {
    throw new UsageError('--kind needs --base-url and at least one --space')
  }
  const want = {
    kind: values.kind as 'cloud' | 'datacenter',
    base_url: trimUrl(values['base-url']),
    spaces: values.space,
  }
  const name = values.name ?? values['base-url']
  const spec = pick(await listSources(redis), want, values.name, name)
  return spec ?? createSource(redis, { name, ...want })
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
  const { redis, queues } = running.ingest
  let worker: Awaited<ReturnType<typeof startWorker>> | undefined
  const ownWorker = () => startWorker({ ...config, WORKER_HEALTH_PORT: 0 }, log, running.registry)
  try {
    // The source is settled (and an export's zip replaced) before any worker here starts.
    let spec: SourceSpec | undefined
    if (values.export !== undefined) {
      spec = await exportSource(redis, queues.sync, values, cwd, config.EXPORTS_DIR)
    } else if (registering) {
      spec = await siteSource(redis, values)
    } else {
      spec = await getSource(redis, positionals[0] as string)
      if (spec === undefined) throw new UsageError(`no source ${positionals[0]}`)
    }
    process.stderr.write(`syncing ${spec.name} (${spec.id})\n`)
    if (await workerConnected(queues)) {
      process.stderr.write('a worker is running: the sync runs there\n')
    } else {
      worker = await ownWorker()
    }

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
    let paused = false
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
      // A paused queue (the dashboard's Pause) holds the sync: said each time it pauses.
      const now = (await queues.sync.isPaused()) || (await queues.pages.isPaused())
      if (now && !paused) {
        process.stderr.write(
          'the queues are paused (the dashboard can resume them): the sync waits\n',
        )
      }
      paused = now
      // The worker it was left to has gone (stopped or scaled away): the rest runs here.
      if (worker === undefined && !(await workerConnected(queues))) {
        process.stderr.write('no worker is running any more: this process runs the sync\n')
        worker = await ownWorker()
      }
      await new Promise((r) => setTimeout(r, 250))
    }
  } finally {
    await worker?.close()
    await running.close()
  }
}
