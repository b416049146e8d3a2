import { envSchema } from 'env-schema'
import Type, { type Static, type TSchema } from 'typebox'
import { secretsKeyProblems } from '../sources/secrets.ts'

// The only module that reads the environment. Each service validates its own schema at boot
// and gets a typed, immutable config object; a bad value stops the process with a message
// that names the variable (and never echoes a secret's value).

const LogLevel = Type.Union(
  ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => Type.Literal(l)),
  { default: 'info', description: 'pino log level' },
)

const Url = (description: string, def: string, schemes: string) =>
  Type.String({ default: def, pattern: `^(${schemes})://[^\\s]+$`, description })

const Port = (def: number, description: string) =>
  Type.Integer({ minimum: 0, maximum: 65535, default: def, description })

const Millis = (def: number, description: string) =>
  Type.Integer({ minimum: 0, maximum: 24 * 3600 * 1000, default: def, description })

// Comma-separated API keys. Each key must be long enough to be a secret; the check runs on the
// split list in parseKeys() so the error names the variable without printing the key.
const KeyList = (description: string) => Type.String({ default: '', description })

export const CommonEnvSchema = Type.Object({
  LOG_LEVEL: LogLevel,
  REDIS_URL: Url('Redis for BullMQ queues', 'redis://127.0.0.1:6379', 'redis|rediss'),
  OLLAMA_URL: Url('Base URL of the Ollama server', 'http://127.0.0.1:11434', 'http|https'),
  CHAT_MODEL: Type.String({
    minLength: 1,
    default: 'llama3.2',
    description: 'Model used when a chat/generate request names none',
  }),
  EMBED_MODEL: Type.String({
    minLength: 1,
    default: 'nomic-embed-text',
    description: 'Embedding model for the Confluence index',
  }),
  EMBED_QUERY_PREFIX: Type.String({
    default: '',
    description:
      'Text put before a search query before it is embedded (nomic-embed-text: `search_query: `). Unset: the default for EMBED_MODEL; `none`: no prefix',
  }),
  EMBED_DOCUMENT_PREFIX: Type.String({
    default: '',
    description:
      'Text put before each chunk before it is embedded (nomic-embed-text: `search_document: `); the index records it and a change re-embeds. Unset: the default for EMBED_MODEL; `none`: no prefix',
  }),
  LANCEDB_URI: Type.String({
    minLength: 1,
    default: './data/lancedb',
    description: 'LanceDB directory, or s3://bucket/prefix for object storage',
  }),
  SHUTDOWN_GRACE_MS: Millis(10_000, 'How long a shutdown may take before the process exits hard'),
  CONFLUENCE_ALLOWED_HOSTS: Type.String({
    default: '',
    description:
      'Comma-separated hosts a source base_url may name when they resolve to loopback, private or link-local addresses (public hosts are always allowed)',
  }),
  EXPORTS_DIR: Type.String({
    minLength: 1,
    default: './data/exports',
    description:
      'Where uploaded HTML space export zips are kept (a volume shared by api and worker)',
  }),
  SECRETS_KEY: Type.String({
    default: '',
    description:
      'Key that encrypts source credentials in Redis: 32 random bytes as base64 or 64 hex digits (`openssl rand -base64 32`), the same for api and worker. Unset: credentials are refused (`./confluence-bot start` generates one in data/secrets.key)',
  }),
  SECRETS_KEY_PREVIOUS: Type.String({
    default: '',
    description:
      'Comma-separated former SECRETS_KEY values, still accepted to decrypt while credentials are re-encrypted under SECRETS_KEY (rotation)',
  }),
  METRICS_TOKEN: Type.String({
    default: '',
    pattern: '^$|^\\S{16,}$',
    description:
      "Bearer token a Prometheus scrape presents to /metrics (16+ characters, no spaces); the api also takes an admin key there. Unset: the worker's /metrics is open and the api's needs an admin key (open when auth is off)",
  }),
})

