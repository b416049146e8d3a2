import type { Server } from 'node:http'
import { DEFAULT_TOKENS, startOllamaStandIn } from '../../tests/helpers/ollama-stand-in.ts'
import { startMinimalProxy } from './minimal-proxy.ts'
import type { FromChild, ServerSpec, ToChild } from './processes.ts'

// One server of the gateway benchmark, in its own process (own event loop, own CPU share, as in
// production): the Ollama stand-in, the minimal proxy, or the gateway built with buildApp. It is
// started by processes.ts with an IPC channel: it reports `ready` with its URL, answers `stats`
// (CPU time and requests served so far), stops on `stop`, and exits at once if the parent goes
// away (the IPC channel closes), so no server outlives the benchmark.

const send = (message: FromChild) => process.send?.(message)

if (!process.send) {
  process.stderr.write('server-process.ts is started by bench/gateway/index.ts\n')
  process.exit(2)
}
process.on('disconnect', () => process.exit(0))

const spec = JSON.parse(process.argv[2] ?? '{}') as ServerSpec
type Running = { url: string; close(): Promise<void>; served(): number }

function counting(server: Server): () => number {
  let served = 0
  server.on('request', () => served++)
  return () => served
}

async function start(): Promise<Running> {
  switch (spec.role) {
    case 'upstream': {
      const standIn = await startOllamaStandIn({
        tokens: [...DEFAULT_TOKENS],
        tokenDelayMs: 0,
        firstByteDelayMs: 0,
      })
      // The stand-in records every request for tests; under load that list would grow by
      // millions of entries and skew the upstream's GC. Count and drop them instead.
      let dropped = 0
      setInterval(() => {
        dropped += standIn.requests.length
        standIn.requests.length = 0
        standIn.aborted.length = 0
      }, 100).unref()
      return {
        url: standIn.url,
        close: () => standIn.close(),
        served: () => dropped + standIn.requests.length,
      }
    }
    case 'proxy': {
      const proxy = await startMinimalProxy(spec.upstream)
      return { url: proxy.url, close: () => proxy.close(), served: counting(proxy.server) }
    }
    case 'gateway': {
      const { buildApp } = await import('@confluence-bot/api')
      const { loadApiConfig, loggerOptions } = await import('@confluence-bot/shared')
      const config = loadApiConfig({
        LOG_LEVEL: spec.logLevel,
        OLLAMA_URL: spec.upstream,
        LANCEDB_URI: spec.lancedbUri,
        // Nothing listens on port 1: generate needs no Redis, and the API starts without it.
        REDIS_URL: 'redis://127.0.0.1:1',
        // What the gateway costs per request, not where it sheds load: one client at -c 50 would
        // otherwise meet the per-key answer limit (8), and a saturated loop back-pressure's 503s
        // (`pnpm bench load` measures those).
        ANSWER_CONCURRENCY: '120',
        ANSWER_CONCURRENCY_PER_KEY: '120',
        RATE_LIMIT_PER_MINUTE: '0',
        PRESSURE_MAX_EVENT_LOOP_DELAY_MS: '0',
        PRESSURE_MAX_EVENT_LOOP_UTILIZATION: '0',
        ...spec.env,
      })
      // As services/api/src/server.ts does: pino JSON lines on stdout (a file, set by the parent).
      const app = buildApp({
        config,
        logger: loggerOptions({ level: config.LOG_LEVEL, service: 'api' }),
      })
      const url = await app.listen({ host: '127.0.0.1', port: 0 })
      return { url, close: () => app.close(), served: counting(app.server) }
    }
  }
}

try {
  const server = await start()
  process.on('message', (message: ToChild) => {
    if (message.type === 'stats') {
      const cpu = process.cpuUsage()
      send({
        type: 'stats',
        id: message.id,
        cpuMicros: cpu.user + cpu.system,
        served: server.served(),
      })
    } else if (message.type === 'stop') {
      const hardExit = setTimeout(() => process.exit(0), 3000)
      hardExit.unref()
      server.close().finally(() => process.exit(0))
    }
  })
  send({ type: 'ready', url: server.url })
} catch (err) {
  process.stderr.write(`${spec.role} failed to start: ${(err as Error).stack}\n`)
  process.exit(1)
}
