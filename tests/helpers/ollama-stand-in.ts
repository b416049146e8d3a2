/**
 * An in-process stand-in for the Ollama HTTP server, faithful to the wire format described in
 * shared/reference/ollama-api.md (§0 conventions, §1 endpoints, §4 checklist): Go-style JSON
 * (compact, struct key order, HTML-escaped), NDJSON streams, gin's text/plain 404/405, the exact
 * error messages, and knobs to inject slow loads, slow tokens, errors, crashes and split writes.
 */
import { createHash } from 'node:crypto'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'

export type StandInModel = {
  name: string
  size: number
  digest: string
  family: string
  parameterSize: string
  quantization: string
  modifiedAt: string
  capabilities?: string[]
}

export type StandInOptions = {
  /** What /api/tags lists and what chat/generate/embed/show accept (case-insensitive, `x` = `x:latest`). */
  models: StandInModel[]
  /** Tokens streamed by chat/generate. */
  tokens: string[]
  /**
   * The tokens of one chat/generate answer, from its request body (`messages`, `prompt`,
   * `options`…): a model whose answer depends on what it was asked. Unset, or undefined for a
   * request: `tokens`.
   */
  respond?: (body: Record<string, unknown>) => string[] | undefined
  /**
   * Thinking tokens, streamed before the answer (`message.thinking` in chat, `thinking` in
   * generate) by a model with the `thinking` capability unless the request says `think:false`;
   * `think` set on any other model is Ollama's 400 `"x" does not support thinking`.
   */
  thinkingTokens: string[]
  /**
   * The tools the model calls when a chat request carries `tools`: one chunk with the complete
   * calls (`content:""`) replaces the answer tokens, as Ollama writes it. Unset: the model answers
   * in text even when offered tools.
   */
  toolCalls?: Array<{ name: string; arguments: Record<string, unknown> }>
  /** Delay before any byte (headers included) of chat/generate/embed/create: simulates a model load. */
  firstByteDelayMs: number
  /** Delay between streamed lines of chat/generate (also spent, silently, when `stream:false`). */
  tokenDelayMs: number
  /**
   * chat/generate/embed/pull/create and a blob's POST reply `status` + `{"error":…}`
   * (application/json) before any output.
   */
  failBeforeOutput?: { status: number; error: string }
  /**
   * After `count` token lines (create: status lines) write an NDJSON `{"error":…}` line (status
   * stays 200) and end.
   */
  failAfterTokens?: { count: number; error: string }
  /**
   * After N token lines (create: status lines) the stream stops with no done and no error line
   * (a crash).
   */
  truncateAfterTokens?: number
  /**
   * How a truncated stream stops. `'end'` (default): the chunked body is terminated and the
   * connection closed, so clients see a body that ends without `done` (ollama-js: "Did not receive
   * done or success response in stream."). `'destroy'`: the socket is destroyed mid-body, so
   * clients see a network error (undici: `TypeError: terminated`). `stream:false` always destroys.
   */
  truncateMode?: 'end' | 'destroy'
  /**
   * Per-request faults: called as each request arrives, with its method and path; the knobs it
   * returns (`failBeforeOutput`, `truncateAfterTokens`…) override the options for that request
   * only. How the fault suite fails a random share of concurrent requests.
   */
  faultFor?: (request: { method: string; path: string }) => Partial<StandInOptions> | undefined
  /** Write each NDJSON line in 3 TCP writes (split mid-JSON and before the `\n`), 5 ms apart. */
  splitWrites: boolean
  /** Length of /api/embed vectors. */
  embedDimension: number
  /** Layers per pull. */
  pullLayers: number
  /** Delay between pull progress lines. */
  pullTickMs: number
  /** What /api/version reports. */
  version: string
}

export type RecordedRequest = {
  method: string
  path: string
  /** The raw query string with its `?`, or `''`. */
  query: string
  headers: Record<string, string | string[] | undefined>
  /** Parsed JSON body, or undefined when empty or not JSON. */
  body: unknown
  rawBody: string
}

export type OllamaStandIn = {
  /** e.g. http://127.0.0.1:PORT (no trailing slash) */
  url: string
  /** Mutable: tests change it between requests (read when each request starts). */
  options: StandInOptions
  /** Every request received, in arrival order. */
  requests: RecordedRequest[]
  /** Requests whose client went away before the stand-in finished answering. */
  aborted: RecordedRequest[]
  /** Resolves on the next abort (or an earlier one not awaited yet); rejects after the timeout. */
  waitForAbort(timeoutMs?: number): Promise<RecordedRequest>
  /** Number of /api/embed requests served successfully. */
  embedCalls: number
  /**
   * The blobs `POST /api/blobs/sha256:<hex>` stored, by digest (`sha256:<hex>`): only their size
   * and whether they began with the GGUF magic are kept, never their bytes.
   */
  blobs: Map<string, { size: number; gguf: boolean }>
  /** Bytes received in `POST /api/blobs/…` bodies, stored or not. */
  blobBytes: number
  /** Closes the server, destroys open sockets and clears every timer. */
  close(): Promise<void>
}

export const DEFAULT_TOKENS = ['The', ' sky', ' is', ' blue', '.']
export const DEFAULT_THINKING_TOKENS = ['Rayleigh', ' scattering', '?']

export const DEFAULT_MODELS: StandInModel[] = [
  {
    name: 'llama3.2:latest',
    size: 2019393189,
    digest: 'a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72',
    family: 'llama',
    parameterSize: '3.2B',
    quantization: 'Q4_K_M',
    modifiedAt: '2025-05-04T17:37:44.706015396-07:00',
    capabilities: ['completion', 'tools'],
  },
  {
    name: 'nomic-embed-text:latest',
    size: 274302450,
    digest: '0a109f422b47e3a30ba2b10eca18548e944e8a23073ee3f3e947efcf3c45e59f',
    family: 'nomic-bert',
    parameterSize: '137M',
    quantization: 'F16',
    modifiedAt: '2025-05-04T17:38:02.119582264-07:00',
    capabilities: ['embedding'],
  },
]

const SPLIT_WRITE_DELAY_MS = 5
const DEFAULT_ABORT_WAIT_MS = 2000

function defaultOptions(): StandInOptions {
  return {
    models: DEFAULT_MODELS.map((model) => ({ ...model })),
    tokens: [...DEFAULT_TOKENS],
    thinkingTokens: [...DEFAULT_THINKING_TOKENS],
    firstByteDelayMs: 0,
    tokenDelayMs: 0,
    splitWrites: false,
    embedDimension: 8,
    pullLayers: 2,
    pullTickMs: 0,
    version: '0.32.15',
  }
}

