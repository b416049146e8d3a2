import { rootCertificates } from 'node:tls'
import { isAllowedHost, type ResolveHost, SourceHostError } from '@confluence-bot/shared'
import type { Logger } from 'pino'
import { Agent, type Dispatcher, request } from 'undici'
import { confluenceErrors } from '../metrics.ts'
import { ConfluenceError } from './errors.ts'
import { type Limiter, sleep } from './limiter.ts'
import { pinnedLookup } from './lookup.ts'
import type { SourceAuth, SourceTls } from './types.ts'
import { checkBaseUrl, hostError, normalizeBaseUrl } from './urls.ts'

// One JSON GET for one source: auth header, the source's own TLS settings on its own connection
// pool (whose sockets connect only to addresses checked when they open), a per-request timeout, the shared rate limiter before every attempt, and the retry
// policy of reference §7. Nothing here logs or reports headers or credentials.

export type RetryOptions = {
  /** Attempts per request in all, the first included. */
  attempts: number
  /** Backoff: a random wait up to min(capMs, baseMs · 2^(retry − 1)) ("full jitter"). */
  baseMs: number
  capMs: number
  /** Retries of a 403 (Cloud answers 403 now and then for a moment) before it is final. */
  forbiddenRetries: number
  /** Retries of a 500 (and other 5xx not known to be transient). */
  serverErrorRetries: number
  /**
   * The longest Retry-After (429/503) sat out within a request. A wait holds the job, one of its
   * queue's concurrency slots (shared with purge and maintain) and the worker's shutdown, so it is
   * kept to what the client already waits on its own: the backoff's cap, which is also the
   * default CONFLUENCE_TIMEOUT_MS a single request may take. A longer one fails the attempt with a
   * retryable error naming it, and the job's own backoff (which holds nothing) retries later.
   */
  maxWaitMs: number
}

export const DEFAULT_RETRY: RetryOptions = {
  attempts: 5,
  baseMs: 1_000,
  capMs: 60_000,
  forbiddenRetries: 2,
  serverErrorRetries: 1,
  maxWaitMs: 60_000,
}

export type HttpOptions = {
  baseUrl: string
  auth?: SourceAuth | undefined
  tls?: SourceTls | undefined
  /** Per attempt, headers and body; 0 = none. */
  timeoutMs: number
  /** CONFLUENCE_ALLOWED_HOSTS, checked before the first request and on every connection. */
  allowedHosts: string
  /** Tests stub DNS; dns.lookup otherwise. */
  resolve?: ResolveHost | undefined
  limiter: Limiter
  log?: Logger | undefined
  /** The source id its error counts are labelled with (the host when not given). */
  source?: string | undefined
  retry?: Partial<RetryOptions> | undefined
}

export type ConfluenceHttp = {
  /** The base URL without trailing slash (Cloud `…/wiki`, DC with its context path). */
  readonly base: string
  /** Host name for messages. */
  readonly host: string
  /** GETs an absolute URL on the source's origin and parses the JSON answer. */
  getJson<T>(url: string, signal?: AbortSignal): Promise<T>
  close(): Promise<void>
}

const MAX_CONNECTIONS = 4
const DETAIL_MAX = 300

type Answer = { status: number; headers: Dispatcher.ResponseData['headers']; text: string }

/** What one failed attempt means: the error to throw if it is the last, and how to wait. */
type Failure = { error: ConfluenceError; retry: boolean; waitMs?: number; pause?: boolean }

function header(headers: Answer['headers'], name: string): string | undefined {
  const value = headers[name]
  return Array.isArray(value) ? value[0] : value
}

/** Retry-After in ms: delta seconds or an HTTP date; undefined when absent or unreadable. */
export function parseRetryAfter(value: string | undefined, now = Date.now()): number | undefined {
  if (value === undefined) return undefined
  const text = value.trim()
  if (/^\d+(\.\d+)?$/.test(text)) return Number(text) * 1000
  const at = Date.parse(text)
  return Number.isNaN(at) ? undefined : Math.max(0, at - now)
}

