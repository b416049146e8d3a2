import { AppError, ErrorCode, ollamaTarget, redactUrl, scrub } from '@confluence-bot/shared'
import type { Dispatcher } from 'undici'
import { Pool } from 'undici'
import { countAnswerStopped, countOllamaError } from './metrics.ts'

// The gateway's HTTP client for Ollama: one keep-alive pool, bytes passed through untouched.
// A connect timeout applies, but no general headers or body timeout: a model may take minutes
// to load (Ollama sends no headers until then) and a pull may stream for an hour. Only calls that
// load no model (GET, a blob's HEAD, a create's answer once its small JSON body is sent) wait at
// most OLLAMA_RESPONSE_TIMEOUT_MS for the answer to begin: an Ollama that accepts connections
// but never answers must not hang them.
// OLLAMA_URL may carry the gateway's own credential for an Ollama behind a proxy: user info
// (`http://user:pass@host`) goes out as `Authorization: Basic` and a query (`?token=…`) is kept
// on every request; neither is ever printed (`url` is redacted).

export type UpstreamResponse = Dispatcher.ResponseData

const CONNECTION_ERRORS = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ETIMEDOUT',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
])

/** Paths whose answer begins at once even on a busy Ollama (no model is loaded for them). */
const BOUNDED_POSTS = new Set(['/api/create'])

export class OllamaUpstream {
  /** OLLAMA_URL with its password and query values hidden. */
  readonly url: string
  /** Hides OLLAMA_URL's credential in text that came from upstream. */
  readonly scrub: (text: string) => string
  readonly #pool: Pool
  readonly #basePath: string
  readonly #query: string
  readonly #headers: Record<string, string>
  readonly #answerMaxMs: number
  readonly #responseMs: number

