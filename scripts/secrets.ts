// `cnfl secrets rekey`: the step of a SECRETS_KEY rotation an operator can run and check. The
// worker re-encrypts at its start as well; this command says, by its exit code, whether every
// source's credentials are now under SECRETS_KEY, i.e. whether SECRETS_KEY_PREVIOUS can go.
import { parseArgs } from 'node:util'
import {
  createKeyring,
  type Env,
  loadWorkerConfig,
  redactUrl,
  rekeySourceSecrets,
} from '@confluence-bot/shared'
import { UsageError } from './ingest-usage.ts'
import { oneShotRedis } from './redis.ts'

export const SECRETS_USAGE = `Usage: cnfl secrets rekey

Encrypts every source's credentials in Redis under SECRETS_KEY: those stored in clear by an
earlier version and those under a key of SECRETS_KEY_PREVIOUS. Prints how many it re-encrypted
and each source whose credentials no configured key opens. Exit codes: 0 every source's
credentials are under SECRETS_KEY (SECRETS_KEY_PREVIOUS can be removed), 1 some are not or an
error, 2 usage. Reads REDIS_URL, SECRETS_KEY and SECRETS_KEY_PREVIOUS.
`

type Output = { write(text: string): unknown }

/** The command; `env` and `out` are the process's unless a test gives its own. */
export async function secrets(
  args: string[],
  env: Env = process.env,
  out: Output = process.stdout,
): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { help: { type: 'boolean', short: 'h' } },
  })
  if (values.help) {
    out.write(SECRETS_USAGE)
    return 0
  }
  if (positionals.length !== 1 || positionals[0] !== 'rekey') {
    throw new UsageError('cnfl secrets takes one command: rekey (cnfl secrets --help)')
  }
  const config = loadWorkerConfig(env)
  const keyring = createKeyring(config)
  if (keyring === undefined) {
    throw new Error(
      'SECRETS_KEY is not set: set the key to encrypt under, and the former ones in SECRETS_KEY_PREVIOUS',
    )
  }
  // A one-shot command: no waiting for a Redis that is not there.
  const redis = oneShotRedis(config.REDIS_URL)
  try {
    await redis.connect().catch(() => {
      throw new Error(`Redis at REDIS_URL=${redactUrl(config.REDIS_URL)} is unreachable`)
    })
    const report = await rekeySourceSecrets(redis, keyring)
    out.write(
      `key id ${keyring.current.id}: ${report.resealed.length} re-encrypted, ` +
        `${report.current.length} already under it, ${report.failed.length} unreadable\n`,
    )
    for (const failed of report.failed) out.write(`${failed.id}: ${failed.message}\n`)
    return report.failed.length === 0 ? 0 : 1
  } finally {
    redis.disconnect()
  }
}