/** The server's own words from an error body: v2 `{errors:[{title,detail}]}`, v1 `{message}`. */
export function errorDetail(contentType: string | undefined, text: string): string {
  if (!/json/i.test(contentType ?? '')) return ''
  let body: unknown
  try {
    body = JSON.parse(text)
  } catch {
    return ''
  }
  if (typeof body !== 'object' || body === null) return ''
  const { errors, message } = body as { errors?: unknown; message?: unknown }
  const parts: string[] = []
  if (Array.isArray(errors)) {
    for (const item of errors as Array<{ title?: unknown; detail?: unknown }>) {
      for (const part of [item?.title, item?.detail]) if (typeof part === 'string') parts.push(part)
    }
  }
  if (typeof message === 'string') parts.push(message)
  const detail = parts.join(' ').replace(/\s+/g, ' ').trim()
  return detail.length > DETAIL_MAX ? `${detail.slice(0, DETAIL_MAX)}…` : detail
}

/** A Node/undici error code such as ECONNRESET, UND_ERR_SOCKET or DEPTH_ZERO_SELF_SIGNED_CERT. */
function errorCode(err: unknown): string {
  return String((err as { code?: unknown }).code)
}

function authHeader(auth: SourceAuth | undefined): string | undefined {
  if (!auth) return undefined
  if (auth.type === 'bearer') return `Bearer ${auth.token}`
  return `Basic ${Buffer.from(`${auth.username}:${auth.token}`).toString('base64')}`
}

