import { readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import {
  ConfigError,
  createKeyring,
  createSource,
  decodeSecretsKey,
  generateSecretsKey,
  hasSourceAuth,
  type Keyring,
  loadApiConfig,
  loadWorkerConfig,
  loggerOptions,
  openSecret,
  QUEUE_PREFIX,
  rekeySourceSecrets,
  removeSource,
  resealInBackground,
  SecretsError,
  SecretsKeyMissingError,
  sealedEnvelope,
  sealSecret,
  secretsKeyFile,
  secretsKeyProblems,
  sourceAuth,
} from '@confluence-bot/shared'
import { Redis } from 'ioredis'
import { pino } from 'pino'
import t from 'tap'
import { tempDir } from '../helpers/api.ts'
import { startRedis } from '../helpers/redis.ts'

// Source credentials at rest: sealed with AES-256-GCM under SECRETS_KEY, opened with it or a key
// of SECRETS_KEY_PREVIOUS, records in clear from earlier versions read and sealed, and every
// failure a message that names key ids and the source, never a value.

const SECRETS = `${QUEUE_PREFIX}:source-secrets`
const KEY_A = Buffer.alloc(32, 1).toString('base64')
const KEY_B = Buffer.alloc(32, 2).toString('hex')
const KEY_C = generateSecretsKey()
const ring = (current: string, previous = ''): Keyring =>
  createKeyring({ SECRETS_KEY: current, SECRETS_KEY_PREVIOUS: previous }) as Keyring
const TOKEN = 'ATATT-very-secret-token-1234'
const auth = { type: 'basic' as const, username: 'bot@acme.test', token: TOKEN }
const source = (name: string) => ({
  name,
  kind: 'cloud' as const,
  base_url: 'https://acme.atlassian.net/wiki',
  spaces: ['ENG'],
  auth,
})

t.test(
  'keys: base64 (standard or url-safe) or hex, 32 bytes; problems never quote them',
  async (t) => {
    t.equal(decodeSecretsKey(KEY_A)?.length, 32)
    t.equal(decodeSecretsKey(` ${KEY_B} `)?.length, 32, 'hex, trimmed')
    const urlSafe = Buffer.alloc(32, 0xfb).toString('base64url')
    t.strictSame(decodeSecretsKey(urlSafe), Buffer.alloc(32, 0xfb), 'url-safe base64')
    t.equal(decodeSecretsKey(KEY_C)?.length, 32, 'a generated key is one')
    t.equal(decodeSecretsKey('too-short'), undefined)
    t.equal(decodeSecretsKey('a'.repeat(44)), undefined, '44 base64 digits: 33 bytes')
    t.equal(decodeSecretsKey(Buffer.alloc(31).toString('base64')), undefined, '31 bytes')

    t.strictSame(secretsKeyProblems('', ''), [])
    t.strictSame(secretsKeyProblems(KEY_A, `${KEY_B}, ${KEY_C}`), [])
    const secret = 'my passphrase is not a key'
    const problems = secretsKeyProblems(secret, `${KEY_B},${secret}`)
    t.equal(problems.length, 2)
    t.match(problems[0], /^SECRETS_KEY is not a key \(.*openssl rand -base64 32.*value not shown\)/)
    t.match(problems[1], /^SECRETS_KEY_PREVIOUS key #2 is not a key/)
    t.match(secretsKeyProblems('', KEY_B), ['SECRETS_KEY_PREVIOUS is set without SECRETS_KEY'])
    for (const p of problems) t.notMatch(p, secret)

    // Both services refuse a bad key at start, through ConfigError, naming the variable only.
    for (const load of [loadApiConfig, loadWorkerConfig]) {
      t.throws(() => load({ SECRETS_KEY: secret }), ConfigError)
      try {
        load({ SECRETS_KEY: secret })
      } catch (err) {
        t.match((err as Error).message, /SECRETS_KEY is not a key/)
        t.notMatch((err as Error).message, secret)
      }
      t.equal(load({ SECRETS_KEY: KEY_A }).SECRETS_KEY, KEY_A)
    }
  },
)

t.test('keyring: none without SECRETS_KEY; ids identify keys without revealing them', async (t) => {
  t.equal(createKeyring({ SECRETS_KEY: '', SECRETS_KEY_PREVIOUS: '' }), undefined)
  const keyring = ring(KEY_A, `${KEY_B}, ,${KEY_C}`)
  t.equal(keyring.previous.length, 2)
  t.match(keyring.current.id, /^[0-9a-f]{16}$/)
  t.not(keyring.current.id, keyring.previous[0]?.id)
  t.equal(ring(KEY_A).current.id, keyring.current.id, 'an id depends on the key alone')
  t.notMatch(keyring.current.id, Buffer.from(KEY_A, 'base64').toString('hex').slice(0, 16))
})

t.test('seal and open: random IV, bound to the owner, tampering detected', async (t) => {
  const keyring = ring(KEY_A)
  const one = sealSecret(keyring, 'src_1', TOKEN)
  const two = sealSecret(keyring, 'src_1', TOKEN)
  t.not(one, two, 'a fresh IV each time')
  t.notMatch(one, TOKEN)
  t.notMatch(one, Buffer.from(TOKEN).toString('base64'))
  t.match(sealedEnvelope(one), { v: 'cnfl-sealed-v1', kid: keyring.current.id })
  t.strictSame(openSecret(keyring, 'src_1', one, 'x'), { plaintext: TOKEN, stale: false })

  const what = 'The credentials of source src_1'
  const moved = () => openSecret(keyring, 'src_2', one, what)
  t.throws(moved, { name: 'SecretsError', message: /do not decrypt with key id [0-9a-f]{16}/ })
  const envelope = sealedEnvelope(one) as NonNullable<ReturnType<typeof sealedEnvelope>>
  const flipped = Buffer.from(envelope.data, 'base64')
  flipped[0] = (flipped[0] as number) ^ 1
  const tampered = JSON.stringify({ ...envelope, data: flipped.toString('base64') })
  t.throws(() => openSecret(keyring, 'src_1', tampered, what), SecretsError)
  const badIv = JSON.stringify({ ...envelope, iv: '' })
  t.throws(() => openSecret(keyring, 'src_1', badIv, what), /do not decrypt/)

  // In clear (an earlier version): returned as it is, stale, with or without a key.
  t.strictSame(openSecret(keyring, 'src_1', '{"type":"bearer"}', what), {
    plaintext: '{"type":"bearer"}',
    stale: true,
  })
  t.equal(sealedEnvelope('not json'), undefined)
  t.equal(sealedEnvelope('null'), undefined)
  t.strictSame(openSecret(undefined, 'src_1', 'plain', what), { plaintext: 'plain', stale: true })

  // Under a previous key: opened, stale. Under an unknown key, or without any key: why, no value.
  t.strictSame(openSecret(ring(KEY_B, KEY_A), 'src_1', one, what), {
    plaintext: TOKEN,
    stale: true,
  })
  t.throws(() => openSecret(ring(KEY_B), 'src_1', one, what), {
    message: new RegExp(
      `^${what} were encrypted with key id ${keyring.current.id}, which is neither SECRETS_KEY \\(key id ${ring(KEY_B).current.id}\\) nor in SECRETS_KEY_PREVIOUS`,
    ),
  })
  t.throws(() => openSecret(undefined, 'src_1', one, what), {
    message: `${what} are encrypted, but SECRETS_KEY is not set: set the key they were encrypted with (key id ${keyring.current.id})`,
  })
})

t.test('the key file of a one-machine install', async (t) => {
  const dir = await tempDir(t, 'cnfl-secrets-')
  const file = join(dir, 'data', 'secrets.key')
  const first = secretsKeyFile(file)
  t.equal(first.created, true)
  t.equal(decodeSecretsKey(first.key)?.length, 32)
  t.equal(statSync(file).mode & 0o777, 0o600, 'readable by its owner only')
  t.strictSame(secretsKeyFile(file), { key: first.key, created: false }, 'read back, not replaced')
  writeFileSync(file, 'hunter2-not-a-key\n')
  t.throws(() => secretsKeyFile(file), { name: 'SecretsError', message: /holds no secrets key/ })
  try {
    secretsKeyFile(file)
  } catch (err) {
    t.notMatch((err as Error).message, 'hunter2')
  }
  t.throws(() => secretsKeyFile(dir), { code: 'EISDIR' }, 'other errors pass through')
  t.equal(readFileSync(file, 'utf8'), 'hunter2-not-a-key\n', 'a bad file is never overwritten')
})

t.test('sources in Redis: sealed, migrated, rotated, refused without a key', async (t) => {
  const server = await startRedis()
  t.teardown(() => server.stop())
  const redis = new Redis(server.url, { maxRetriesPerRequest: null })
  t.teardown(() => redis.disconnect())
  const a = ring(KEY_A)

  await t.rejects(createSource(redis, source('no key')), SecretsKeyMissingError)
  t.equal(await redis.hlen(`${QUEUE_PREFIX}:source-names`), 0, 'nothing claimed when refused')
  const keyless = await createSource(redis, { ...source('no creds'), auth: undefined })
  t.equal(await hasSourceAuth(redis, keyless.id), false)
  t.equal(await sourceAuth(redis, keyless.id, a), undefined)

  const spec = await createSource(redis, source('sealed'), undefined, a)
  t.equal(await hasSourceAuth(redis, spec.id), true)
  const stored = (await redis.hget(SECRETS, spec.id)) as string
  t.notMatch(stored, TOKEN)
  t.notMatch(stored, 'bot@acme.test')
  t.strictSame(await sourceAuth(redis, spec.id, a), auth)
  t.equal(await redis.hget(SECRETS, spec.id), stored, 'a current record is not rewritten')

  // An earlier version's record in clear: still read, and sealed as it is read.
  const legacy = await createSource(redis, { ...source('legacy'), auth: undefined })
  await redis.hset(SECRETS, legacy.id, JSON.stringify(auth))
  t.strictSame(await sourceAuth(redis, legacy.id), auth, 'without a key: read, left as is')
  t.equal(await redis.hget(SECRETS, legacy.id), JSON.stringify(auth))
  t.strictSame(await sourceAuth(redis, legacy.id, a), auth)
  const migrated = (await redis.hget(SECRETS, legacy.id)) as string
  t.notMatch(migrated, TOKEN)
  t.equal(sealedEnvelope(migrated)?.kid, a.current.id)

  // Rotation: B is the key now, A previous. A read re-seals under B; so does a rekey pass.
  const b = ring(KEY_B, KEY_A)
  t.strictSame(await sourceAuth(redis, legacy.id, b), auth)
  t.equal(sealedEnvelope((await redis.hget(SECRETS, legacy.id)) as string)?.kid, b.current.id)
  const plain = await createSource(redis, { ...source('plain again'), auth: undefined })
  await redis.hset(SECRETS, plain.id, JSON.stringify({ type: 'bearer', token: TOKEN }))
  const report = await rekeySourceSecrets(redis, b)
  t.strictSame(report, {
    resealed: [spec.id, plain.id].sort(),
    current: [legacy.id],
    failed: [],
  })
  const after = await redis.hgetall(SECRETS)
  for (const value of Object.values(after)) {
    t.equal(sealedEnvelope(value)?.kid, b.current.id)
    t.notMatch(value, TOKEN)
  }
  // Once rekeyed, A can go: everything opens with B alone.
  t.strictSame(await sourceAuth(redis, spec.id, ring(KEY_B)), auth)

  // A key that is not among the configured ones: refused with why, in a rekey report too.
  const c = ring(KEY_C)
  await t.rejects(sourceAuth(redis, spec.id, c), { name: 'SecretsError', message: /key id/ })
  const wrong = await rekeySourceSecrets(redis, c)
  t.equal(wrong.failed.length, 3)
  for (const f of wrong.failed) {
    t.match(f.message, /^The credentials of source src_[0-9a-f]{12} were encrypted with key id/)
  }

  // A source removed between the read and the re-seal is not brought back by it.
  const gone = await createSource(redis, { ...source('gone'), auth: undefined })
  await redis.hset(SECRETS, gone.id, JSON.stringify(auth))
  const racing = sourceAuth(redis, gone.id, b)
  await removeSource(redis, gone)
  await racing
  t.equal(await hasSourceAuth(redis, gone.id), false)
})

t.test(
  'resealInBackground logs counts and failures, never a value, and never throws',
  async (t) => {
    const server = await startRedis()
    t.teardown(() => server.stop())
    const redis = new Redis(server.url, { maxRetriesPerRequest: null })
    t.teardown(() => redis.disconnect())
    const lines: Array<[string, unknown, string]> = []
    const log = {
      info: (o: unknown, m: string) => lines.push(['info', o, m]),
      warn: (o: unknown, m: string) => lines.push(['warn', o, m]),
      error: (o: unknown, m: string) => lines.push(['error', o, m]),
    }
    await resealInBackground(redis, undefined, log as never)
    t.strictSame(lines, [], 'nothing to do without a key')

    const a = ring(KEY_A)
    const spec = await createSource(redis, { ...source('one'), auth: undefined })
    await redis.hset(SECRETS, spec.id, JSON.stringify(auth))
    await resealInBackground(redis, a, log as never)
    t.match(lines.shift(), [
      'info',
      { key_id: a.current.id, resealed: 1, current: 0 },
      'source credentials are encrypted',
    ])
    await resealInBackground(redis, ring(KEY_B), log as never)
    const [level, fields, message] = lines.shift() as [string, unknown, string]
    t.equal(level, 'error')
    t.match(fields, { resealed: 0, current: 0, failed: [{ id: spec.id }] })
    t.match(message, /no configured key decrypts/)
    t.notMatch(JSON.stringify(fields), TOKEN)

    const closed = new Redis(server.url, { lazyConnect: true, maxRetriesPerRequest: 0 })
    closed.disconnect()
    await resealInBackground(closed, a, log as never)
    t.match(lines.shift(), ['warn', { err: String }, 'could not re-encrypt source credentials'])
  },
)

t.test('a logged config object never shows the keys or the default token', async (t) => {
  const lines: string[] = []
  const log = pino(loggerOptions({ level: 'info', service: 'test' }), {
    write: (line: string) => lines.push(line),
  })
  const config = loadWorkerConfig({
    SECRETS_KEY: KEY_A,
    SECRETS_KEY_PREVIOUS: KEY_B,
    CONFLUENCE_TOKEN: TOKEN,
  })
  log.info({ config }, 'config')
  log.info({ ...config }, 'flat')
  t.equal(lines.length, 2)
  for (const line of lines) {
    t.notMatch(line, KEY_A)
    t.notMatch(line, KEY_B)
    t.notMatch(line, TOKEN)
  }
})
