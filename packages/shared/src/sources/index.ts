import { randomBytes } from 'node:crypto'
import type { Redis } from 'ioredis'
import type { Logger } from 'pino'
import { QUEUE_PREFIX } from '../queues/index.ts'
import { type Keyring, openSecret, type SecretsError, sealSecret } from './secrets.ts'

// The registry of Confluence sources, kept in Redis next to the queues so the api (which
// registers them) and every worker (which syncs them) read one truth. Credentials live in a
// hash of their own: the source record that endpoints return and jobs reference never holds
// them, and job data only ever carries a source id. They are sealed with SECRETS_KEY
// (secrets.ts): what sits in Redis, its dumps and its replicas is ciphertext.

export type SourceKind = 'cloud' | 'datacenter' | 'export'

export type SourceAuth =
  | { type: 'basic'; username: string; token: string }
  | { type: 'bearer'; token: string }

export type SourceTls = {
  /** PEM bundle of the CA(s) that sign the server's certificate (added to the default roots). */
  ca_cert?: string
  /** false accepts any certificate for this source only; never the process-wide switch. */
  reject_unauthorized?: boolean
}

/** A registered source as stored and returned (never with its credentials). */
export type SourceSpec = {
  id: string
  name: string
  kind: SourceKind
  /** Cloud `https://acme.atlassian.net/wiki`, DC `https://wiki.acme.com/confluence`; '' for export. */
  base_url: string
  spaces: string[]
  cql?: string
  root_page_id?: string
  labels?: { include?: string[]; exclude?: string[] }
  /** Cron pattern of the periodic sync (a BullMQ Job Scheduler). */
  schedule?: string
  rate_limit?: { requests_per_second: number }
  tls?: SourceTls
  /** export only: the zip on disk (under EXPORTS_DIR). */
  export_path?: string
  created_at: string
}

export type SourceInput = Omit<SourceSpec, 'id' | 'created_at'> & { auth?: SourceAuth }

const SOURCES = `${QUEUE_PREFIX}:sources`
const NAMES = `${QUEUE_PREFIX}:source-names`
const SECRETS = `${QUEUE_PREFIX}:source-secrets`

export class SourceNameTakenError extends Error {
  override name = 'SourceNameTakenError'
}

/** A source's settings refused before anything is stored; the message names the field. */
export class SourceInputError extends Error {
  override name = 'SourceInputError'
}

/**
 * Why a source's `cql` could reach outside the parentheses it is wrapped in ('' when it cannot).
 * The worker sends `type = page AND space = "KEY" AND (cql)`: a `)` that closes more than the cql
 * opened, as in `title ~ "x") OR (space = "OTHER"`, would put pages of any space in scope. CQL
 * strings are quoted with `"` or `'`, a backslash escaping the next character; parentheses inside
 * them are text. An unterminated string would swallow the `)` that closes the wrapper.
 */
export function cqlProblem(cql: string): string {
  let depth = 0
  for (let i = 0; i < cql.length; i++) {
    const ch = cql[i]
    if (ch === '"' || ch === "'") {
      const start = i
      for (i++; i < cql.length && cql[i] !== ch; i++) {
        if (cql[i] === '\\') i++
      }
      if (i >= cql.length)
        return `has a string opened by ${ch} at position ${start + 1} that never closes`
    } else if (ch === '(') {
      depth++
    } else if (ch === ')' && --depth < 0) {
      return `has a ")" at position ${i + 1} that closes no "(" of its own`
    }
  }
  return depth > 0 ? `leaves ${depth} "(" unclosed` : ''
}

/**
 * Refuses a `cql` that could reach outside its parentheses (see cqlProblem); `field` names it
 * for the caller (`body/cql`).
 */
export function checkSourceCql(cql: string | undefined, field = 'cql'): void {
  const problem = cql === undefined ? '' : cqlProblem(cql)
  if (problem !== '') {
    throw new SourceInputError(
      `${field} ${problem}: it is ANDed with the source's spaces in parentheses, so its own must balance outside quoted strings`,
    )
  }
}

/** Credentials given while no SECRETS_KEY is set: they would have to be stored in clear. */
export class SecretsKeyMissingError extends Error {
  override name = 'SecretsKeyMissingError'
}

export function newSourceId(): string {
  return `src_${randomBytes(6).toString('hex')}`
}

/** The source record without anything secret, in a stable key order. */
export function publicSource(spec: SourceSpec): SourceSpec {
  const { tls, ...rest } = spec
  // A CA bundle is public data, but it is bulky; say that one is set instead of echoing it.
  return tls === undefined
    ? rest
    : {
        ...rest,
        tls: {
          ...(tls.ca_cert !== undefined ? { ca_cert: '(set)' } : {}),
          ...(tls.reject_unauthorized !== undefined
            ? { reject_unauthorized: tls.reject_unauthorized }
            : {}),
        },
      }
}

/**
 * Stores a source. Credentials (`input.auth`) are sealed with `keyring`; without one they are
 * refused (SecretsKeyMissingError) rather than stored in clear.
 */