export function createHttp(options: HttpOptions): ConfluenceHttp {
  const base = normalizeBaseUrl(options.baseUrl)
  const parsedBase = new URL(base)
  const origin = parsedBase.origin
  const host = parsedBase.host
  const retry = { ...DEFAULT_RETRY, ...options.retry }
  const { limiter, log, timeoutMs } = options
  const source = options.source ?? host
  const secret = options.auth?.token
  const headers: Record<string, string> = {
    accept: 'application/json',
    'user-agent': 'confluence-bot',
  }
  const authorization = authHeader(options.auth)
  if (authorization !== undefined) headers.authorization = authorization

  const connect: Record<string, unknown> = {
    lookup: pinnedLookup({
      allowed: isAllowedHost(base, options.allowedHosts),
      allowAs: host,
      resolve: options.resolve,
    }),
  }
  if (options.tls?.ca_cert) connect.ca = [...rootCertificates, options.tls.ca_cert]
  if (options.tls?.reject_unauthorized === false) connect.rejectUnauthorized = false
  const agent = new Agent({
    connections: MAX_CONNECTIONS,
    connect,
    // The AbortSignal below bounds each attempt; these only keep undici's own defaults (300 s)
    // from outliving a longer configured timeout.
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs,
  })

  let checked: Promise<void> | undefined
  function ready(): Promise<void> {
    // Remembered only once it passed, so a DNS hiccup does not stick.
    checked ??= checkBaseUrl(base, options.allowedHosts, options.resolve).catch((err: unknown) => {
      checked = undefined
      throw err
    })
    return checked
  }

  /** Server-provided text may quote the request; make sure the token never rides along. */
  function scrub(text: string): string {
    return secret ? text.split(secret).join('***') : text
  }

  function fail(
    code: ConstructorParameters<typeof ConfluenceError>[0],
    message: string,
    status?: number,
    fatal?: boolean,
  ): ConfluenceError {
    const opts: { status?: number; fatal?: boolean } = {}
    if (status !== undefined) opts.status = status
    if (fatal !== undefined) opts.fatal = fatal
    return new ConfluenceError(code, scrub(message), opts)
  }

  function backoff(retryNumber: number): number {
    return Math.random() * Math.min(retry.capMs, retry.baseMs * 2 ** (retryNumber - 1))
  }

  async function once(url: URL, signal: AbortSignal | undefined): Promise<Answer | Failure> {
    const timeout = timeoutMs > 0 ? AbortSignal.timeout(timeoutMs) : undefined
    const signals = [signal, timeout].filter((s): s is AbortSignal => s !== undefined)
    const combined = signals.length > 1 ? AbortSignal.any(signals) : signals[0]
    const path = url.pathname
    try {
      const res = await request(url, {
        dispatcher: agent,
        method: 'GET',
        headers,
        ...(combined ? { signal: combined } : {}),
      })
      const text = await res.body.text()
      return { status: res.statusCode, headers: res.headers, text }
    } catch (err) {
      if (signal?.aborted) throw signal.reason
      if (timeout?.aborted) {
        const message = `Confluence at ${host} did not answer GET ${path} within ${timeoutMs} ms: raise CONFLUENCE_TIMEOUT_MS or check the server`
        return { error: fail('timeout', message), retry: true }
      }
      // The connection's own check refused the address DNS gave (lookup.ts).
      if (err instanceof SourceHostError) {
        const error = hostError(err)
        return { error, retry: !error.fatal }
      }
      const code = errorCode(err)
      if (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER|ERR_TLS/.test(code)) {
        const message = `The TLS certificate of Confluence at ${host} is not trusted (${code}): give the source's tls.ca_cert (the CA that signs it)`
        return { error: fail('network', message, undefined, true), retry: false }
      }
      if (code === 'ENOTFOUND') {
        const message = `The host of Confluence at ${host} does not resolve (ENOTFOUND): check the source's base_url`
        return { error: fail('network', message, undefined, true), retry: false }
      }
      return {
        error: fail('network', `Could not reach Confluence at ${host} for GET ${path} (${code})`),
        retry: true,
      }
    }
  }

  /** Turns an HTTP answer into the parsed body or a Failure (reference §7). */
  function judge(url: URL, answer: Answer, counts: { forbidden: number; server: number }) {
    const { status } = answer
    const path = url.pathname
    const type = header(answer.headers, 'content-type')
    if (status >= 200 && status < 300) {
      try {
        return { value: JSON.parse(answer.text) as unknown }
      } catch {
        if (/json/i.test(String(type))) {
          const message = `Confluence at ${host} sent a cut-off JSON answer to GET ${path}`
          return { error: fail('network', message, status), retry: true }
        }
        const message = `Confluence at ${host} answered GET ${path} with something other than JSON: check the source's base_url (a login page or proxy in front of Confluence?)`
        return { error: fail('bad_request', message, status), retry: false }
      }
    }
    const detail = errorDetail(type, answer.text)
    const said = detail === '' ? `${status}` : `${status}: ${detail}`
    if (status === 401) {
      const denied = header(answer.headers, 'x-authentication-denied-reason') ?? ''
      const captcha = /captcha/i.test(denied)
        ? '; it now asks for a CAPTCHA, so log in once through the browser as that user'
        : ''
      const message = `Confluence at ${host} refused the credentials (${said}): check the source's username/token${captcha}`
      return { error: fail('auth', message, status), retry: false }
    }
    if (status === 403) {
      counts.forbidden++
      const message = `Confluence at ${host} forbids GET ${path} (${said}): check that the source's user may read these spaces and that its authentication method is enabled`
      return {
        error: fail('forbidden', message, status),
        retry: counts.forbidden <= retry.forbiddenRetries,
      }
    }
    if (status === 404) {
      const message = `Confluence at ${host} has no ${path} or hides it from the source's user (${said}): check the source's base_url, space keys and page ids`
      return { error: fail('not_found', message, status), retry: false }
    }
    if (status === 410) {
      const message = `Confluence at ${host} has removed GET ${path} (${said})`
      return { error: fail('gone', message, status), retry: false }
    }
    if (status === 429 || status === 503) {
      const code = status === 429 ? 'rate_limited' : 'unavailable'
      const retryAfter = parseRetryAfter(header(answer.headers, 'retry-after'))
      if (retryAfter !== undefined && retryAfter > retry.maxWaitMs) {
        const hint =
          status === 429
            ? `; if it keeps happening, lower the source's rate_limit.requests_per_second or CONFLUENCE_REQUESTS_PER_SECOND`
            : ''
        const message = `Confluence at ${host} answered GET ${path} with ${status} and Retry-After: ${Math.ceil(retryAfter / 1000)} s, more than the ${Math.ceil(retry.maxWaitMs / 1000)} s a request waits: this attempt fails and the job is retried later${hint}`
        return { error: fail(code, message, status), retry: false }
      }
      const message =
        status === 429
          ? `Confluence at ${host} kept rate-limiting GET ${path} (429): lower the source's rate_limit.requests_per_second or CONFLUENCE_REQUESTS_PER_SECOND`
          : `Confluence at ${host} stayed unavailable for GET ${path} (503)`
      const failure: Failure = {
        error: fail(code, message, status),
        retry: true,
        pause: true,
      }
      if (retryAfter !== undefined) failure.waitMs = retryAfter
      return failure
    }
    if (status === 502 || status === 504) {
      const message = `Confluence at ${host} stayed unavailable for GET ${path} (${said})`
      return { error: fail('unavailable', message, status), retry: true }
    }
    if (status >= 500) {
      counts.server++
      const message = `Confluence at ${host} failed on GET ${path} (${said})`
      return {
        error: fail('unavailable', message, status),
        retry: counts.server <= retry.serverErrorRetries,
      }
    }
    if (status >= 300 && status < 400) {
      const location = header(answer.headers, 'location')
      let to = ''
      try {
        to = location === undefined ? '' : ` to ${new URL(location, url).host}`
      } catch {}
      const message = `Confluence at ${host} redirected GET ${path}${to} (${status}): check the source's base_url (single sign-on or a proxy in front of Confluence?)`
      return { error: fail('bad_request', message, status), retry: false }
    }
    const message = `Confluence at ${host} rejected GET ${path} (${said}): check the source's cql, labels and root page`
    return { error: fail('bad_request', message, status), retry: false }
  }

  async function getJson<T>(link: string, signal?: AbortSignal): Promise<T> {
    const url = new URL(link)
    if (url.origin !== origin) {
      // Links come from the server; credentials go to the configured origin only.
      throw fail('bad_request', `Confluence at ${host} linked to another site (${url.host})`)
    }
    await ready()
    const counts = { forbidden: 0, server: 0 }
    let attempt = 0
    let failure: Failure
    do {
      attempt++
      await limiter.acquire(signal)
      const started = performance.now()
      const answer = await once(url, signal)
      const outcome = 'error' in answer ? answer : judge(url, answer, counts)
      const fields = { host, path: url.pathname, attempt }
      if ('status' in answer) {
        log?.debug(
          { ...fields, status: answer.status, ms: Math.round(performance.now() - started) },
          'confluence request',
        )
      }
      if ('value' in outcome) return outcome.value as T
      failure = outcome
      confluenceErrors.inc({ source, code: failure.error.code })
      if (failure.retry && attempt < retry.attempts) {
        const waitMs = Math.max(failure.waitMs ?? 0, backoff(attempt))
        log?.warn(
          {
            ...fields,
            status: failure.error.status,
            code: failure.error.code,
            waitMs: Math.round(waitMs),
          },
          'confluence request failed; retrying',
        )
        // A 429/503 holds back every worker of this source; other failures only this request.
        if (failure.pause) await limiter.pauseFor(waitMs)
        else await sleep(waitMs, signal)
      }
    } while (failure.retry && attempt < retry.attempts)
    if (attempt > 1) failure.error.message += ` after ${attempt} attempts`
    throw failure.error
  }

  // Closing twice is harmless (a caller that hands the source on may close it too).
  let closed: Promise<void> | undefined
  return {
    base,
    host,
    getJson,
    close: () => {
      closed ??= agent.close()
      return closed
    },
  }
}

/** Runs fn over items with at most `limit` calls in flight; results keep the input order. */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<R>,
): Promise<R[]> {
  const results = new Array<R>(items.length)
  let next = 0
  let failed = false
  async function lane(): Promise<void> {
    while (next < items.length && !failed) {
      const index = next++
      try {
        results[index] = await fn(items[index] as T)
      } catch (err) {
        failed = true // the other lanes stop taking new items
        throw err
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane))
  return results
}
