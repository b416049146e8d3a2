import { randomBytes } from 'node:crypto'
import type { Redis } from 'ioredis'
import { QUEUE_PREFIX } from '../queues/index.ts'

// The registry of Confluence sources, kept in Redis next to the queues so the api (which
// registers them) and every worker (which syncs them) read one truth. Credentials live in a
// hash of their own: the source record that endpoints return and jobs reference never holds
// them, and job data only ever carries a source id.

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

export async function createSource(
  redis: Redis,
  input: SourceInput,
  id: string = newSourceId(),
): Promise<SourceSpec> {
  // Every way in (the api, the CLI) meets this check; the api runs it first to name its field.
  checkSourceCql(input.cql)
  const { auth, ...rest } = input
  const spec: SourceSpec = { id, ...rest, created_at: new Date().toISOString() }
  // The name is claimed first so two concurrent registrations of one name cannot both win.
  if ((await redis.hsetnx(NAMES, spec.name, id)) === 0) {
    throw new SourceNameTakenError(`A source named "${spec.name}" already exists`)
  }
  const tx = redis.multi().hset(SOURCES, id, JSON.stringify(spec))
  if (auth !== undefined) tx.hset(SECRETS, id, JSON.stringify(auth))
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

/** The credentials registered with a source, for the worker's client only. */
export async function sourceAuth(redis: Redis, id: string): Promise<SourceAuth | undefined> {
  const raw = await redis.hget(SECRETS, id)
  return raw === null ? undefined : (JSON.parse(raw) as SourceAuth)
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
