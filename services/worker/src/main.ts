import { loadWorkerConfig, loggerOptions } from '@confluence-bot/shared'
import closeWithGrace from 'close-with-grace'
import { pino } from 'pino'
import { createIngest } from './ingest/index.ts'
import { startWorker } from './worker.ts'

// The worker process: configuration, logger, graceful shutdown. Everything else is worker.ts.

function configOrExit() {
  try {
    return loadWorkerConfig()
  } catch (err) {
    process.stderr.write(`confluence-bot worker: ${(err as Error).message}\n`)
    process.exit(1)
  }
}

const config = configOrExit()
const log = pino(loggerOptions({ level: config.LOG_LEVEL, service: 'worker' }))
const ingest = await createIngest(config, log)
const worker = await startWorker(config, log, ingest.registry)

closeWithGrace({ delay: config.SHUTDOWN_GRACE_MS }, async ({ signal, err }) => {
  /* c8 ignore next: only an uncaught exception brings `err`; tests stop the process by signal */
  if (err) log.error({ err }, 'shutting down after an error')
  log.info({ signal }, 'shutting down: finishing active jobs')
  await worker.close()
  await ingest.close()
})