  constructor(
    url: string,
    options: {
      connectTimeoutMs: number
      connections?: number
      /** ANSWER_MAX_MS: how long an answer may run (0: no limit). */
      answerMaxMs: number
      /** OLLAMA_RESPONSE_TIMEOUT_MS: how long a call that loads no model waits for headers. */
      responseTimeoutMs: number
    },
  ) {
    const target = ollamaTarget(url)
    this.url = redactUrl(url)
    this.scrub = (text: string) => scrub(target, text)
    this.#basePath = target.basePath
    this.#query = target.query
    this.#headers = target.headers
    this.#answerMaxMs = options.answerMaxMs
    this.#responseMs = options.responseTimeoutMs
    this.#pool = new Pool(target.origin, {
      connections: options.connections ?? 128,
      headersTimeout: 0,
      bodyTimeout: 0,
      connect: { timeout: options.connectTimeoutMs },
    })
  }

  /** POSTs JSON to an Ollama path; connection failures become 503 ollama_unavailable. */
  post(path: string, payload: unknown, signal?: AbortSignal): Promise<UpstreamResponse> {
    const options = {
      method: 'POST' as const,
      path: this.#path(path),
      headers: { ...this.#headers, 'content-type': 'application/json' },
      body: serialize(payload),
      signal,
      // undici starts this clock once the body is sent; 0 (the pool's default) waits for ever.
      headersTimeout: BOUNDED_POSTS.has(path) ? this.#responseMs : 0,
    }
    if (this.#answerMaxMs > 0 && ANSWER_PATHS.has(path)) return this.#answer(options)
    return this.#request(options)
  }

  /**
   * An answer from the model, cut after ANSWER_MAX_MS: the request is aborted with an error
   * that says so (`answer_too_long`), which a stream's relay turns into its terminal error line
   * as it is (lib/ndjson.ts; a response not yet begun fails with it, 504). The clock stops once
   * the answer's body is done.
   */
  async #answer(options: Dispatcher.RequestOptions): Promise<UpstreamResponse> {
    const limit = new AbortController()
    const ms = this.#answerMaxMs
    const timer = setTimeout(() => {
      // The api's own limit, not a failure of Ollama's: counted apart from ollama_errors_total.
      countAnswerStopped('answer_max_ms')
      limit.abort(
        new AppError(
          504,
          ErrorCode.answerTooLong,
          `The answer took longer than ANSWER_MAX_MS (${ms} ms) and was stopped`,
        ),
      )
    }, ms)
    // A deadline left behind (a body nobody read to its end) must not keep the process alive.
    timer.unref()
    const signals = [limit.signal, options.signal].filter((s) => s instanceof AbortSignal)
    try {
      const response = await this.#request({ ...options, signal: AbortSignal.any(signals) })
      response.body.once('close', () => clearTimeout(timer))
      return response
    } catch (err) {
      clearTimeout(timer)
      throw err
    }
  }

  /**
   * A blob request (`HEAD`, or `POST` with a file's bytes streamed as the body): no JSON, no
   * answer time limit; connection failures as for post(). A HEAD waits at most
   * OLLAMA_RESPONSE_TIMEOUT_MS; a POST's answer comes once Ollama has stored gigabytes, so it is
   * not bounded (undici would also count a pause in sending the body against it).
   */
  blob(
    method: 'HEAD' | 'POST',
    path: string,
    body: NodeJS.ReadableStream | null,
    signal: AbortSignal,
  ): Promise<UpstreamResponse> {
    const type = body === null ? {} : { 'content-type': 'application/octet-stream' }
    return this.#request({
      method,
      path: this.#path(path),
      headers: { ...this.#headers, ...type },
      body: body as Dispatcher.RequestOptions['body'],
      signal,
      headersTimeout: body === null ? this.#responseMs : 0,
    })
  }

  get(path: string, signal?: AbortSignal): Promise<UpstreamResponse> {
    return this.#request({
      method: 'GET',
      path: this.#path(path),
      headers: this.#headers,
      signal,
      headersTimeout: this.#responseMs,
    })
  }

  #path(path: string): string {
    return this.#basePath + path + this.#query
  }

  async #request(options: Dispatcher.RequestOptions): Promise<UpstreamResponse> {
    try {
      return await this.#pool.request(options)
    } catch (err) {
      throw this.unavailable(err)
    }
  }

  /**
   * Maps a transport failure to the 503 (or, for an Ollama that did not answer in time, 504) a
   * client sees; an abort passes through.
   */
  unavailable(err: unknown): unknown {
    const code = (err as { code?: string }).code
    if (code === 'UND_ERR_HEADERS_TIMEOUT') {
      countOllamaError('unreachable')
      return new AppError(
        504,
        ErrorCode.ollamaTimeout,
        `Ollama at OLLAMA_URL=${this.url} accepted the connection but did not begin answering within OLLAMA_RESPONSE_TIMEOUT_MS (${this.#responseMs} ms); is it stuck?`,
        { cause: err },
      )
    }
    if (code !== undefined && CONNECTION_ERRORS.has(code)) {
      countOllamaError('unreachable')
      return new AppError(
        503,
        ErrorCode.ollamaUnavailable,
        `Ollama is not reachable at OLLAMA_URL=${this.url} (${code})`,
        { cause: err },
      )
    }
    return err
  }

  /**
   * Reads an Ollama error answer (`{"error":"..."}`, or text) as an AppError. Its text may quote
   * the request (a proxy's "Cannot GET /api/tags?token=…"): OLLAMA_URL's credential is hidden.
   */
  async error(response: UpstreamResponse): Promise<AppError> {
    countOllamaError('error_status')
    const text = await response.body.text()
    const status = response.statusCode
    let reason: string | undefined
    try {
      const parsed = JSON.parse(text) as { error?: unknown }
      if (typeof parsed.error === 'string') reason = this.scrub(parsed.error)
    } catch {
      // Not Ollama's JSON error: a wrong OLLAMA_URL (another server, or a path Ollama lacks).
    }
    if (reason === undefined) {
      return new AppError(
        502,
        ErrorCode.ollamaError,
        `OLLAMA_URL=${this.url} answered ${status} (${excerpt(this.scrub(text))}); is it an Ollama server?`,
      )
    }
    if (status === 404) return new AppError(404, ErrorCode.modelNotFound, reason)
    if (status >= 400 && status < 500) return new AppError(status, ErrorCode.ollamaError, reason)
    return new AppError(502, ErrorCode.ollamaError, `Ollama failed: ${reason}`)
  }

  /**
   * The whole body of a non-streamed answer. A connection cut mid-way is a 502 naming Ollama,
   * not an internal error. (When the client left and the read was aborted, the error handler
   * finds no one to answer and only logs it.)
   */
  async bytes(response: UpstreamResponse): Promise<Buffer> {
    try {
      return Buffer.from(await response.body.arrayBuffer())
    } catch (err) {
      throw new AppError(
        502,
        ErrorCode.ollamaError,
        `The answer from Ollama at ${this.url} stopped before it was complete (${this.scrub((err as Error).message)})`,
      )
    }
  }

  /** A non-streamed answer as a JSON object; anything else is a 502 naming Ollama. */
  async json<T>(response: UpstreamResponse): Promise<T> {
    const body = await this.bytes(response)
    try {
      const parsed = JSON.parse(body.toString('utf8')) as unknown
      if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed))
        return parsed as T
    } catch {
      // reported below
    }
    throw notAnAnswer(this.url, body)
  }

  /** Called once the server has drained its requests: anything still open is cut. */
  close(): Promise<void> {
    return this.#pool.destroy()
  }
}

/**
 * The start of a foreign error page, with query values hidden: a proxy's "Cannot GET
 * /api/tags?token=…" must not hand OLLAMA_URL's token to the client.
 */
const excerpt = (text: string): string =>
  text
    .trim()
    .slice(0, 200)
    .replace(/([?&][^=&\s"'<>]*=)[^&\s"'<>]*/g, '$1***')

/** Ollama's paths that generate an answer: they are time-limited by ANSWER_MAX_MS, pulls are not. */
const ANSWER_PATHS = new Set(['/api/chat', '/api/generate'])

/** A request body as JSON; one nested too deeply to write out is the client's error (400). */
function serialize(payload: unknown): string {
  try {
    return JSON.stringify(payload)
  } catch {
    // A parsed JSON body has no cycles or BigInts: only its depth can exhaust the stack.
    throw new AppError(400, ErrorCode.validation, 'The body is nested too deeply')
  }
}

/** A 200 whose body is not an Ollama JSON object: OLLAMA_URL names some other server. */
export const notAnAnswer = (url: string, body: Buffer) =>
  new AppError(
    502,
    ErrorCode.ollamaError,
    `OLLAMA_URL=${url} answered 200 with something that is not an Ollama answer (${body.length} bytes); is it an Ollama server?`,
  )