export const ApiEnvSchema = Type.Object({
  ...CommonEnvSchema.properties,
  HOST: Type.String({
    minLength: 1,
    default: '127.0.0.1',
    description: 'Interface the API listens on (0.0.0.0 in containers)',
  }),
  PORT: Port(3000, 'API port'),
  API_KEYS: KeyList(
    'Reader API keys (Bearer), comma-separated; `KEY:SPACE+SPACE` limits a key to those Confluence spaces',
  ),
  ADMIN_API_KEYS: KeyList(
    'Admin API keys (Bearer), comma-separated; `KEY:SPACE+SPACE` limits what a key finds to those Confluence spaces',
  ),
  BODY_LIMIT: Type.Integer({
    minimum: 1024,
    default: 32 * 1024 * 1024,
    description: 'Largest request body in bytes (413 above it)',
  }),
  OLLAMA_CONNECT_TIMEOUT_MS: Millis(
    5_000,
    'Time to open a connection to Ollama; model loads and pulls have no timeout (answers: ANSWER_MAX_MS)',
  ),
  OLLAMA_RESPONSE_TIMEOUT_MS: Millis(
    30_000,
    'Time Ollama may take to begin answering a call that loads no model (model list, blob check, the start of a model import): 504 above it; 0: no limit',
  ),
  HEALTH_TIMEOUT_MS: Millis(2_000, 'Time each readiness check may take'),
  EXPORT_UPLOAD_LIMIT: Type.Integer({
    minimum: 1024,
    default: 2 * 1024 * 1024 * 1024,
    description: 'Largest HTML space export zip the upload route accepts, in bytes',
  }),
  MODEL_IMPORT_LIMIT: Type.Integer({
    minimum: 1024,
    default: 64 * 1024 * 1024 * 1024,
    description: 'Largest GGUF file POST /api/models/import accepts, in bytes (413 above it)',
  }),
  MODEL_IMPORT_DIR: Type.String({
    minLength: 1,
    default: './data/model-imports',
    description:
      'Where POST /api/models/import keeps an uploaded GGUF until Ollama has it (removed afterwards; needs room for the largest file)',
  }),
  MODEL_IMPORT_CONCURRENCY: Type.Integer({
    minimum: 1,
    maximum: 64,
    default: 1,
    description:
      'Model imports one api process runs at once (each holds a multi-GB file in MODEL_IMPORT_DIR); 503 with Retry-After above it',
  }),
  MODEL_IMPORT_LOCK_MS: Type.Integer({
    minimum: 1_000,
    maximum: 3_600_000,
    default: 30_000,
    description:
      "How long a model import's hold on its name (in Redis, for every api replica) outlives an api that died mid-import; renewed while the import runs",
  }),
  REQUEST_TIMEOUT_MS: Millis(
    300_000,
    'Time a client may take to send a whole request (headers and body, an export upload included); answers are limited by ANSWER_MAX_MS',
  ),
  API_ALLOWED_HOSTS: Type.String({
    default: '',
    description:
      'Comma-separated host names the API answers to (the Host header); `*` for any. Default: any when HOST is not a loopback address, else localhost names and IP addresses only',
  }),
  SEARCH_PER_PAGE: Type.Integer({
    minimum: 1,
    maximum: 50,
    default: 2,
    description:
      'At most this many chunks of one page among the hits of a search or a grounded answer',
  }),
  RAG_ENABLED: Type.Boolean({
    default: true,
    description:
      'Ground /api/chat answers in the Confluence index (a request turns it off with rag.enabled:false); false makes chat a plain Ollama gateway',
  }),
  RAG_TOP_K: Type.Integer({
    minimum: 1,
    maximum: 50,
    default: 6,
    description: 'Excerpts a grounded answer retrieves when the request names no top_k',
  }),
  RAG_MIN_SIMILARITY: Type.Number({
    minimum: -1,
    maximum: 1,
    default: 0.35,
    description:
      'Relevance floor: an excerpt whose cosine similarity to the question is below this is not given to the model; when none passes, the answer says the indexed spaces hold nothing on it (-1 lets every excerpt through)',
  }),
  RAG_MAX_CONTEXT_TOKENS: Type.Integer({
    minimum: 1024,
    maximum: 1_048_576,
    default: 16_384,
    description:
      'Largest context window (num_ctx) a grounded answer asks Ollama for; memory on the Ollama side grows with it',
  }),
  RAG_REWRITE_FOLLOW_UPS: Type.Boolean({
    default: true,
    description:
      'Rewrite a follow-up question into a standalone search query with one short call to the chat model',
  }),
  CONVERSATION_TTL_S: Type.Integer({
    minimum: 60,
    maximum: 365 * 24 * 3600,
    default: 30 * 24 * 3600,
    description: 'How long a conversation is kept after its last turn, in seconds',
  }),
  CONVERSATION_MAX_TURNS: Type.Integer({
    minimum: 2,
    maximum: 1000,
    default: 50,
    description: 'Messages a conversation keeps (the oldest go first)',
  }),
  API_ALLOWED_ORIGINS: Type.String({
    default: '',
    description:
      'Comma-separated web origins (scheme://host[:port]) whose pages may call the API from a browser, besides the API itself; `*` for any',
  }),
  RATE_LIMIT_PER_MINUTE: Type.Integer({
    minimum: 0,
    maximum: 1_000_000,
    default: 300,
    description:
      'Requests one API key (or, without a key, one IP address) may make per minute, counted in Redis across every api replica; 429 above it; 0: no limit',
  }),
  ANSWER_CONCURRENCY: Type.Integer({
    minimum: 1,
    maximum: 120,
    default: 64,
    description:
      'Answers from the chat model and embeddings asked for by clients that one api process runs at once (below its 128 connections to Ollama); 503 above it',
  }),
  ANSWER_CONCURRENCY_PER_KEY: Type.Integer({
    minimum: 1,
    maximum: 120,
    default: 8,
    description:
      'Answers and embeddings one API key (or IP address, without keys) may have running at once in one api process; 429 above it',
  }),
  ANSWER_MAX_MS: Millis(
    600_000,
    'Longest an answer from the chat model may run before it is ended with an error (0: no limit); an answer or embedding whose client has not taken all of it this long plus a grace (the smaller of this and 10 s) after its request arrived has its connection closed; model pulls are not limited',
  ),
  PRESSURE_MAX_EVENT_LOOP_DELAY_MS: Type.Integer({
    minimum: 0,
    maximum: 60_000,
    default: 500,
    description:
      'Mean event-loop delay over a second above which the API answers 503 with Retry-After instead of taking more work (probes and /metrics still answer); 0 turns the check off',
  }),
  PRESSURE_MAX_EVENT_LOOP_UTILIZATION: Type.Number({
    minimum: 0,
    maximum: 1,
    default: 0.98,
    description:
      'Share of a second the event loop may be busy before the API answers 503 with Retry-After (probes and /metrics still answer); 0 turns the check off',
  }),
})