// ---------------------------------------------------------------------------------------------
// Go-compatible encoding helpers

/** JSON as Go's encoding/json writes it: compact, HTML-escaped (`<`, `>`, `&`, U+2028, U+2029). */
export function goJson(value: unknown): string {
  return JSON.stringify(value).replace(
    /[<>&\u2028\u2029]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  )
}

/** RFC3339Nano in UTC with trailing zeros trimmed, e.g. `2023-08-04T19:22:45.499127Z`. */
export function rfc3339Nano(ms: number = performance.timeOrigin + performance.now()): string {
  const whole = Math.floor(ms)
  const iso = new Date(whole).toISOString()
  const micros = String(Math.min(999, Math.round((ms - whole) * 1000))).padStart(3, '0')
  const fraction = `${iso.slice(20, 23)}${micros}`.replace(/0+$/, '')
  return `${iso.slice(0, 19)}${fraction === '' ? '' : `.${fraction}`}Z`
}

class HttpError extends Error {
  readonly status: number
  constructor(status: number, message: string) {
    super(message)
    this.status = status
  }
}

function goType(value: unknown): string {
  if (Array.isArray(value)) return 'array'
  if (typeof value === 'boolean') return 'bool'
  return typeof value
}

/** Go's `json: cannot unmarshal X into Go struct field S.f of type T` for a wrongly typed field. */
function expectType(
  value: unknown,
  want: 'string' | 'bool' | 'array' | 'object',
  field: string,
  goWant: string,
): void {
  if (value === undefined || value === null) return
  const actual = goType(value)
  if (actual === want) return
  throw new HttpError(
    400,
    `json: cannot unmarshal ${actual} into Go struct field ${field} of type ${goWant}`,
  )
}

/** The message Go's json.Decoder gives for the input V8 refused; trailing data is ignored, as in Go. */
function parseLikeGo(raw: string, error: unknown): unknown {
  const { message } = error as SyntaxError
  const trailing = /after JSON at position (\d+)/.exec(message)
  if (trailing) return JSON.parse(raw.slice(0, Number(trailing[1])))
  if (/end of JSON input|Unterminated string/.test(message)) {
    throw new HttpError(400, 'unexpected EOF')
  }
  const token = /Unexpected token '(.)'/.exec(message)?.[1]
  const position = Number(/at position (\d+)/.exec(message)?.[1] ?? raw.search(/\S/))
  const char = token ?? raw.charAt(position)
  let where = 'looking for beginning of value'
  if (/property name or/.test(message)) where = 'looking for beginning of object key string'
  else if (/after property name/.test(message)) where = 'after object key'
  else if (/after property value/.test(message)) where = 'after object key:value pair'
  else if (/after array element/.test(message)) where = 'after array element'
  else if (/control character/.test(message)) where = 'in string literal'
  throw new HttpError(400, `invalid character '${char === "'" ? "\\'" : char}' ${where}`)
}

function tryParse(raw: string): unknown {
  try {
    return JSON.parse(raw)
  } catch {
    return undefined
  }
}

// ---------------------------------------------------------------------------------------------
// Model names

const NAME_PART = '[a-z0-9_][a-z0-9_.-]{0,79}'
const NAME_RE = new RegExp(
  `^(?:[a-z0-9][a-z0-9.-]*(?::\\d+)?/)?(?:${NAME_PART}/)?${NAME_PART}(?::${NAME_PART})?$`,
  'i',
)

function isValidName(name: string): boolean {
  return NAME_RE.test(name)
}

