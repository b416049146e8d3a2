import { authEnabled, loadApiConfig, loggerOptions } from '@confluence-bot/shared'
import closeWithGrace from 'close-with-grace'
import { buildApp } from './app.ts'

// The API process: configuration, logger, graceful shutdown, listen. Everything else is app.ts.

function configOrExit() {
  try {
    return loadApiConfig()
  } catch (err) {
    process.stderr.write(`confluence-bot api: ${(err as Error).message}\n`)
    process.exit(1)
  }
}

const config = configOrExit()
const app = buildApp({ config, logger: loggerOptions({ level: config.LOG_LEVEL, service: 'api' }) })

if (!authEnabled(config)) {
  app.log.warn(
    'AUTH IS OFF: no API_KEYS or ADMIN_API_KEYS are set, so anyone who can reach this port ' +
      'may use every route. Set keys before exposing the API beyond this machine.',
  )
}

closeWithGrace({ delay: config.SHUTDOWN_GRACE_MS }, async ({ signal, err }) => {
  /* c8 ignore next: only an uncaught exception brings `err`; tests stop the process by signal */
  if (err) app.log.error({ err }, 'shutting down after an error')
  app.log.info({ signal }, 'shutting down')
  app.readiness.shuttingDown = true
  await app.close()
})

await app.listen({ host: config.HOST, port: config.PORT })