export const WorkerEnvSchema = Type.Object({
  ...CommonEnvSchema.properties,
  WORKER_HEALTH_HOST: Type.String({
    minLength: 1,
    default: '127.0.0.1',
    description: 'Interface of the worker health endpoint',
  }),
  WORKER_HEALTH_PORT: Port(3001, 'Worker health endpoint port (0 picks a free port)'),
  WORKER_CONCURRENCY: Type.Integer({
    minimum: 1,
    maximum: 64,
    default: 4,
    description: 'Jobs a worker process runs at once per queue',
  }),
  WORKER_LOCK_MS: Millis(
    30_000,
    'Lock a worker holds on an active job; a job whose worker died is retried after it lapses',
  ),
  CONFLUENCE_USERNAME: Type.String({
    default: '',
    description:
      'Default Confluence user (Cloud: e-mail) for sources registered without credentials',
  }),
  CONFLUENCE_TOKEN: Type.String({
    default: '',
    description:
      'Default Confluence API token, PAT or password (Bearer when CONFLUENCE_USERNAME is empty)',
  }),
  CONFLUENCE_REQUESTS_PER_SECOND: Type.Number({
    exclusiveMinimum: 0,
    maximum: 1000,
    default: 5,
    description:
      'Requests per second to one Confluence source, across all workers (per-source override: rate_limit)',
  }),
  CONFLUENCE_TIMEOUT_MS: Millis(
    60_000,
    'Time one Confluence request may take before it is retried',
  ),
  SYNC_BATCH_PAGES: Type.Integer({
    minimum: 1,
    maximum: 250,
    default: 25,
    description: 'Changed pages fetched, converted, embedded and written per batch job',
  }),
  SYNC_MAX_DELETE_SHARE: Type.Number({
    minimum: 0,
    maximum: 1,
    default: 0.2,
    description:
      'Largest share of a space a sync may delete unless it is run with force (guards against a broken credential wiping the index)',
  }),
  EMBED_BATCH_SIZE: Type.Integer({
    minimum: 1,
    maximum: 1024,
    default: 32,
    description: 'Chunks per Ollama embed call',
  }),
  // Measured by `pnpm bench search`: an unindexed LanceDB vector query of a few thousand rows
  // already takes several times a plain scan of them, an indexed one a few ms at any size,
  // and the index builds in about a second at these sizes.
  VECTOR_INDEX_MIN_ROWS: Type.Integer({
    minimum: 256,
    default: 1_000,
    description: 'Rows from which the chunk table gets a vector index (smaller tables are scanned)',
  }),
  // Measured by `pnpm bench search` at 100k chunks: each row the indices do not cover yet costs
  // a query about 0.1 ms (5,000 of them: keyword p50 467 ms), and folding them in takes a few
  // seconds of the writer lock. A 5,000-row sync into a 30k-chunk indexed table (100-row
  // writes, queries between them; 6 ms keyword, 12 ms hybrid p50 once all folded):
  //   folds every | keyword p50 / p95 | hybrid p50 / p95 | folds × lock held each
  //   never       |    271 /  769 ms  |    291 /  851 ms | (one 1.5 s fold at the end)
  //   2,000       |    140 /  421 ms  |    139 /  536 ms |  2 × 1.5–2.1 s
  //   1,000       |     80 /  177 ms  |     94 /  212 ms |  5 × 0.8–1.1 s
  //   500         |     34 /   85 ms  |     50 /  107 ms | 10 × 0.5–0.9 s
  // A fold costs about half a second whatever it folds, more on a larger table: 1,000 keeps a
  // query under a fifth of a second while a sync spends a few percent of its lock time folding.
  INDEX_FOLD_ROWS: Type.Integer({
    minimum: 1,
    default: 1_000,
    description:
      'Rows written to an indexed chunk table, not yet in its indices, at which a sync under way queues an index fold',
  }),
})

