import {
  createKeyring,
  createSource,
  type Keyring,
  QUEUE_PREFIX,
  sealedEnvelope,
} from '@confluence-bot/shared'
import { Redis } from 'ioredis'
import t from 'tap'
import { secrets } from '../../scripts/secrets.ts'
import { runScript } from '../helpers/process.ts'
import { startRedis } from '../helpers/redis.ts'

// `cnfl secrets rekey`, the step of a SECRETS_KEY rotation an operator runs and checks: it
// seals records in clear and under SECRETS_KEY_PREVIOUS under SECRETS_KEY, names the sources
// no key opens (exit 1), and exits 0 once everything is under the current key.

const SECRETS = `${QUEUE_PREFIX}:source-secrets`
const OLD = Buffer.alloc(32, 11).toString('base64')
const NEW = Buffer.alloc(32, 12).toString('base64')
const LOST = Buffer.alloc(32, 13).toString('base64')
const TOKEN = 'cli-rekey-token-5Yh2'
const ring = (key: string) =>
  createKeyring({ SECRETS_KEY: key, SECRETS_KEY_PREVIOUS: '' }) as Keyring
const cnfl = (args: string[], env: Record<string, string>) =>
  runScript('scripts/cnfl.ts', args, { env: { LOG_LEVEL: 'silent', ...env } })

/** The command run in this process (its coverage counted), as cnfl runs it. */
async function rekey(env: Record<string, string>, args = ['rekey']) {
  let stdout = ''
  try {
    const code = await secrets(
      args,
      { LOG_LEVEL: 'silent', ...env },
      {
        write: (text: string) => {
          stdout += text
        },
      },
    )
    return { code, stdout, stderr: '' }
  } catch (err) {
    return { code: -1, stdout, stderr: `cnfl: ${(err as Error).message}` }
  }
}

t.test('cnfl secrets rekey', async (t) => {
  const server = await startRedis()
  t.teardown(() => server.stop())
  const redis = new Redis(server.url, { maxRetriesPerRequest: null })
  t.teardown(() => redis.disconnect())
  const site = {
    kind: 'cloud' as const,
    base_url: 'https://acme.atlassian.net/wiki',
    spaces: ['ENG'],
  }
  const auth = { type: 'bearer' as const, token: TOKEN }
  const sealed = (name: string, key: string) =>
    createSource(redis, { ...site, name, auth }, undefined, ring(key))
  /** As an earlier version stored it: in clear. */
  const clear = async (name: string) => {
    const spec = await createSource(redis, { ...site, name })
    await redis.hset(SECRETS, spec.id, JSON.stringify(auth))
    return spec
  }
  const underOld = await sealed('under the old key', OLD)
  const inClear = await clear('in clear')
  const lost = await sealed('under a lost key', LOST)

  const env = { REDIS_URL: server.url, SECRETS_KEY: NEW, SECRETS_KEY_PREVIOUS: OLD }
  const first = await rekey(env)
  t.equal(first.code, 1, 'a record no key opens: not done')
  const [summary, ...failures] = first.stdout.trimEnd().split('\n')
  t.equal(
    summary,
    `key id ${ring(NEW).current.id}: 2 re-encrypted, 0 already under it, 1 unreadable`,
  )
  t.equal(failures.length, 1)
  t.match(
    failures[0],
    new RegExp(
      `^${lost.id}: The credentials of source ${lost.id} were encrypted with key id ${ring(LOST).current.id}`,
    ),
  )
  for (const id of [underOld.id, inClear.id]) {
    t.equal(sealedEnvelope((await redis.hget(SECRETS, id)) as string)?.kid, ring(NEW).current.id)
  }
  for (const text of [first.stdout, first.stderr]) {
    for (const secret of [TOKEN, OLD, NEW, LOST]) t.notMatch(text, secret)
  }

  // The lost one registered again (here: removed); the old key can go.
  await redis.hdel(SECRETS, lost.id)
  // As an operator runs it: a real process.
  const real = await cnfl(['secrets', 'rekey'], env)
  t.equal(real.code, 0, real.stderr)
  t.match(real.stdout, /: 0 re-encrypted, 2 already under it, 0 unreadable\n$/)
  const second = await rekey({ REDIS_URL: server.url, SECRETS_KEY: NEW })
  t.equal(second.code, 0, second.stderr)
  t.match(second.stdout, /: 0 re-encrypted, 2 already under it, 0 unreadable\n$/)

  const noKey = await rekey({ REDIS_URL: server.url })
  t.equal(noKey.code, -1, 'an error: cnfl exits 1')
  t.match(noKey.stderr, /^cnfl: SECRETS_KEY is not set/)
  const badKey = await rekey({ SECRETS_KEY: 'not-a-key-hunter2' })
  t.equal(badKey.code, -1)
  t.match(badKey.stderr, /SECRETS_KEY is not a key/)
  t.notMatch(badKey.stderr, 'hunter2')
  const noRedis = await rekey({
    REDIS_URL: 'redis://:pw-8823@127.0.0.1:1',
    SECRETS_KEY: NEW,
  })
  t.equal(noRedis.code, -1)
  t.match(
    noRedis.stderr,
    /^cnfl: Redis at REDIS_URL=redis:\/\/:\*\*\*@127\.0\.0\.1:1 is unreachable/,
  )
  t.notMatch(noRedis.stderr, 'pw-8823')

  const usage = await cnfl(['secrets'], {})
  t.equal((await rekey({}, [])).code, -1)
  t.equal((await rekey({}, ['rekey', 'more'])).code, -1)
  t.equal((await rekey({}, ['--help'])).code, 0)
  t.equal(usage.code, 2)
  t.match(usage.stderr, /cnfl secrets takes one command: rekey/)
  const help = await cnfl(['secrets', '--help'], {})
  t.equal(help.code, 0)
  t.match(help.stdout, /^Usage: cnfl secrets rekey/)
})
