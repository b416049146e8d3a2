import { ConfigError, loadWorkerConfig, loggerOptions } from '@confluence-bot/shared'
import closeWithGrace from 'close-with-grace'
import { pino } from 'pino'
import { startWorker } from './worker.ts'

// The worker process: configuration, logger, graceful shutdown. Everything else is worker.ts.

function configOrExit() {
  try {
    return loadWorkerConfig()
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    process.stderr.write(`confluence-bot worker: ${err.message}\n`)
    process.exit(1)
  }
}

const config = configOrExit()
const log = pino(loggerOptions({ level: config.LOG_LEVEL, service: 'worker' }))
const worker = await startWorker(config, log)

closeWithGrace({ delay: config.SHUTDOWN_GRACE_MS }, async ({ signal, err }) => {
  if (err) log.error({ err }, 'shutting down after an error')
  else log.info({ signal }, 'shutting down: finishing active jobs')
  await worker.close()
})
