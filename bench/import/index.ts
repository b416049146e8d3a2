import { createHash, randomBytes } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { mkdtemp, open, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { request } from 'undici'
import { startRedis } from '../../tests/helpers/redis.ts'
import { startServer } from '../gateway/processes.ts'
import { note, reporter, setting } from '../lib/report.ts'
import { median } from '../lib/stats.ts'

// `pnpm bench import`: what `POST /api/models/import` costs against an in-run floor.
//
// A GGUF-shaped file of BENCH_IMPORT_MB (1024) MB is uploaded, in alternating rounds, (a) straight
// to Ollama's blob endpoint, as `ollama create` would push it (the floor: one copy over loopback),
// and (b) through the api, which streams it to MODEL_IMPORT_DIR while hashing, pushes the file as
// a blob, then creates the model. The Ollama stand-in and the api each run in their own process
// (bench/gateway/processes.ts); Redis is real. Figures: the medians of MB/s for each path, their
// ratio, the api's two phases (receiving the file, then pushing it to Ollama and creating the
// model), and the api's resident memory growth while a file 8+ times its size passes through (read
// from /proc, sampled every 50 ms): it must stay flat, since the upload is never buffered.
//
// For scale, the MB/s at which this process reads and hashes the file is printed too.
//
// Knobs: BENCH_IMPORT_MB (1024), BENCH_IMPORT_ROUNDS (3), BENCH_IMPORT_CPU_PROF=DIR (--cpu-prof
// of the api into DIR).

const BENCH = 'import'
const report = reporter(BENCH)
const log = (message: string) => note(BENCH, message)
const SIZE_MB = Math.round(setting('BENCH_IMPORT_MB', 1024))
const ROUNDS = Math.round(setting('BENCH_IMPORT_ROUNDS', 3))
const CPU_PROF = process.env.BENCH_IMPORT_CPU_PROF
const ADMIN_KEY = 'bench-import-admin-key-0123456789'

/** A file that passes as a GGUF: the magic, then 1 MiB of random bytes repeated. */
async function makeFile(path: string): Promise<void> {
  const block = randomBytes(1 << 20)
  block.write('GGUF', 0, 'latin1')
  const file = await open(path, 'w')
  try {
    for (let i = 0; i < SIZE_MB; i++) await file.write(block)
  } finally {
    await file.close()
  }
}

/**
 * Makes the file new (8 bytes after the magic set to `n`) and returns its sha256: Ollama keeps a
 * blob it has, so every upload must bring one it has not seen.
 */
async function renew(path: string, n: number): Promise<string> {
  const file = await open(path, 'r+')
  try {
    const mark = Buffer.alloc(8)
    mark.writeBigUInt64BE(BigInt(n))
    await file.write(mark, 0, 8, 4)
  } finally {
    await file.close()
  }
  const hash = createHash('sha256')
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) hash.update(chunk)
  return hash.digest('hex')
}

/** Resident set of a process, MB (Linux /proc). */
async function rssMb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  const kb = Number(/^VmRSS:\s+(\d+)/m.exec(status)?.[1])
  return kb / 1024
}

/**
 * Seconds an upload of the file to `url` takes, in all and until the answer's headers (through
 * the api, streamed: the file received, hashed and stored; the rest is the push to Ollama and the
 * create); throws unless the answer is 2xx and has no error line.
 */
async function upload(url: string, path: string, headers: Record<string, string>) {
  const started = performance.now()
  const res = await request(url, {
    method: 'POST',
    headers: { 'content-type': 'application/octet-stream', ...headers },
    body: createReadStream(path, { highWaterMark: 1 << 20 }),
    headersTimeout: 0,
    bodyTimeout: 0,
  })
  const answered = performance.now()
  const text = await res.body.text()
  if (res.statusCode >= 300) throw new Error(`${url}: ${res.statusCode} ${text.slice(0, 300)}`)
  if (text.includes('"error"')) throw new Error(`${url}: ${text.slice(-300)}`)
  return { total: (performance.now() - started) / 1000, head: (answered - started) / 1000 }
}

async function main(): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), 'cnfl-bench-import-'))
  process.once('exit', () => void rm(work, { recursive: true, force: true }))
  const redis = await startRedis()
  const servers = []
  try {
    const file = join(work, 'model.gguf')
    log(`writing a ${SIZE_MB} MB GGUF-shaped file`)
    await makeFile(file)

    const upstream = await startServer('upstream', { role: 'upstream' })
    servers.push(upstream)
    const api = await startServer(
      'api',
      {
        role: 'gateway',
        upstream: upstream.url,
        logLevel: 'warn',
        lancedbUri: join(work, 'lancedb'),
        env: {
          REDIS_URL: redis.url,
          ADMIN_API_KEYS: ADMIN_KEY,
          MODEL_IMPORT_DIR: join(work, 'imports'),
          MODEL_IMPORT_LIMIT: String((SIZE_MB + 1) << 20),
          REQUEST_TIMEOUT_MS: '0',
          RATE_LIMIT_PER_MINUTE: '0',
        },
      },
      {
        stdout: 'ignore',
        execArgv: CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${CPU_PROF}`] : [],
      },
    )
    servers.push(api)

    const direct: number[] = []
    const through: number[] = []
    const growth: number[] = []
    const hashing: number[] = []
    const received: number[] = []
    const pushed: number[] = []
    for (let round = 1; round <= ROUNDS; round++) {
      const hashStarted = performance.now()
      const digest = await renew(file, round * 2)
      const hashMbS = SIZE_MB / ((performance.now() - hashStarted) / 1000)
      const seconds = (await upload(`${upstream.url}/api/blobs/sha256:${digest}`, file, {})).total
      direct.push(SIZE_MB / seconds)
      hashing.push(hashMbS)

      await renew(file, round * 2 + 1)
      const before = await rssMb(api.pid)
      let peak = before
      const sampler = setInterval(() => {
        rssMb(api.pid).then(
          (mb) => {
            peak = Math.max(peak, mb)
          },
          () => undefined,
        )
      }, 50)
      const viaApi = await upload(
        `${api.url}/api/models/import?name=bench-import-${round}&stream=true`,
        file,
        {
          authorization: `Bearer ${ADMIN_KEY}`,
        },
      ).finally(() => clearInterval(sampler))
      through.push(SIZE_MB / viaApi.total)
      received.push(SIZE_MB / viaApi.head)
      pushed.push(SIZE_MB / (viaApi.total - viaApi.head))
      growth.push(peak - before)
      log(
        `round ${round}: direct ${(SIZE_MB / seconds).toFixed(0)} MB/s, through the api ${(SIZE_MB / viaApi.total).toFixed(0)} MB/s (received ${(SIZE_MB / viaApi.head).toFixed(0)}, pushed ${(SIZE_MB / (viaApi.total - viaApi.head)).toFixed(0)}), api RSS +${(peak - before).toFixed(0)} MB`,
      )
    }
    report('direct_blob_mb_s', median(direct), 'MB/s')
    report('api_import_mb_s', median(through), 'MB/s')
    report('api_receive_mb_s', median(received), 'MB/s')
    report('api_push_mb_s', median(pushed), 'MB/s')
    report('api_vs_direct', median(through) / median(direct), 'ratio')
    report('api_rss_growth_mb', median(growth), 'MB')
    report('sha256_read_mb_s', median(hashing), 'MB/s')
    report('file_mb', SIZE_MB, 'MB')
  } finally {
    for (const server of servers.reverse()) await server.stop()
    await redis.stop()
    await rm(work, { recursive: true, force: true })
  }
}

await main()