type ApiEnv = Static<typeof ApiEnvSchema>
type WorkerEnv = Static<typeof WorkerEnvSchema>

export type ApiKeys = {
  readonly readers: readonly string[]
  readonly admins: readonly string[]
  /**
   * Keys limited to some Confluence spaces (`KEY:ENG+OPS`) → those space keys. A key not in the
   * map sees every space.
   */
  readonly spaces: ReadonlyMap<string, readonly string[]>
}

export type ApiConfig = Readonly<Omit<ApiEnv, 'API_KEYS' | 'ADMIN_API_KEYS'>> & {
  readonly apiKeys: ApiKeys
}
export type WorkerConfig = Readonly<WorkerEnv>

export type Env = Record<string, string | undefined>

export class ConfigError extends Error {
  override name = 'ConfigError'
  readonly problems: readonly string[]
  constructor(problems: readonly string[]) {
    super(`Invalid configuration:\n  - ${problems.join('\n  - ')}`)
    this.problems = problems
  }
}

export const MIN_API_KEY_LENGTH = 16

type AjvError = { instancePath: string; message: string }

// Every setting has a default, so each error is about one variable's value: `/PORT` → `PORT`.
const describe = (error: AjvError): string => `${error.instancePath.slice(1)} ${error.message}`

function validate<S extends TSchema>(schema: S, env: Env): Static<S> {
  // Only the variables the schema knows are read, so unrelated environment is never copied.
  const known = Object.keys((schema as unknown as { properties: object }).properties)
  const data: Record<string, string> = {}
  for (const key of known) {
    const value = env[key]
    if (value !== undefined && value !== '') data[key] = value
  }
  try {
    return envSchema<Static<S>>({
      schema: schema as unknown as object,
      data,
      dotenv: false,
      ajv: { customOptions: (ajv) => ajv },
    }) as Static<S>
  } catch (err) {
    throw new ConfigError((err as { errors: AjvError[] }).errors.map(describe))
  }
}

// A Confluence space key: a global space's letters and digits (Confluence itself stores them in
// capitals), or a personal space's `~` and user name or account id (`~jdoe`, `~557058:0c1f…`).
const GLOBAL_SPACE = /^[A-Za-z0-9_]{1,255}$/
const PERSONAL_SPACE = /^~[A-Za-z0-9_.@:-]{1,254}$/

/**
 * A space key as the index holds it: a global key in capitals, a personal one as written;
 * undefined when it is no Confluence space key.
 */
export function canonicalSpaceKey(raw: string): string | undefined {
  if (GLOBAL_SPACE.test(raw)) return raw.toUpperCase()
  return PERSONAL_SPACE.test(raw) ? raw : undefined
}

/** Where a key was first listed, and the spaces it was given there ('' = every space). */
type Seen = Map<string, { where: string; spaces: string }>

/**
 * Splits one variable's `KEY[:SPACE+SPACE…]` list. Problems name the variable and the entry's
 * position, never the key: the part after `:` may be a key's own text when a key holds a colon.
 */