export async function createSource(
  redis: Redis,
  input: SourceInput,
  id: string = newSourceId(),
  keyring?: Keyring,
): Promise<SourceSpec> {
  // Every way in (the api, the CLI) meets this check; the api runs it first to name its field.
  checkSourceCql(input.cql)
  const { auth, ...rest } = input
  if (auth !== undefined && keyring === undefined) {
    throw new SecretsKeyMissingError(
      "Source credentials are stored encrypted with SECRETS_KEY, which is not set: set it for the api and the worker (README: Configuration), or register the source without credentials to use the worker's CONFLUENCE_USERNAME / CONFLUENCE_TOKEN",
    )
  }
  const spec: SourceSpec = { id, ...rest, created_at: new Date().toISOString() }
  // The name is claimed first so two concurrent registrations of one name cannot both win.
  if ((await redis.hsetnx(NAMES, spec.name, id)) === 0) {
    throw new SourceNameTakenError(`A source named "${spec.name}" already exists`)
  }
  const tx = redis.multi().hset(SOURCES, id, JSON.stringify(spec))
  if (auth !== undefined)
    tx.hset(SECRETS, id, sealSecret(keyring as Keyring, id, JSON.stringify(auth)))
  await tx.exec()
  return spec
}

export async function getSource(redis: Redis, id: string): Promise<SourceSpec | undefined> {
  const raw = await redis.hget(SOURCES, id)
  return raw === null ? undefined : (JSON.parse(raw) as SourceSpec)
}

export async function listSources(redis: Redis): Promise<SourceSpec[]> {
  const all = await redis.hvals(SOURCES)
  return (
    all
      .map((raw) => JSON.parse(raw) as SourceSpec)
      // ISO times have one width: oldest first, and by id within one millisecond.
      .sort((a, b) => `${a.created_at} ${a.id}`.localeCompare(`${b.created_at} ${b.id}`))
  )
}

// Replaces a stored value only if it is still the one read: a source deleted (or re-sealed by
// another process) in between is left as it is, never resurrected.
const REPLACE_IF_SAME = `if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
end
return -1`

/** Whether credentials are registered with a source (without opening them). */
export async function hasSourceAuth(redis: Redis, id: string): Promise<boolean> {
  return (await redis.hexists(SECRETS, id)) === 1
}

/**
 * Opens a stored value and, when it is not sealed under the current key (stored in clear by an
 * earlier version, or under a previous key), seals it under the current one in place.
 * Returns the plaintext and whether it was re-sealed.
 */
async function openStored(
  redis: Redis,
  keyring: Keyring | undefined,
  id: string,
  raw: string,
): Promise<{ plaintext: string; resealed: boolean }> {
  const { plaintext, stale } = openSecret(keyring, id, raw, `The credentials of source ${id}`)
  if (!stale || keyring === undefined) return { plaintext, resealed: false }
  const sealed = sealSecret(keyring, id, plaintext)
  const replaced = (await redis.eval(REPLACE_IF_SAME, 1, SECRETS, id, raw, sealed)) !== -1
  return { plaintext, resealed: replaced }
}

/**
 * The credentials registered with a source, for the worker's client only. Throws SecretsError
 * (a message naming the source and the key ids, never a value) when they cannot be opened.
 */
export async function sourceAuth(
  redis: Redis,
  id: string,
  keyring?: Keyring,
): Promise<SourceAuth | undefined> {
  const raw = await redis.hget(SECRETS, id)
  if (raw === null) return undefined
  return JSON.parse((await openStored(redis, keyring, id, raw)).plaintext) as SourceAuth
}

export type RekeyReport = {
  /** Re-sealed under the current key (they were in clear or under a previous key). */
  resealed: string[]
  /** Already under the current key. */
  current: string[]
  /** Could not be opened with any configured key (with why; no value in it). */
  failed: { id: string; message: string }[]
}

/**
 * Seals every source's credentials under the keyring's current key: those stored in clear by an
 * earlier version and those under a key of SECRETS_KEY_PREVIOUS. Once `failed` is empty and
 * nothing is left under a previous key, SECRETS_KEY_PREVIOUS can go.
 */
export async function rekeySourceSecrets(redis: Redis, keyring: Keyring): Promise<RekeyReport> {
  const report: RekeyReport = { resealed: [], current: [], failed: [] }
  const all = await redis.hgetall(SECRETS)
  for (const id of Object.keys(all).sort()) {
    try {
      const { resealed } = await openStored(redis, keyring, id, all[id] as string)
      ;(resealed ? report.resealed : report.current).push(id)
    } catch (err) {
      report.failed.push({ id, message: (err as SecretsError).message })
    }
  }
  return report
}

/** Rewrites a source's record (not its name or credentials): e.g. an export's space key. */
export async function updateSource(redis: Redis, spec: SourceSpec): Promise<void> {
  if ((await redis.hexists(SOURCES, spec.id)) === 1) {
    await redis.hset(SOURCES, spec.id, JSON.stringify(spec))
  }
}

export async function removeSource(redis: Redis, spec: SourceSpec): Promise<void> {
  await redis.multi().hdel(SOURCES, spec.id).hdel(SECRETS, spec.id).hdel(NAMES, spec.name).exec()
}

/**
 * rekeySourceSecrets for a process starting up: logs what it did (counts and the ids it could
 * not open, never a value) and never throws. Nothing to do without a key.
 */
export async function resealInBackground(
  redis: Redis,
  keyring: Keyring | undefined,
  log: Pick<Logger, 'info' | 'warn' | 'error'>,
): Promise<void> {
  if (keyring === undefined) return
  try {
    const report = await rekeySourceSecrets(redis, keyring)
    const counts = {
      key_id: keyring.current.id,
      resealed: report.resealed.length,
      current: report.current.length,
    }
    if (report.failed.length === 0) log.info(counts, 'source credentials are encrypted')
    else
      log.error(
        { ...counts, failed: report.failed },
        'source credentials no configured key decrypts: their syncs fail until the key is set',
      )
  } catch (err) {
    log.warn({ err: (err as Error).message }, 'could not re-encrypt source credentials')
  }
}