/** Lower-cased, default host/namespace dropped, `:latest` added when there is no tag. */
function canonicalName(name: string): string {
  const lower = name
    .toLowerCase()
    .replace(/^registry\.ollama\.ai\//, '')
    .replace(/^library\//, '')
  const base = lower.slice(lower.lastIndexOf('/') + 1)
  return base.includes(':') ? lower : `${lower}:latest`
}

function findModel(models: StandInModel[], name: string): StandInModel | undefined {
  const wanted = canonicalName(name)
  return models.find((model) => canonicalName(model.name) === wanted)
}

function capabilitiesOf(model: StandInModel): string[] {
  return model.capabilities ?? ['completion']
}

function isZeroDuration(keepAlive: unknown): boolean {
  if (typeof keepAlive === 'number') return keepAlive === 0
  return typeof keepAlive === 'string' && /^[+-]?0+(\.0*)?(ns|us|µs|ms|s|m|h)?$/.test(keepAlive)
}

// ---------------------------------------------------------------------------------------------
// Deterministic numbers

function sha256(text: string): Buffer {
  return createHash('sha256').update(text).digest()
}

// A lexical embedding: close texts get close vectors, so vector search over the stand-in's
// vectors ranks by meaning-ish (shared words, shared pieces of words) the way a real model
// would rank by meaning, and retrieval tests can assert something. Each feature of the text (a
// whole word, and the character n-grams inside it) adds a sparse pseudo-random vector seeded
// by (model, feature): a few (position, value) pairs rather than a dense vector, so a chunk of
// thousands of features costs microseconds (the ingest bench embeds tens of thousands).

/** Words too common to say anything about a text: they and their n-grams are left out. */
const STOP_WORDS = new Set(
  (
    'a an and are as at be but by can could do does did for from has have how i if in into is ' +
    'it its me my of on or our so than that the their then there these this to us was we were ' +
    'what when where which who why will with would you your'
  ).split(' '),
)

/** Han, kana and Hangul: no spaces between words (or particles glued to them). */
const CJK = /[\p{sc=Han}\p{sc=Hiragana}\p{sc=Katakana}\p{sc=Hangul}]/u
/** Runs of letters and digits. */
const TOKENS = /[\p{L}\p{N}]+/gu
/** A token's CJK runs and its other runs (`querypie에서` is two words). */
const SCRIPT_RUNS =
  /[\p{sc=Han}\p{sc=Hiragana}\p{sc=Katakana}\p{sc=Hangul}]+|[^\p{sc=Han}\p{sc=Hiragana}\p{sc=Katakana}\p{sc=Hangul}]+/gu
/**
 * A task prefix (nomic's `search_query: `, e5's `passage: `, …) tells a real model what the text
 * is for, it is not what the text is about: the stand-in leaves it out, else "query" in every
 * question would pull every page mentioning QueryPie closer.
 */
const TASK_PREFIX =
  /^(?:search_query|search_document|query|passage|Represent this sentence for searching relevant passages): /

/** Pairs (position, value) each feature adds. */
const FEATURE_SPREAD = 8
/** What one n-gram weighs next to a whole word (a word yields many n-grams). */
const GRAM_WEIGHT = 0.35

/** Counts the n-grams of `text` (UTF-16 units: the scripts that matter here are all in the BMP). */
function grams(text: string, sizes: readonly number[], into: Map<string, number>): void {
  for (const n of sizes) {
    for (let i = 0; i + n <= text.length; i++) {
      const gram = text.slice(i, i + n)
      into.set(gram, (into.get(gram) ?? 0) + 1)
    }
  }
}

type Features = { words: Map<string, number>; pieces: Map<string, number> }

/**
 * The text's features and how often each occurs: NFKC, lower-cased; every word, plus its 3- and
 * 4-grams (with `^`/`$` at the word's ends, so "roll" and "rollback" share "^rol") for
 * alphabetic words, or its 2- and 3-grams for Han, kana and Hangul (a Korean word and the same
 * word with a particle share all but the last). A text with no word is one feature: itself.
 */
function features(text: string): Features {
  const words = new Map<string, number>()
  const pieces = new Map<string, number>()
  const content = text.replace(TASK_PREFIX, '')
  for (const [token] of content.normalize('NFKC').toLowerCase().matchAll(TOKENS)) {
    // Only a token with CJK in it is split (the split costs more than the rest together).
    const runs = CJK.test(token) ? (token.match(SCRIPT_RUNS) as string[]) : [token]
    for (const word of runs) {
      if (STOP_WORDS.has(word)) continue
      words.set(word, (words.get(word) ?? 0) + 1)
      if (CJK.test(word)) grams(word, [2, 3], pieces)
      else grams(`^${word}$`, [3, 4], pieces)
    }
  }
  if (words.size === 0) words.set(text, 1)
  return { words, pieces }
}

/** FNV-1a over the UTF-16 units of `text`, continuing from `seed`. */
function fnv1a(text: string, seed: number): number {
  let hash = seed
  for (let i = 0; i < text.length; i++) {
    hash = Math.imul(hash ^ text.charCodeAt(i), 0x01000193) >>> 0
  }
  return hash
}

/**
 * Raw (unnormalised) values: the sum over the text's features of weight × the feature's sparse
 * vector, the weight sublinear in the count (1 + ln count) so a repeated word does not swamp
 * the rest. Same (model, text, dimension), same vector; another model, other vectors.
 */
function rawVector(model: string, text: string, dimension: number): number[] {
  const values = new Float64Array(dimension)
  const seed = fnv1a(canonicalName(model), 0x811c9dc5)
  // Pieces hash from another seed: the piece "api" and the word "api" are different features.
  const pieceSeed = fnv1a('#', seed)
  const { words, pieces } = features(text)
  const add = (feature: string, count: number, from: number, weight: number) => {
    const scaled = weight * (1 + Math.log(count))
    // mulberry32, seeded by the feature: FEATURE_SPREAD positions and values in [-1, 1).
    let state = fnv1a(feature, from)
    for (let k = 0; k < FEATURE_SPREAD; k++) {
      state = (state + 0x6d2b79f5) >>> 0
      let x = state
      x = Math.imul(x ^ (x >>> 15), x | 1)
      x ^= x + Math.imul(x ^ (x >>> 7), x | 61)
      const bits = (x ^ (x >>> 14)) >>> 0
      const at = bits % dimension
      values[at] = (values[at] as number) + scaled * ((bits / 2 ** 32) * 2 - 1)
    }
  }
  for (const [word, count] of words) add(word, count, seed, 1)
  for (const [piece, count] of pieces) add(piece, count, pieceSeed, GRAM_WEIGHT)
  return Array.from(values, Math.fround)
}

/**
 * The vector /api/embed returns for `text` on `model` (name as in /api/tags or as sent; case and
 * `:latest` don't matter): L2-normalised values with 6 significant digits, so each is already the
 * shortest decimal of its float32 (what Go prints). With `dimensions: N` the stand-in returns
 * `expectedEmbedding(model, text, N)`. Texts sharing words and word pieces have a higher cosine
 * similarity (see rawVector).
 */
export function expectedEmbedding(model: string, text: string, dimension: number): number[] {
  const raw = rawVector(model, text, dimension)
  const norm = Math.sqrt(raw.reduce((sum, value) => sum + value * value, 0))
  return raw.map((value) => Number((value / norm).toPrecision(6)))
}

function countWords(text: string): number {
  return text.split(/\s+/).filter((word) => word !== '').length
}

function omitZero<T extends Record<string, unknown>>(value: T): T {
  for (const key of Object.keys(value)) if (value[key] === 0) delete value[key]
  return value
}

// ---------------------------------------------------------------------------------------------
// One request/response pair

type Exchange = {
  req: IncomingMessage
  res: ServerResponse
  record: RecordedRequest
  standIn: OllamaStandIn
  /** Snapshot of the options when the request arrived (models stay live: pull/delete edit them). */
  knobs: StandInOptions
  /** The client went away, or the stand-in is closing: stop emitting. */
  closed: boolean
  /** The stand-in finished answering (ended the response or destroyed the socket on purpose). */
  settled: boolean
  startedAt: bigint
  /** When the (simulated) model load finished. */
  loadedAt: bigint
  wakers: Set<() => void>
  sleep(ms: number): Promise<boolean>
}

function sendBody(ex: Exchange, status: number, contentType: string, body: string): void {
  if (ex.closed) return
  ex.settled = true
  const headers: Record<string, string | number> = { 'Content-Length': Buffer.byteLength(body) }
  if (contentType !== '') headers['Content-Type'] = contentType
  ex.res.writeHead(status, headers)
  ex.res.end(body)
}

function sendJson(ex: Exchange, status: number, value: unknown): void {
  sendBody(ex, status, 'application/json; charset=utf-8', goJson(value))
}

function sendError(ex: Exchange, status: number, error: string): void {
  sendJson(ex, status, { error })
}

function startStream(ex: Exchange): void {
  if (ex.res.headersSent) return
  const headers: Record<string, string> = { 'Content-Type': 'application/x-ndjson' }
  // A clean truncation also closes the connection. Not for 'destroy': with `Connection: close`
  // undici takes the socket closing as the end of the body, and the crash would go unnoticed.
  if (ex.knobs.truncateAfterTokens !== undefined && ex.knobs.truncateMode !== 'destroy') {
    headers.Connection = 'close'
  }
  ex.res.writeHead(200, headers)
}

/** One NDJSON line; with `splitWrites` in 3 writes (mid-JSON, then the `\n` alone). */
async function writeLine(ex: Exchange, value: unknown): Promise<boolean> {
  if (ex.closed) return false
  startStream(ex)
  const line = Buffer.from(`${goJson(value)}\n`)
  if (!ex.knobs.splitWrites) {
    ex.res.write(line)
    return true
  }
  const cuts = [0, Math.ceil((line.length - 1) / 2), line.length - 1, line.length]
  for (let i = 0; i < 3; i++) {
    if (i > 0 && !(await ex.sleep(SPLIT_WRITE_DELAY_MS))) return false
    ex.res.write(line.subarray(cuts[i], cuts[i + 1]))
  }
  return true
}

function endStream(ex: Exchange): void {
  ex.settled = true
  ex.res.end()
}

/** Destroys the socket mid-response, after the lines already written have left the process. */
function crash(ex: Exchange): void {
  ex.settled = true
  // http corks the socket until the next tick: destroying it now would drop the written lines.
  setImmediate(() => ex.res.destroy())
}

/** Model load: `firstByteDelayMs` of silence, then `failBeforeOutput` if set. */
async function load(ex: Exchange): Promise<boolean> {
  if (!(await ex.sleep(ex.knobs.firstByteDelayMs))) return false
  ex.loadedAt = process.hrtime.bigint()
  const fail = ex.knobs.failBeforeOutput
  if (fail) {
    sendError(ex, fail.status, fail.error)
    return false
  }
  return true
}

function metrics(ex: Exchange, promptEvalCount: number, evalCount: number) {
  const now = process.hrtime.bigint()
  const { loadedAt } = ex
  return omitZero({
    total_duration: Math.max(1, Number(now - ex.startedAt)),
    load_duration: Math.max(1, Number(loadedAt - ex.startedAt)),
    prompt_eval_count: promptEvalCount,
    prompt_eval_duration: promptEvalCount * 251_000,
    eval_count: evalCount,
    eval_duration: Math.max(1, Number(now - loadedAt)),
  })
}

/** One line's worth of model output. */
type Piece = { content: string; thinking?: string; toolCalls?: unknown[] }

/** What the model writes: its thinking (if it thinks), then the answer tokens or tool calls. */
function pieces(
  ex: Exchange,
  body: Body,
  thinks: boolean,
  calls?: StandInOptions['toolCalls'],
): Piece[] {
  const out: Piece[] = thinks
    ? ex.knobs.thinkingTokens.map((thinking) => ({ content: '', thinking }))
    : []
  if (calls === undefined) {
    const tokens = ex.knobs.respond?.(body) ?? ex.knobs.tokens
    return out.concat(tokens.map((content) => ({ content })))
  }
  const toolCalls = calls.map((call, index) => ({
    id: `call_${sha256(`${call.name}#${index}`).toString('hex').slice(0, 8)}`,
    function: { index, name: call.name, arguments: call.arguments },
  }))
  return out.concat({ content: '', toolCalls })
}

/** The non-streamed answer: contents and thinking concatenated, tool calls gathered. */
function gather(parts: Piece[]): Piece {
  return {
    content: parts.map((part) => part.content).join(''),
    thinking: parts.map((part) => part.thinking ?? '').join(''),
    toolCalls: parts.flatMap((part) => part.toolCalls ?? []),
  }
}

/** Streams (or silently spends) the token lines, honouring the fail/truncate knobs. */
async function produce(
  ex: Exchange,
  stream: boolean,
  parts: Piece[],
  chunk: (piece: Piece) => unknown,
  final: (whole: Piece) => unknown,
): Promise<void> {
  const { tokenDelayMs, failAfterTokens, truncateAfterTokens } = ex.knobs
  const failAt = failAfterTokens ? Math.min(Math.max(failAfterTokens.count, 0), parts.length) : -1
  const cutAt =
    truncateAfterTokens === undefined
      ? -1
      : Math.min(Math.max(truncateAfterTokens, 0), parts.length)
  for (let i = 0; i <= parts.length; i++) {
    if (i > 0 && !(await ex.sleep(tokenDelayMs))) return
    if (i === cutAt) {
      if (stream && ex.knobs.truncateMode !== 'destroy') {
        startStream(ex)
        endStream(ex)
      } else crash(ex)
      return
    }
    if (i === failAt && failAfterTokens) {
      if (stream && ex.res.headersSent) {
        if (await writeLine(ex, { error: failAfterTokens.error })) endStream(ex)
      } else sendError(ex, 500, failAfterTokens.error)
      return
    }
    const part = parts[i]
    if (part === undefined) break
    if (stream && !(await writeLine(ex, chunk(part)))) return
  }
  if (!stream) return sendJson(ex, 200, final(gather(parts)))
  if (await writeLine(ex, final({ content: '' }))) endStream(ex)
}

/**
 * Whether the model thinks: `think` (a bool or a level) is honoured by a model with the
 * `thinking` capability, which thinks by default; on any other model a set `think` is a 400.
 */
function thinks(model: StandInModel, name: string, think: unknown): boolean {
  const wanted = think !== undefined && think !== null && think !== false
  if (!capabilitiesOf(model).includes('thinking')) {
    if (wanted) throw new HttpError(400, `"${name}" does not support thinking`)
    return false
  }
  return think !== false
}

/** Go omits empty optional fields (`omitempty`). */
function nonEmpty(value: string | unknown[] | undefined) {
  return value === undefined || value.length === 0 ? undefined : value
}

// ---------------------------------------------------------------------------------------------
// Handlers

type Body = Record<string, unknown>

function parseBody(ex: Exchange, struct: string): Body {
  const raw = ex.record.rawBody
  if (raw.trim() === '') throw new HttpError(400, 'missing request body')
  let value: unknown
  try {
    value = JSON.parse(raw)
  } catch (error) {
    value = parseLikeGo(raw, error)
  }
  if (value === null) return {}
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw new HttpError(
      400,
      `json: cannot unmarshal ${goType(value)} into Go value of type api.${struct}`,
    )
  }
  return value as Body
}

function str(value: unknown): string {
  return typeof value === 'string' ? value : ''
}

function wantsStream(body: Body, struct: string): boolean {
  expectType(body.stream, 'bool', `${struct}.stream`, 'bool')
  return body.stream !== false
}

async function handleGenerate(ex: Exchange): Promise<void> {
  const body = parseBody(ex, 'GenerateRequest')
  expectType(body.model, 'string', 'GenerateRequest.model', 'string')
  expectType(body.prompt, 'string', 'GenerateRequest.prompt', 'string')
  const stream = wantsStream(body, 'GenerateRequest')
  const name = str(body.model)
  if (name !== '' && !isValidName(name)) throw new HttpError(400, 'invalid model name')
  const model = findModel(ex.standIn.options.models, name)
  if (!model) throw new HttpError(404, `model '${name}' not found`)
  const prompt = str(body.prompt)
  const head = () => ({ model: name, created_at: rfc3339Nano() })
  if (prompt === '' && isZeroDuration(body.keep_alive)) {
    return sendJson(ex, 200, { ...head(), response: '', done: true, done_reason: 'unload' })
  }
  if (!capabilitiesOf(model).includes('completion')) {
    throw new HttpError(400, `"${name}" does not support generate`)
  }
  const thinking = thinks(model, name, body.think)
  if (!(await load(ex))) return
  if (prompt === '') {
    return sendJson(ex, 200, { ...head(), response: '', done: true, done_reason: 'load' })
  }
  const parts = pieces(ex, body, thinking)
  const promptEvalCount = countWords(prompt) + 10
  const evalCount = parts.length
  const context = body.raw === true ? undefined : contextFor(prompt, promptEvalCount + evalCount)
  await produce(
    ex,
    stream,
    parts,
    (part) => ({
      ...head(),
      response: part.content,
      thinking: nonEmpty(part.thinking),
      done: false,
    }),
    (whole) => ({
      ...head(),
      response: whole.content,
      thinking: nonEmpty(whole.thinking),
      done: true,
      done_reason: 'stop',
      ...(context ? { context } : {}),
      ...metrics(ex, promptEvalCount, evalCount),
    }),
  )
}

function contextFor(prompt: string, length: number): number[] {
  const digest = sha256(prompt)
  return Array.from({ length }, (_, i) => 128 + (digest.readUInt16BE((i * 2) % 32) % 128000))
}

async function handleChat(ex: Exchange): Promise<void> {
  const body = parseBody(ex, 'ChatRequest')
  expectType(body.model, 'string', 'ChatRequest.model', 'string')
  expectType(body.messages, 'array', 'ChatRequest.messages', '[]api.Message')
  const messages = (body.messages ?? []) as unknown[]
  for (const message of messages) {
    expectType(message, 'object', 'ChatRequest.messages', 'api.Message')
    const fields = (message ?? {}) as Body
    expectType(fields.role, 'string', 'ChatRequest.messages.role', 'string')
    expectType(fields.content, 'string', 'ChatRequest.messages.content', 'string')
  }
  const stream = wantsStream(body, 'ChatRequest')
  const name = str(body.model)
  if (name === '') throw new HttpError(400, 'model is required')
  if (!isValidName(name)) throw new HttpError(400, 'invalid model name')
  const model = findModel(ex.standIn.options.models, name)
  if (!model) throw new HttpError(404, `model '${name}' not found`)
  const head = () => ({ model: name, created_at: rfc3339Nano() })
  const empty = { role: 'assistant', content: '' }
  if (messages.length === 0 && isZeroDuration(body.keep_alive)) {
    return sendJson(ex, 200, { ...head(), message: empty, done: true, done_reason: 'unload' })
  }
  if (!capabilitiesOf(model).includes('completion')) {
    throw new HttpError(400, `"${name}" does not support chat`)
  }
  expectType(body.tools, 'array', 'ChatRequest.tools', 'api.Tools')
  const tools = (body.tools ?? []) as unknown[]
  if (tools.length > 0 && !capabilitiesOf(model).includes('tools')) {
    throw new HttpError(
      400,
      `registry.ollama.ai/library/${canonicalName(name)} does not support tools`,
    )
  }
  const thinking = thinks(model, name, body.think)
  if (!(await load(ex))) return
  if (messages.length === 0) {
    return sendJson(ex, 200, { ...head(), message: empty, done: true, done_reason: 'load' })
  }
  const parts = pieces(ex, body, thinking, tools.length > 0 ? ex.knobs.toolCalls : undefined)
  const promptEvalCount = messages.reduce<number>(
    (sum, message) => sum + countWords(str((message as Body | null)?.content)) + 4,
    6,
  )
  const evalCount = parts.length
  // Go's api.Message order: role, content, thinking, images, tool_calls, tool_name, tool_call_id.
  const message = (part: Piece) => ({
    role: 'assistant',
    content: part.content,
    thinking: nonEmpty(part.thinking),
    tool_calls: nonEmpty(part.toolCalls),
  })
  await produce(
    ex,
    stream,
    parts,
    (part) => ({ ...head(), message: message(part), done: false }),
    (whole) => ({
      ...head(),
      message: message(whole),
      done: true,
      done_reason: 'stop',
      ...metrics(ex, promptEvalCount, evalCount),
    }),
  )
}

async function handleEmbed(ex: Exchange): Promise<void> {
  const body = parseBody(ex, 'EmbedRequest')
  expectType(body.model, 'string', 'EmbedRequest.model', 'string')
  const name = str(body.model)
  if (name === '') throw new HttpError(404, "model '' not found")
  if (!isValidName(name)) throw new HttpError(400, 'invalid model name')
  let inputs: string[] = []
  if (typeof body.input === 'string') {
    if (body.input !== '') inputs = [body.input]
  } else if (Array.isArray(body.input)) {
    if (!body.input.every((item) => typeof item === 'string')) {
      throw new HttpError(400, 'invalid input type')
    }
    inputs = body.input
  } else if (body.input !== undefined && body.input !== null) {
    throw new HttpError(400, 'invalid input type')
  }
  const model = findModel(ex.standIn.options.models, name)
  if (!model) throw new HttpError(404, `model "${name}" not found, try pulling it first`)
  if (!(await load(ex))) return
  if (inputs.length === 0) {
    ex.standIn.embedCalls++
    return sendJson(ex, 200, { model: name, embeddings: [] })
  }
  const full = ex.knobs.embedDimension
  const dimensions = typeof body.dimensions === 'number' ? body.dimensions : 0
  const dimension = dimensions > 0 && dimensions < full ? dimensions : full
  const embeddings = inputs.map((text) => expectedEmbedding(model.name, text, dimension))
  const now = process.hrtime.bigint()
  ex.standIn.embedCalls++
  sendJson(ex, 200, {
    model: name,
    embeddings,
    total_duration: Math.max(1, Number(now - ex.startedAt)),
    load_duration: Math.max(1, Number(ex.loadedAt - ex.startedAt)),
    prompt_eval_count: inputs.reduce((sum, text) => sum + countWords(text) + 2, 0),
  })
}

async function handleEmbeddings(ex: Exchange): Promise<void> {
  const body = parseBody(ex, 'EmbeddingRequest')
  expectType(body.model, 'string', 'EmbeddingRequest.model', 'string')
  expectType(body.prompt, 'string', 'EmbeddingRequest.prompt', 'string')
  const name = str(body.model)
  if (name === '') throw new HttpError(400, 'model is required')
  if (!isValidName(name)) throw new HttpError(400, 'invalid model name')
  const model = findModel(ex.standIn.options.models, name)
  if (!model) throw new HttpError(404, `model "${name}" not found, try pulling it first`)
  if (!(await load(ex))) return
  const prompt = str(body.prompt)
  const embedding = prompt === '' ? [] : rawVector(model.name, prompt, ex.knobs.embedDimension)
  sendJson(ex, 200, { embedding })
}

function details(model: StandInModel) {
  return {
    parent_model: '',
    format: 'gguf',
    family: model.family,
    families: [model.family],
    parameter_size: model.parameterSize,
    quantization_level: model.quantization,
  }
}

function handleTags(ex: Exchange): void {
  const models = ex.standIn.options.models.map((model) => ({
    name: model.name,
    model: model.name,
    modified_at: model.modifiedAt,
    size: model.size,
    digest: model.digest,
    details: details(model),
  }))
  sendJson(ex, 200, { models })
}

function handleShow(ex: Exchange): void {
  const body = parseBody(ex, 'ShowRequest')
  expectType(body.model, 'string', 'ShowRequest.model', 'string')
  expectType(body.name, 'string', 'ShowRequest.name', 'string')
  const name = str(body.model) || str(body.name)
  if (name === '') throw new HttpError(400, 'model is required')
  if (!isValidName(name)) throw new HttpError(400, 'invalid model name')
  const model = findModel(ex.standIn.options.models, name)
  if (!model) throw new HttpError(404, `model '${name}' not found`)
  const capabilities = capabilitiesOf(model)
  const info: Record<string, unknown> = {
    'general.architecture': model.family,
    'general.parameter_count': Math.round(model.size / 0.6),
    [`${model.family}.context_length`]: capabilities.includes('embedding') ? 2048 : 131072,
    [`${model.family}.embedding_length`]: capabilities.includes('embedding')
      ? ex.knobs.embedDimension
      : 3072,
  }
  const modelInfo = Object.fromEntries(
    Object.keys(info)
      .sort()
      .map((key) => [key, info[key]]),
  )
  const short = model.name.replace(/:latest$/, '')
  sendJson(ex, 200, {
    modelfile: `# Modelfile generated by "ollama show"\n# To build a new Modelfile based on this, replace FROM with:\n# FROM ${short}\n\nFROM ${model.name}\nTEMPLATE {{ .Prompt }}\n`,
    template: '{{ .Prompt }}',
    details: details(model),
    model_info: modelInfo,
    capabilities,
    modified_at: model.modifiedAt,
  })
}

async function handlePull(ex: Exchange): Promise<void> {
  const body = parseBody(ex, 'PullRequest')
  expectType(body.model, 'string', 'PullRequest.model', 'string')
  expectType(body.name, 'string', 'PullRequest.name', 'string')
  const stream = wantsStream(body, 'PullRequest')
  const name = str(body.model) || str(body.name)
  if (!isValidName(name)) throw new HttpError(400, 'invalid model name')
  const fail = ex.knobs.failBeforeOutput
  if (fail) return sendError(ex, fail.status, fail.error)
  const missing = /^missing/i.test(name.slice(name.lastIndexOf('/') + 1))
  const existing = findModel(ex.standIn.options.models, name)
  const lines: Body[] = [{ status: 'pulling manifest' }]
  let size = 0
  for (let layer = 0; !missing && layer < ex.knobs.pullLayers; layer++) {
    const hex = sha256(`${canonicalName(name)}#${layer}`).toString('hex')
    const line = { status: `pulling ${hex.slice(0, 12)}`, digest: `sha256:${hex}` }
    const total = (layer === 0 ? 1_000_000 : 100) + Number.parseInt(hex.slice(0, 4), 16)
    size += total
    if (existing) lines.push({ ...line, total, completed: total })
    else {
      lines.push({ ...line, total })
      for (const part of [1, 2, 3]) {
        lines.push({ ...line, total, completed: Math.round((total * part) / 3) })
      }
    }
  }
  const last: Body = missing
    ? { error: 'pull model manifest: file does not exist' }
    : { status: 'success' }
  if (!missing) lines.push({ status: 'verifying sha256 digest' }, { status: 'writing manifest' })
  lines.push(last)
  for (const [i, line] of lines.entries()) {
    if (i > 0 && !(await ex.sleep(ex.knobs.pullTickMs))) return
    if (stream && !(await writeLine(ex, line))) return
  }
  if (!missing && !existing) {
    const tagged = canonicalName(name) === name.toLowerCase() ? name : `${name}:latest`
    ex.standIn.options.models.push({
      name: tagged,
      size,
      digest: sha256(tagged).toString('hex'),
      family: 'llama',
      parameterSize: '1B',
      quantization: 'Q4_K_M',
      modifiedAt: rfc3339Nano(),
      capabilities: /embed/i.test(name) ? ['embedding'] : ['completion'],
    })
  }
  if (stream) endStream(ex)
  else if (missing) sendJson(ex, 500, last)
  else sendJson(ex, 200, last)
}

function handleDelete(ex: Exchange): void {
  const body = parseBody(ex, 'DeleteRequest')
  expectType(body.model, 'string', 'DeleteRequest.model', 'string')
  expectType(body.name, 'string', 'DeleteRequest.name', 'string')
  const name = str(body.model) || str(body.name)
  if (name === '') throw new HttpError(400, 'model is required')
  if (!isValidName(name)) throw new HttpError(400, `name ${JSON.stringify(name)} is invalid`)
  const models = ex.standIn.options.models
  const model = findModel(models, name)
  if (!model) throw new HttpError(404, `model '${name}' not found`)
  models.splice(models.indexOf(model), 1)
  sendBody(ex, 200, '', '')
}

// Blobs and create: how a GGUF file becomes a model (`HEAD|POST /api/blobs/sha256:<hex>`, then
// `POST /api/create` with `files`).

const DIGEST_RE = /^sha256[:-]([0-9a-f]{64})$/i
const GGUF_MAGIC = Buffer.from('GGUF')

/** `sha256:<hex>` from a path's digest (Ollama takes `sha256:` or `sha256-`), or a 400. */
function blobDigest(raw: string): string {
  const match = DIGEST_RE.exec(decodeURIComponent(raw))
  if (!match) throw new HttpError(400, 'invalid digest format')
  return `sha256:${(match[1] as string).toLowerCase()}`
}

async function handleBlob(ex: Exchange): Promise<void> {
  const method = ex.record.method
  if (method !== 'HEAD' && method !== 'POST') {
    return sendBody(ex, 405, 'text/plain', '405 method not allowed')
  }
  const digest = blobDigest(ex.record.path.slice('/api/blobs/'.length))
  const blobs = ex.standIn.blobs
  if (method === 'HEAD') {
    if (blobs.has(digest)) return sendBody(ex, 200, '', '')
    return sendError(ex, 404, `blob ${JSON.stringify(digest)} not found`)
  }
  const hash = createHash('sha256')
  let size = 0
  let head = Buffer.alloc(0)
  for await (const chunk of ex.req as AsyncIterable<Buffer>) {
    hash.update(chunk)
    size += chunk.length
    ex.standIn.blobBytes += chunk.length
    if (head.length < GGUF_MAGIC.length) head = Buffer.concat([head, chunk.subarray(0, 4)])
  }
  if (blobs.has(digest)) return sendBody(ex, 200, '', '')
  const fail = ex.knobs.failBeforeOutput
  if (fail) return sendError(ex, fail.status, fail.error)
  const got = `sha256:${hash.digest('hex')}`
  if (got !== digest) {
    return sendError(
      ex,
      400,
      `digest mismatch, expected ${JSON.stringify(digest)}, got ${JSON.stringify(got)}`,
    )
  }
  blobs.set(digest, { size, gguf: head.subarray(0, 4).equals(GGUF_MAGIC) })
  sendBody(ex, 201, '', '')
}

/** A streamed create's lines before the model exists, or the error that ends it. */
function createSteps(ex: Exchange, body: Body): { lines: Body[]; size: number } | string {
  const files = body.files as Record<string, unknown> | undefined
  const from = str(body.from)
  if (files === undefined || Object.keys(files).length === 0) {
    const base = findModel(ex.standIn.options.models, from)
    if (!base) return `model '${from}' not found`
    return { lines: [{ status: `using existing layer sha256:${base.digest}` }], size: base.size }
  }
  const lines: Body[] = [{ status: 'parsing GGUF' }]
  let size = 0
  for (const digest of Object.values(files)) {
    const blob = DIGEST_RE.test(str(digest)) ? ex.standIn.blobs.get(str(digest)) : undefined
    const hex = str(digest).slice(7)
    if (!blob) return `open /root/.ollama/models/blobs/sha256-${hex}: no such file or directory`
    if (!blob.gguf) return 'invalid file magic'
    size += blob.size
    lines.push({ status: `using existing layer sha256:${hex}` })
  }
  return { lines, size }
}

async function handleCreate(ex: Exchange): Promise<void> {
  const body = parseBody(ex, 'CreateRequest')
  expectType(body.model, 'string', 'CreateRequest.model', 'string')
  expectType(body.from, 'string', 'CreateRequest.from', 'string')
  expectType(body.files, 'object', 'CreateRequest.files', 'map[string]string')
  const stream = wantsStream(body, 'CreateRequest')
  const name = str(body.model) || str(body.name)
  if (!isValidName(name)) throw new HttpError(400, 'invalid model name')
  if (body.files === undefined && str(body.from) === '') {
    throw new HttpError(400, "neither 'from' or 'files' was specified")
  }
  const fail = ex.knobs.failBeforeOutput
  if (fail) return sendError(ex, fail.status, fail.error)
  // Reading a large GGUF takes a while before the first line.
  if (!(await ex.sleep(ex.knobs.firstByteDelayMs))) return
  const steps = createSteps(ex, body)
  const lines: Body[] = typeof steps === 'string' ? [] : [...steps.lines]
  for (const field of ['template', 'system', 'parameters'] as const) {
    if (body[field] !== undefined && typeof steps !== 'string') {
      lines.push({
        status: `creating new layer sha256:${sha256(goJson(body[field])).toString('hex')}`,
      })
    }
  }
  if (typeof steps !== 'string') lines.push({ status: 'writing manifest' })
  const failAt = ex.knobs.failAfterTokens
  for (const [i, line] of lines.entries()) {
    if (i > 0 && !(await ex.sleep(ex.knobs.pullTickMs))) return
    if (failAt && i === failAt.count) return writeError(ex, stream, failAt.error)
    if (i === ex.knobs.truncateAfterTokens) {
      return ex.knobs.truncateMode === 'destroy' ? crash(ex) : endStream(ex)
    }
    if (stream && !(await writeLine(ex, line))) return
  }
  if (typeof steps === 'string') return writeError(ex, stream, steps)
  const tagged = canonicalName(name) === name.toLowerCase() ? name : `${name}:latest`
  const models = ex.standIn.options.models
  const replaced = findModel(models, name)
  if (replaced) models.splice(models.indexOf(replaced), 1)
  models.push({
    name: tagged,
    size: steps.size,
    digest: sha256(`${tagged}#${ex.standIn.requests.length}`).toString('hex'),
    family: 'llama',
    parameterSize: '1B',
    quantization: 'Q4_K_M',
    modifiedAt: rfc3339Nano(),
    capabilities: ['completion'],
  })
  if (!stream) return sendJson(ex, 200, { status: 'success' })
  await writeLine(ex, { status: 'success' })
  endStream(ex)
}

/** A create that failed once under way: an error line (streamed) or a 500, no model made. */
async function writeError(ex: Exchange, stream: boolean, error: string): Promise<void> {
  if (!stream) return sendError(ex, 500, error)
  if (await writeLine(ex, { error })) endStream(ex)
}

type Handler = (ex: Exchange) => void | Promise<void>

const running: Handler = (ex) => sendBody(ex, 200, 'text/plain; charset=utf-8', 'Ollama is running')
const version: Handler = (ex) => sendJson(ex, 200, { version: ex.knobs.version })

const ROUTES: Record<string, Record<string, Handler>> = {
  '/': { GET: running, HEAD: running },
  '/api/version': { GET: version, HEAD: version },
  '/api/tags': { GET: handleTags, HEAD: handleTags },
  '/api/ps': { GET: (ex) => sendJson(ex, 200, { models: [] }) },
  '/api/generate': { POST: handleGenerate },
  '/api/chat': { POST: handleChat },
  '/api/embed': { POST: handleEmbed },
  '/api/embeddings': { POST: handleEmbeddings },
  '/api/show': { POST: handleShow },
  '/api/pull': { POST: handlePull },
  '/api/delete': { DELETE: handleDelete },
  '/api/create': { POST: handleCreate },
}

async function dispatch(ex: Exchange): Promise<void> {
  // A blob's body may be gigabytes: it is hashed as it streams, never held.
  if (ex.record.path.startsWith('/api/blobs/')) return handleBlob(ex)
  const chunks: Buffer[] = []
  for await (const chunk of ex.req) chunks.push(chunk as Buffer)
  ex.record.rawBody = Buffer.concat(chunks).toString('utf8')
  ex.record.body = tryParse(ex.record.rawBody)
  const route = Object.hasOwn(ROUTES, ex.record.path) ? ROUTES[ex.record.path] : undefined
  if (!route) return sendBody(ex, 404, 'text/plain', '404 page not found')
  const handler = Object.hasOwn(route, ex.record.method) ? route[ex.record.method] : undefined
  if (!handler) return sendBody(ex, 405, 'text/plain', '405 method not allowed')
  await handler(ex)
}

// ---------------------------------------------------------------------------------------------
// Server

export async function startOllamaStandIn(
  options: Partial<StandInOptions> = {},
): Promise<OllamaStandIn> {
  const timers = new Set<NodeJS.Timeout>()
  const exchanges = new Set<Exchange>()
  const unclaimedAborts: RecordedRequest[] = []
  const abortWaiters: {
    resolve: (request: RecordedRequest) => void
    reject: (error: Error) => void
    timer: NodeJS.Timeout
  }[] = []
  let closing = false

  const initial = { ...defaultOptions(), ...options }
  const standIn: OllamaStandIn = {
    url: '',
    options: { ...initial, models: [...initial.models], tokens: [...initial.tokens] },
    requests: [],
    aborted: [],
    embedCalls: 0,
    blobs: new Map(),
    blobBytes: 0,
    waitForAbort(timeoutMs = DEFAULT_ABORT_WAIT_MS) {
      const ready = unclaimedAborts.shift()
      if (ready) return Promise.resolve(ready)
      return new Promise<RecordedRequest>((resolve, reject) => {
        const waiter = {
          resolve,
          reject,
          timer: setTimeout(() => {
            abortWaiters.splice(abortWaiters.indexOf(waiter), 1)
            reject(new Error(`no aborted request within ${timeoutMs} ms`))
          }, timeoutMs),
        }
        abortWaiters.push(waiter)
      })
    },
    async close() {
      closing = true
      for (const timer of timers) clearTimeout(timer)
      timers.clear()
      for (const waiter of abortWaiters.splice(0)) {
        clearTimeout(waiter.timer)
        waiter.reject(new Error('stand-in closed'))
      }
      for (const ex of exchanges) {
        ex.closed = true
        for (const wake of ex.wakers) wake()
      }
      const closed = new Promise<void>((resolve) => server.close(() => resolve()))
      server.closeAllConnections()
      await closed
    },
  }

  function recordAbort(request: RecordedRequest): void {
    standIn.aborted.push(request)
    const waiter = abortWaiters.shift()
    if (!waiter) {
      unclaimedAborts.push(request)
      return
    }
    clearTimeout(waiter.timer)
    waiter.resolve(request)
  }

  function onRequest(req: IncomingMessage, res: ServerResponse): void {
    // A server-side IncomingMessage always has a method and a url.
    const record: RecordedRequest = {
      method: req.method as string,
      path: (req.url as string).split('?')[0] as string,
      query: /\?.*$/.exec(req.url as string)?.[0] ?? '',
      headers: { ...req.headers },
      body: undefined,
      rawBody: '',
    }
    standIn.requests.push(record)
    const ex: Exchange = {
      req,
      res,
      record,
      standIn,
      knobs: { ...standIn.options, ...standIn.options.faultFor?.(record) },
      closed: closing,
      settled: false,
      startedAt: process.hrtime.bigint(),
      loadedAt: process.hrtime.bigint(),
      wakers: new Set(),
      sleep(ms) {
        return new Promise<boolean>((resolve) => {
          if (ex.closed || ms <= 0) {
            resolve(!ex.closed)
            return
          }
          const wake = () => {
            clearTimeout(timer)
            timers.delete(timer)
            ex.wakers.delete(wake)
            resolve(!ex.closed)
          }
          const timer = setTimeout(wake, ms)
          timers.add(timer)
          ex.wakers.add(wake)
        })
      },
    }
    exchanges.add(ex)
    res.on('error', () => {})
    res.on('close', () => {
      exchanges.delete(ex)
      const early = !ex.settled && !res.writableEnded
      ex.closed = true
      for (const wake of ex.wakers) wake()
      if (early && !closing) recordAbort(record)
    })
    dispatch(ex).catch((error: unknown) => {
      if (ex.closed) return
      if (error instanceof HttpError) return sendError(ex, error.status, error.message)
      /* c8 ignore next 2 -- a bug in a handler: surface it as Ollama would, a 500 or a cut stream */
      if (res.headersSent) return crash(ex)
      sendError(ex, 500, error instanceof Error ? error.message : String(error))
    })
  }

  const server = createServer(onRequest)
  server.requestTimeout = 0
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve())
  })
  const address = server.address()
  /* c8 ignore next -- listen() on a TCP port always yields an AddressInfo */
  if (address === null || typeof address === 'string') throw new Error('no address')
  standIn.url = `http://127.0.0.1:${address.port}`
  return standIn
}