function parseKeys(
  raw: string,
  variable: string,
  problems: string[],
  spaces: Map<string, readonly string[]>,
  seen: Seen,
): string[] {
  const entries = raw
    .split(',')
    .map((k) => k.trim())
    .filter((k) => k.length > 0)
  const keys: string[] = []
  entries.forEach((entry, i) => {
    const where = `${variable} key #${i + 1}`
    const colon = entry.indexOf(':')
    const key = colon === -1 ? entry : entry.slice(0, colon).trim()
    if (key.length < MIN_API_KEY_LENGTH) {
      problems.push(
        `${where} is shorter than ${MIN_API_KEY_LENGTH} characters (value not shown; a ":" starts the key's space list)`,
      )
      return
    }
    let limited: string[] | undefined
    if (colon !== -1) {
      const names = entry
        .slice(colon + 1)
        .split('+')
        .map((s) => s.trim())
      const bad = names.findIndex((s) => canonicalSpaceKey(s) === undefined)
      if (bad !== -1) {
        problems.push(
          `${where} has an invalid space key #${bad + 1} after ":" (expected KEY:SPACE+SPACE with Confluence space keys such as ENG or ~jdoe; value not shown)`,
        )
        return
      }
      limited = [...new Set(names.map((s) => canonicalSpaceKey(s) as string))]
    }
    const signature = limited ? [...limited].sort().join('+') : ''
    const before = seen.get(key)
    if (before && before.spaces !== signature) {
      problems.push(`${where} repeats ${before.where} with other spaces (value not shown)`)
      return
    }
    if (!before) {
      seen.set(key, { where, spaces: signature })
      if (limited) spaces.set(key, Object.freeze(limited))
    }
    keys.push(key)
  })
  return keys
}

export function loadApiConfig(env: Env = process.env): ApiConfig {
  const { API_KEYS, ADMIN_API_KEYS, ...rest } = validate(ApiEnvSchema, env)
  const problems: string[] = []
  const spaces = new Map<string, readonly string[]>()
  const seen: Seen = new Map()
  const readers = parseKeys(API_KEYS, 'API_KEYS', problems, spaces, seen)
  const admins = parseKeys(ADMIN_API_KEYS, 'ADMIN_API_KEYS', problems, spaces, seen)
  problems.push(...secretsKeyProblems(rest.SECRETS_KEY, rest.SECRETS_KEY_PREVIOUS))
  if (problems.length > 0) throw new ConfigError(problems)
  return Object.freeze({ ...rest, apiKeys: Object.freeze({ readers, admins, spaces }) })
}

export function loadWorkerConfig(env: Env = process.env): WorkerConfig {
  const config = validate(WorkerEnvSchema, env)
  const problems = secretsKeyProblems(config.SECRETS_KEY, config.SECRETS_KEY_PREVIOUS)
  if (problems.length > 0) throw new ConfigError(problems)
  return Object.freeze(config)
}

/**
 * What the Ollama pod's download init container reads (k8s/components/model-downloads; the same
 * ConfigMap keys as init-models.sh): the two models, their sources, where verified downloads go,
 * and Ollama's model directory, read only to skip models already on the volume.
 */
export function loadModelFetchSettings(env: Env = process.env) {
  return {
    models: [env.CHAT_MODEL, env.EMBED_MODEL].filter((name): name is string => !!name),
    sources: env.MODEL_SOURCES ?? '',
    downloadDir: env.MODEL_DOWNLOAD_DIR ?? '/downloads',
    modelsDir: env.OLLAMA_MODELS ?? '/root/.ollama/models',
  }
}

/** Auth is off when no key of either role is configured (local single-user use). */
export function authEnabled(config: Pick<ApiConfig, 'apiKeys'>): boolean {
  return config.apiKeys.readers.length + config.apiKeys.admins.length > 0
}

/**
 * A URL with its user info and query values hidden, safe to put in logs and error messages
 * (which reach any reader key: an account name on an internal server is nobody else's business
 * either).
 */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url)
    if (u.username) u.username = '***'
    if (u.password) u.password = '***'
    // A query may carry a credential (`?token=…`): keep the names, hide every value; a part
    // without `=` is hidden whole, since it may be the secret itself.
    u.search = u.search
      .slice(1)
      .split('&')
      .map((part) => {
        const eq = part.indexOf('=')
        if (eq !== -1) return `${part.slice(0, eq)}=***`
        return part === '' ? part : '***'
      })
      .join('&')
    return u.toString().replace(/\/$/, '')
  } catch {
    return '<invalid url>'
  }
}
