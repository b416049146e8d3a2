// The wire contract: every non-2xx status the served OpenAPI document promises, for every
// operation, is provoked over a real TCP socket by a real client with a deadline, and its answer
// checked (status, Content-Type, the {error, message, statusCode} body). The list of cases is
// derived from the document: a route or status added without a case here fails the suite, and so
// does a case for a status the document no longer lists. Statuses that mean the same on every
// operation (401, 403, and 413/415 on a JSON body) are derived from the document too; every other
// one has its case in CASES. `app.inject` never showed the hang this guards against (an error on a
// request that carried a body was never answered), so nothing here uses it.
import { once } from 'node:events'
import { readFile } from 'node:fs/promises'
import { createServer } from 'node:http'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import { ADMIN_KEY, listenTestApp, READER_KEY, tempDir } from '../helpers/api.ts'
import { writeZip } from '../helpers/confluence-export.ts'
import { silentOllama, standIn } from '../helpers/ollama.ts'
import { freePort, startRedis } from '../helpers/redis.ts'
import { type WireAnswer, type WireRequest, wire } from '../helpers/wire.ts'

const BODY_LIMIT = 64 * 1024
const EXPORT_UPLOAD_LIMIT = 16 * 1024
// A source host the check lets through without DNS (nothing ever connects to it here).
const SOURCE_HOST = 'confluence.invalid'
const UNKNOWN_SOURCE = 'src_000000000000'
const UNKNOWN_CONVERSATION = `conv_${'A'.repeat(22)}`

type Json = Record<string, unknown>
type DocumentedResponse = { content?: Record<string, { schema?: { $ref?: string } }> }
type Operation = {
  security?: unknown[]
  requestBody?: { content?: Record<string, unknown> }
  responses?: Record<string, DocumentedResponse>
}
type Document = { paths: Record<string, Record<string, Operation>> }

/**
 * The gateways a case can talk to ('limited': its admin key is past its rate limit; 'stuck': its
 * Ollama accepts connections and never answers).
 */
type World = 'up' | 'down' | 'broken' | 'limited' | 'stuck'

/** One request that must get the case's status. */
type Probe = {
  /** What the request does wrong, for the assertion messages. */
  what: string
  world?: World
  method: string
  /** Path and query. */
  path: string
  key?: string
  /** JSON body (serialized), or raw bytes with `type` (a function: sent chunked). */
  json?: unknown
  raw?: string | Buffer | (() => AsyncIterable<Buffer>)
  /** More request headers. */
  headers?: Record<string, string>
  /** Content-Type; application/json for `json`. */
  type?: string
  /** The `error` code the contract names for this answer. */
  error?: string
}

type Ctx = {
  /** Registers a source over the wire and returns its id. */
  createSource(name: string): Promise<string>
  /** Uploads `exportZip` over the wire as an export source and returns its id. */
  createExport(name: string): Promise<string>
  /** A minimal readable HTML space export zip. */
  exportZip: Buffer
  /** A source name no other case uses. */
  name(label: string): string
}

type Case = {
  probes(ctx: Ctx): Promise<Probe[]> | Probe[]
  /** Checks a body the document does not describe as the Error schema (health's 503). */
  body?(t: Test, json: Json): void
}

const chatBody = { messages: [{ role: 'user', content: 'hi' }] }
const generateBody = { prompt: 'hi' }
const sourceBody = (name: string, base_url = `https://${SOURCE_HOST}/wiki`) => ({
  name,
  kind: 'cloud',
  base_url,
  spaces: ['ENG'],
})
const reader = READER_KEY
const GGUF_TYPE = 'application/octet-stream'
const GGUF_FILE = Buffer.concat([Buffer.from('GGUF'), Buffer.alloc(1024, 3)])
const admin = ADMIN_KEY

/** Ways a JSON route refuses a body as 400, sent to `path` with `key`. */
const badBodies = (path: string, key: string, invalid: unknown): Probe[] => [
  { what: 'a body that fails the schema', method: 'POST', path, key, json: invalid },
  { what: 'an empty JSON body', method: 'POST', path, key, raw: '', type: 'application/json' },
  { what: 'malformed JSON', method: 'POST', path, key, raw: '{"oops', type: 'application/json' },
]

// Scopes that answer in another API's error shape prove their own contract the same way (every
// documented status over a real socket, and the body's shape): /ollama answers Ollama's
// `{error}` (tests/api/ollama-compat/statuses.test.ts), /v1 OpenAI's `{error:{message, type,
// param, code}}` (tests/api/openai/surface.test.ts).
const OWN_CONTRACT = /^\/(ollama|v1)\//

// Operations only an admin key may call (README: "who").
const adminOnly = (path: string) =>
  /^\/(admin\/|api\/(pull|models\/import|sources|jobs)\b)/.test(path)

const CASES: Record<string, Case> = {
  'GET /api/health 503': {
    probes: () => [{ what: 'Redis is down', world: 'down', method: 'GET', path: '/api/health' }],
    body: (t, json) => {
      t.equal(json.status, 'down')
      t.match(json.checks, { redis: { status: 'down' }, ollama: { status: 'down' } })
    },
  },

  'POST /api/chat 400': {
    probes: () => badBodies('/api/chat', reader, { messages: 'hi' }),
  },
  'POST /api/chat 404': {
    probes: () => [
      {
        what: 'a model Ollama does not have',
        method: 'POST',
        path: '/api/chat',
        key: reader,
        json: { ...chatBody, model: 'no-such-model' },
        error: 'model_not_found',
      },
    ],
  },
  'POST /api/chat 502': {
    probes: () => [
      {
        what: 'an upstream answering 500',
        world: 'broken',
        method: 'POST',
        path: '/api/chat',
        key: reader,
        json: chatBody,
      },
    ],
  },
  'POST /api/chat 503': {
    probes: () => [
      {
        what: 'Ollama is down',
        world: 'down',
        method: 'POST',
        path: '/api/chat',
        key: reader,
        json: chatBody,
        error: 'ollama_unavailable',
      },
    ],
  },

  'POST /api/search 400': {
    probes: () => [
      ...badBodies('/api/search', reader, { query: '' }),
      {
        what: 'a time that is not ISO 8601',
        method: 'POST',
        path: '/api/search',
        key: reader,
        json: { query: 'deploy', updated_after: 'last tuesday' },
        error: 'validation_failed',
      },
    ],
  },
  'POST /api/search 503': {
    probes: () => [
      {
        what: 'the index cannot be read',
        world: 'broken',
        method: 'POST',
        path: '/api/search',
        key: reader,
        json: { query: 'deploy' },
        error: 'index_unavailable',
      },
    ],
  },

  'GET /api/spaces 503': {
    probes: () => [
      {
        what: 'the index cannot be read',
        world: 'broken',
        method: 'GET',
        path: '/api/spaces',
        key: reader,
        error: 'index_unavailable',
      },
    ],
  },

  'POST /mcp 400': {
    probes: () => badBodies('/mcp', reader, { hello: 'not a JSON-RPC message' }),
  },
  'POST /mcp 406': {
    probes: () => [
      {
        what: 'an Accept without text/event-stream',
        method: 'POST',
        path: '/mcp',
        key: reader,
        json: { jsonrpc: '2.0', id: 1, method: 'tools/list' },
        headers: { accept: 'application/json' },
      },
    ],
    body: (t, json) => t.match(json, { jsonrpc: '2.0', error: { message: /text\/event-stream/ } }),
  },

  'POST /api/generate 400': {
    probes: () => badBodies('/api/generate', reader, { prompt: 42 }),
  },
  'POST /api/generate 404': {
    probes: () => [
      {
        what: 'a model Ollama does not have',
        method: 'POST',
        path: '/api/generate',
        key: reader,
        json: { ...generateBody, model: 'no-such-model' },
        error: 'model_not_found',
      },
    ],
  },
  'POST /api/generate 502': {
    probes: () => [
      {
        what: 'an upstream answering 500',
        world: 'broken',
        method: 'POST',
        path: '/api/generate',
        key: reader,
        json: generateBody,
      },
    ],
  },
  'POST /api/generate 503': {
    probes: () => [
      {
        what: 'Ollama is down',
        world: 'down',
        method: 'POST',
        path: '/api/generate',
        key: reader,
        json: generateBody,
        error: 'ollama_unavailable',
      },
    ],
  },

  'GET /api/models 502': {
    probes: () => [
      {
        what: 'an upstream answering 500',
        world: 'broken',
        method: 'GET',
        path: '/api/models',
        key: reader,
      },
    ],
  },
  'GET /api/models 504': {
    probes: () => [
      {
        what: 'Ollama never answers',
        world: 'stuck',
        method: 'GET',
        path: '/api/models',
        key: reader,
        error: 'ollama_timeout',
      },
    ],
  },
  'GET /api/models 503': {
    probes: () => [
      {
        what: 'Ollama is down',
        world: 'down',
        method: 'GET',
        path: '/api/models',
        key: reader,
        error: 'ollama_unavailable',
      },
    ],
  },

  'POST /api/pull 400': {
    probes: () => [
      ...badBodies('/api/pull', admin, { name: 42 }),
      { what: 'no model named', method: 'POST', path: '/api/pull', key: admin, json: {} },
    ],
  },
  'POST /api/pull 404': {
    probes: () => [
      {
        what: 'a model the registry does not have',
        method: 'POST',
        path: '/api/pull',
        key: admin,
        json: { name: 'missing-model' },
        error: 'model_not_found',
      },
    ],
  },
  'POST /api/pull 502': {
    probes: () => [
      {
        what: 'an upstream answering 500',
        world: 'broken',
        method: 'POST',
        path: '/api/pull',
        key: admin,
        json: { name: 'llama3.2' },
      },
    ],
  },
  'POST /api/pull 503': {
    probes: () => [
      {
        what: 'Ollama is down',
        world: 'down',
        method: 'POST',
        path: '/api/pull',
        key: admin,
        json: { name: 'llama3.2' },
        error: 'ollama_unavailable',
      },
    ],
  },

  'POST /api/models/import 400': {
    probes: () => [
      {
        what: 'a digest that is not the sha256 of the body',
        method: 'POST',
        path: `/api/models/import?name=cut&digest=sha256:${'0'.repeat(64)}`,
        key: admin,
        raw: GGUF_FILE,
        type: GGUF_TYPE,
        error: 'digest_mismatch',
      },
      {
        what: 'no name',
        method: 'POST',
        path: '/api/models/import',
        key: admin,
        raw: GGUF_FILE,
        type: GGUF_TYPE,
      },
    ],
  },
  'POST /api/models/import 409': {
    probes: () => [
      {
        what: 'a model of that name exists',
        method: 'POST',
        path: '/api/models/import?name=llama3.2',
        key: admin,
        raw: GGUF_FILE,
        type: GGUF_TYPE,
        error: 'model_exists',
      },
    ],
  },
  'POST /api/models/import 413': {
    probes: () => [
      {
        what: 'a file over MODEL_IMPORT_LIMIT',
        method: 'POST',
        path: '/api/models/import?name=huge',
        key: admin,
        raw: Buffer.concat([GGUF_FILE, Buffer.alloc(EXPORT_UPLOAD_LIMIT, 1)]),
        type: GGUF_TYPE,
        error: 'payload_too_large',
      },
    ],
  },
  'POST /api/models/import 415': {
    probes: () => [
      {
        what: 'a JSON body',
        method: 'POST',
        path: '/api/models/import?name=json',
        key: admin,
        json: { gguf: 'no' },
        error: 'unsupported_media_type',
      },
      {
        what: 'a body that is not a GGUF file',
        method: 'POST',
        path: '/api/models/import?name=not-gguf',
        key: admin,
        raw: Buffer.from('PK\u0003\u0004 an archive'),
        type: GGUF_TYPE,
        error: 'not_gguf',
      },
    ],
  },
  'POST /api/models/import 502': {
    probes: () => [
      {
        what: 'an upstream answering 500',
        world: 'broken',
        method: 'POST',
        path: '/api/models/import?name=broken',
        key: admin,
        raw: GGUF_FILE,
        type: GGUF_TYPE,
        error: 'ollama_error',
      },
    ],
  },
  'POST /api/models/import 504': {
    probes: () => [
      {
        what: 'Ollama never answers',
        world: 'stuck',
        method: 'POST',
        path: '/api/models/import?name=stuck',
        key: admin,
        raw: GGUF_FILE,
        type: GGUF_TYPE,
        error: 'ollama_timeout',
      },
    ],
  },
  'POST /api/models/import 503': {
    probes: () => [
      {
        what: 'Ollama is down',
        world: 'down',
        method: 'POST',
        path: '/api/models/import?name=down',
        key: admin,
        raw: GGUF_FILE,
        type: GGUF_TYPE,
        error: 'ollama_unavailable',
      },
    ],
  },

  'POST /api/sources 400': {
    probes: (c) => [
      ...badBodies('/api/sources', admin, { ...sourceBody(c.name('bad')), kind: 'export' }),
      {
        what: 'a private base_url',
        method: 'POST',
        path: '/api/sources',
        key: admin,
        json: sourceBody(c.name('private'), 'http://10.1.2.3/wiki'),
      },
    ],
  },
  'POST /api/sources 409': {
    probes: async (c) => {
      const name = c.name('taken')
      await c.createSource(name)
      return [
        {
          what: 'a name taken',
          method: 'POST',
          path: '/api/sources',
          key: admin,
          json: sourceBody(name),
          error: 'source_exists',
        },
      ]
    },
  },
  'POST /api/sources 503': {
    probes: (c) => [
      {
        what: 'Redis is down',
        world: 'down',
        method: 'POST',
        path: '/api/sources',
        key: admin,
        json: sourceBody(c.name('down')),
        error: 'redis_unavailable',
      },
    ],
  },
  'GET /api/sources 503': {
    probes: () => [
      {
        what: 'Redis is down',
        world: 'down',
        method: 'GET',
        path: '/api/sources',
        key: admin,
        error: 'redis_unavailable',
      },
    ],
  },
  'GET /api/sources/{id} 400': {
    probes: () => [
      { what: 'an id that is no source id', method: 'GET', path: '/api/sources/nope', key: admin },
    ],
  },
  'GET /api/sources/{id} 404': {
    probes: () => [
      {
        what: 'an unknown source',
        method: 'GET',
        path: `/api/sources/${UNKNOWN_SOURCE}`,
        key: admin,
        error: 'source_not_found',
      },
    ],
  },
  'GET /api/sources/{id} 503': {
    probes: () => [
      {
        what: 'Redis is down',
        world: 'down',
        method: 'GET',
        path: `/api/sources/${UNKNOWN_SOURCE}`,
        key: admin,
        error: 'redis_unavailable',
      },
    ],
  },
  'DELETE /api/sources/{id} 400': {
    probes: () => [
      {
        what: 'an id that is no source id',
        method: 'DELETE',
        path: '/api/sources/nope',
        key: admin,
      },
    ],
  },
  'DELETE /api/sources/{id} 404': {
    probes: () => [
      {
        what: 'an unknown source',
        method: 'DELETE',
        path: `/api/sources/${UNKNOWN_SOURCE}`,
        key: admin,
        error: 'source_not_found',
      },
    ],
  },
  'DELETE /api/sources/{id} 503': {
    probes: () => [
      {
        what: 'Redis is down',
        world: 'down',
        method: 'DELETE',
        path: `/api/sources/${UNKNOWN_SOURCE}`,
        key: admin,
        error: 'redis_unavailable',
      },
    ],
  },
  'POST /api/sources/{id}/sync 400': {
    probes: () => [
      {
        what: 'an id that is no source id',
        method: 'POST',
        path: '/api/sources/nope/sync',
        key: admin,
        json: {},
      },
      ...badBodies(`/api/sources/${UNKNOWN_SOURCE}/sync`, admin, { full: 'yes' }).filter(
        // An empty body is a plain sync on this route.
        (probe) => probe.what !== 'an empty JSON body',
      ),
    ],
  },
  'POST /api/sources/{id}/sync 404': {
    probes: () => [
      {
        what: 'an unknown source',
        method: 'POST',
        path: `/api/sources/${UNKNOWN_SOURCE}/sync`,
        key: admin,
        json: {},
        error: 'source_not_found',
      },
    ],
  },
  'POST /api/sources/{id}/sync 503': {
    probes: () => [
      {
        what: 'Redis is down',
        world: 'down',
        method: 'POST',
        path: `/api/sources/${UNKNOWN_SOURCE}/sync`,
        key: admin,
        json: { full: true },
        error: 'redis_unavailable',
      },
    ],
  },

  'POST /api/sources/export 400': {
    probes: (c) => [
      {
        what: 'a body that is not a zip',
        method: 'POST',
        path: `/api/sources/export?name=${c.name('garbage')}`,
        key: admin,
        raw: Buffer.from('this is not a zip file'),
        type: 'application/zip',
        error: 'invalid_export',
      },
      {
        what: 'no name',
        method: 'POST',
        path: '/api/sources/export',
        key: admin,
        raw: c.exportZip,
        type: 'application/zip',
      },
    ],
  },
  'POST /api/sources/export 409': {
    probes: async (c) => {
      const name = c.name('taken-export')
      await c.createSource(name)
      return [
        {
          what: 'a name taken',
          method: 'POST',
          path: `/api/sources/export?name=${name}`,
          key: admin,
          raw: c.exportZip,
          type: 'application/zip',
          error: 'source_exists',
        },
      ]
    },
  },
  'POST /api/sources/export 413': {
    probes: (c) => [
      {
        what: 'a zip over EXPORT_UPLOAD_LIMIT',
        method: 'POST',
        path: `/api/sources/export?name=${c.name('large')}`,
        key: admin,
        raw: Buffer.alloc(EXPORT_UPLOAD_LIMIT + 1, 1),
        type: 'application/zip',
        error: 'payload_too_large',
      },
    ],
  },
  'POST /api/sources/export 415': {
    probes: (c) => [
      {
        what: 'a JSON body',
        method: 'POST',
        path: `/api/sources/export?name=${c.name('json')}`,
        key: admin,
        json: { zip: 'no' },
        error: 'unsupported_media_type',
      },
    ],
  },
  'POST /api/sources/export 503': {
    probes: (c) => [
      {
        what: 'Redis is down',
        world: 'down',
        method: 'POST',
        path: `/api/sources/export?name=${c.name('down-export')}`,
        key: admin,
        raw: c.exportZip,
        type: 'application/zip',
        error: 'redis_unavailable',
      },
    ],
  },

  'PUT /api/sources/{id}/export 400': {
    probes: async (c) => {
      const id = await c.createExport(c.name('replace-garbage'))
      return [
        {
          what: 'an id that is no source id',
          method: 'PUT',
          path: '/api/sources/nope/export',
          key: admin,
          raw: c.exportZip,
          type: 'application/zip',
        },
        {
          what: 'a body that is not a zip',
          method: 'PUT',
          path: `/api/sources/${id}/export`,
          key: admin,
          raw: Buffer.from('this is not a zip file'),
          type: 'application/zip',
          error: 'invalid_export',
        },
      ]
    },
  },
  'PUT /api/sources/{id}/export 404': {
    probes: (c) => [
      {
        what: 'an unknown source',
        method: 'PUT',
        path: `/api/sources/${UNKNOWN_SOURCE}/export`,
        key: admin,
        raw: c.exportZip,
        type: 'application/zip',
        error: 'source_not_found',
      },
    ],
  },
  'PUT /api/sources/{id}/export 409': {
    probes: async (c) => [
      {
        what: 'a source that is not an export',
        method: 'PUT',
        path: `/api/sources/${await c.createSource(c.name('replace-cloud'))}/export`,
        key: admin,
        raw: c.exportZip,
        type: 'application/zip',
        error: 'not_an_export_source',
      },
    ],
  },
  'PUT /api/sources/{id}/export 413': {
    probes: async (c) => [
      {
        what: 'a zip over EXPORT_UPLOAD_LIMIT',
        method: 'PUT',
        path: `/api/sources/${await c.createExport(c.name('replace-large'))}/export`,
        key: admin,
        raw: Buffer.alloc(EXPORT_UPLOAD_LIMIT + 1, 1),
        type: 'application/zip',
        error: 'payload_too_large',
      },
    ],
  },
  'PUT /api/sources/{id}/export 415': {
    probes: () => [
      {
        what: 'a JSON body',
        method: 'PUT',
        path: `/api/sources/${UNKNOWN_SOURCE}/export`,
        key: admin,
        json: { zip: 'no' },
        error: 'unsupported_media_type',
      },
    ],
  },
  'PUT /api/sources/{id}/export 503': {
    probes: (c) => [
      {
        what: 'Redis is down',
        world: 'down',
        method: 'PUT',
        path: `/api/sources/${UNKNOWN_SOURCE}/export`,
        key: admin,
        raw: c.exportZip,
        type: 'application/zip',
        error: 'redis_unavailable',
      },
    ],
  },

  'GET /api/jobs 400': {
    probes: () => [
      { what: 'a limit of 0', method: 'GET', path: '/api/jobs?limit=0', key: admin },
      {
        what: 'a limit that is no number',
        method: 'GET',
        path: '/api/jobs?limit=many',
        key: admin,
      },
    ],
  },
  'GET /api/jobs 503': {
    probes: () => [
      {
        what: 'Redis is down',
        world: 'down',
        method: 'GET',
        path: '/api/jobs?limit=10',
        key: admin,
        error: 'redis_unavailable',
      },
    ],
  },
  'GET /api/jobs/{id} 400': {
    probes: () => [
      {
        what: 'an id over 200 characters',
        method: 'GET',
        path: `/api/jobs/${'j'.repeat(201)}`,
        key: admin,
      },
      {
        what: 'an id far too long for the router',
        method: 'GET',
        path: `/api/jobs/${'j'.repeat(300)}`,
        key: admin,
      },
      { what: 'a path that is not UTF-8', method: 'GET', path: '/api/jobs/%ff', key: admin },
    ],
  },
  'GET /api/jobs/{id} 404': {
    probes: () => [
      {
        what: 'an unknown job',
        method: 'GET',
        path: '/api/jobs/no-such-job',
        key: admin,
        error: 'job_not_found',
      },
    ],
  },
  'GET /api/jobs/{id} 503': {
    probes: () => [
      {
        what: 'Redis is down',
        world: 'down',
        method: 'GET',
        path: '/api/jobs/no-such-job',
        key: admin,
        error: 'redis_unavailable',
      },
    ],
  },
  'GET /api/conversations 400': {
    probes: () => [
      { what: 'a limit of 0', method: 'GET', path: '/api/conversations?limit=0', key: reader },
    ],
  },
  'GET /api/conversations 503': {
    probes: () => [
      {
        what: 'Redis is down',
        world: 'down',
        method: 'GET',
        path: '/api/conversations',
        key: reader,
        error: 'redis_unavailable',
      },
    ],
  },
  ...Object.fromEntries(
    (['GET', 'DELETE'] as const).flatMap((method) => [
      [
        `${method} /api/conversations/{id} 400`,
        {
          probes: () => [
            { what: 'a malformed id', method, path: '/api/conversations/nope', key: reader },
          ],
        },
      ],
      [
        `${method} /api/conversations/{id} 404`,
        {
          probes: () => [
            {
              what: 'an unknown conversation',
              method,
              path: `/api/conversations/${UNKNOWN_CONVERSATION}`,
              key: reader,
              error: 'conversation_not_found',
            },
          ],
        },
      ],
      [
        `${method} /api/conversations/{id} 503`,
        {
          probes: () => [
            {
              what: 'Redis is down',
              world: 'down' as const,
              method,
              path: `/api/conversations/${UNKNOWN_CONVERSATION}`,
              key: reader,
              error: 'redis_unavailable',
            },
          ],
        },
      ],
    ]),
  ),
}

/** A path of the document with its parameters filled in (the key is checked before them). */
const concrete = (path: string) => path.replace(/\{[^}]+\}/g, UNKNOWN_SOURCE)

/** A body of the kind the operation documents, as a client of it would send. */
function documentedBody(op: Operation): Pick<Probe, 'json' | 'raw' | 'type'> {
  const types = Object.keys(op.requestBody?.content ?? {})
  if (types.length === 0) return {}
  if (types.includes('application/json')) return { json: {} }
  return { raw: Buffer.from('PK\u0003\u0004 not really a zip'), type: types[0] }
}

const takesJson = (op: Operation) => op.requestBody?.content?.['application/json'] !== undefined

/**
 * The probes of statuses that mean the same on every operation, derived from the document:
 * 401 (no key), 403 (a reader key on an admin route, a foreign Host or Origin), and on a JSON
 * body 413 (over BODY_LIMIT) and 415 (not JSON). Undefined when the status needs its own case.
 */
function derived(method: string, path: string, op: Operation, status: number): Probe[] | undefined {
  const base = { method, path: concrete(path), ...documentedBody(op) }
  switch (status) {
    case 401:
      return [
        { ...base, what: 'no key', error: 'unauthorized' },
        {
          ...base,
          what: 'an unknown key',
          key: 'not-a-key-0123456789abcdef',
          error: 'unauthorized',
        },
      ]
    case 403:
      return [
        ...(adminOnly(path)
          ? [{ ...base, what: 'a reader key on an admin route', key: reader, error: 'forbidden' }]
          : []),
        {
          ...base,
          what: 'a page of another site (Origin)',
          key: admin,
          headers: { origin: 'https://evil.example' },
          error: 'origin_not_allowed',
        },
        {
          ...base,
          what: 'a rebound host name (Host)',
          key: admin,
          headers: { host: 'rebind.attacker.example' },
          error: 'host_not_allowed',
        },
      ]
    case 429:
      return [
        {
          ...base,
          what: 'a key past RATE_LIMIT_PER_MINUTE',
          world: 'limited',
          key: admin,
          error: 'rate_limited',
        },
      ]
  }
  if (!takesJson(op)) return undefined
  const json = { ...base, key: admin, json: undefined, raw: undefined }
  switch (status) {
    case 413:
      return [
        {
          ...json,
          what: 'a JSON body over BODY_LIMIT',
          json: { pad: 'x'.repeat(BODY_LIMIT) },
          error: 'payload_too_large',
        },
        {
          ...json,
          what: 'a chunked JSON body over BODY_LIMIT',
          raw: chunked(JSON.stringify({ pad: 'x'.repeat(BODY_LIMIT) })),
          type: 'application/json',
          error: 'payload_too_large',
        },
      ]
    case 415:
      return [
        {
          ...json,
          what: 'an XML body',
          raw: '<x/>',
          type: 'application/xml',
          error: 'unsupported_media_type',
        },
        {
          ...json,
          what: 'a zip body',
          raw: Buffer.from('PK\u0003\u0004'),
          type: 'application/zip',
          error: 'unsupported_media_type',
        },
      ]
  }
  return undefined
}

/** A body sent in chunks without a Content-Length (Transfer-Encoding: chunked). */
function chunked(text: string): () => AsyncIterable<Buffer> {
  return async function* () {
    for (let at = 0; at < text.length; at += 8_192) yield Buffer.from(text.slice(at, at + 8_192))
  }
}

const isErrorSchema = (response: DocumentedResponse) =>
  response?.content?.['application/json']?.schema?.$ref === '#/components/schemas/Error'

/** An error answer as the contract has it: JSON, {error, message, statusCode}. */
function checkErrorAnswer(t: Test, answer: WireAnswer, status: number, error?: string) {
  t.match(answer.type, /^application\/json\b/, 'answers JSON')
  const body = answer.json as Json | undefined
  t.type(body?.error, 'string', 'error is a string')
  t.type(body?.message, 'string', 'message is a string')
  t.equal(body?.statusCode, status, 'statusCode is the status')
  if (error !== undefined) t.equal(body?.error, error, `error is ${error}`)
}

/**
 * Sends a probe and checks its answer: the status, then either the Error shape or `body`.
 * A probe left without an answer (the hang) fails with the request it sent.
 */
async function prove(
  t: Test,
  base: string,
  probe: Probe,
  status: number,
  body?: Case['body'],
): Promise<void> {
  const answer = await wire(`${base}${probe.path}`, requestOf(probe)).catch((err: Error) => err)
  if (answer instanceof Error) {
    t.fail(`${probe.what}: ${answer.message}`)
    return
  }
  t.equal(answer.status, status, `${probe.what}: ${status}`, { body: answer.text.slice(0, 500) })
  if (body === undefined) return checkErrorAnswer(t, answer, status, probe.error)
  t.match(answer.type, /^application\/json\b/, 'answers JSON')
  body(t, answer.json as Json)
}

function requestOf(probe: Probe): WireRequest {
  const headers: Record<string, string> = { ...probe.headers }
  if (probe.key !== undefined) headers.authorization = `Bearer ${probe.key}`
  let body: WireRequest['body']
  if (probe.json !== undefined) {
    body = JSON.stringify(probe.json)
    headers['content-type'] = probe.type ?? 'application/json'
  } else if (probe.raw !== undefined) {
    body = typeof probe.raw === 'function' ? probe.raw() : probe.raw
    if (probe.type !== undefined) headers['content-type'] = probe.type
  }
  return { method: probe.method, headers, body }
}

/** A plain HTTP server that answers 500 to everything: Ollama broken, or not Ollama at all. */
async function brokenUpstream(t: Test): Promise<string> {
  const server = createServer((req, res) => {
    req.resume()
    res.writeHead(500, { 'content-type': 'text/plain' }).end('Internal Server Error')
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => {
    server.closeAllConnections()
    server.close()
  })
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('no address')
  return `http://127.0.0.1:${address.port}`
}

const SPEND: Probe = { what: 'spend the limit', method: 'GET', path: '' }

/** Resolves once the app's Redis connection has noticed that Redis is gone. */
async function redisLost(app: FastifyInstance): Promise<void> {
  for (let i = 0; i < 100 && app.redis.status === 'ready'; i++) {
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  if (app.redis.status === 'ready') throw new Error('the Redis connection is still ready')
}

t.test('every documented error status is answered over a real socket', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const doomed = await startRedis()
  t.teardown(() => doomed.stop())
  const ollama = await standIn(t)
  const exportsDir = await tempDir(t, 'cnfl-exports-')
  const common = {
    API_KEYS: READER_KEY,
    ADMIN_API_KEYS: ADMIN_KEY,
    BODY_LIMIT: String(BODY_LIMIT),
    EXPORT_UPLOAD_LIMIT: String(EXPORT_UPLOAD_LIMIT),
    EXPORTS_DIR: exportsDir,
    MODEL_IMPORT_LIMIT: String(EXPORT_UPLOAD_LIMIT),
    MODEL_IMPORT_DIR: join(exportsDir, 'model-imports'),
    CONFLUENCE_ALLOWED_HOSTS: SOURCE_HOST,
    HEALTH_TIMEOUT_MS: '500',
  }
  const up = await listenTestApp(t, { ...common, REDIS_URL: redis.url, OLLAMA_URL: ollama.url })
  const broken = await listenTestApp(t, {
    ...common,
    REDIS_URL: redis.url,
    OLLAMA_URL: await brokenUpstream(t),
    // An index location under a file: nothing can be read there.
    LANCEDB_URI: '/dev/null/lancedb',
  })
  // Really down: Ollama's port has nothing listening; Redis was there and has been stopped.
  const down = await listenTestApp(t, {
    ...common,
    REDIS_URL: doomed.url,
    OLLAMA_URL: `http://127.0.0.1:${await freePort()}`,
  })
  await doomed.stop()
  await redisLost(down.app)
  // One request a minute, spent here: every request after it is over the limit.
  const limited = await listenTestApp(t, {
    ...common,
    REDIS_URL: redis.url,
    OLLAMA_URL: ollama.url,
    RATE_LIMIT_PER_MINUTE: '1',
  })
  const stuck = await listenTestApp(t, {
    ...common,
    REDIS_URL: redis.url,
    OLLAMA_URL: await silentOllama(t),
    OLLAMA_RESPONSE_TIMEOUT_MS: '300',
  })
  const spent = await wire(`${limited.url}/api/me`, requestOf({ ...SPEND, key: admin }))
  if (spent.status !== 200) throw new Error(`spending the rate limit: ${spent.status}`)
  const worlds: Record<World, string> = {
    up: up.url,
    down: down.url,
    broken: broken.url,
    limited: limited.url,
    stuck: stuck.url,
  }

  const zipDir = await tempDir(t, 'cnfl-zip-')
  await writeZip(join(zipDir, 'space.zip'), [
    [
      'index.html',
      '<html><head><title>ENG</title></head><body><table><tr><th>Key</th><td>ENG</td></tr></table></body></html>',
    ],
  ])
  let names = 0
  const ctx: Ctx = {
    exportZip: await readFile(join(zipDir, 'space.zip')),
    name: (label) => `wire-${label}-${++names}`,
    async createSource(name) {
      const res = await wire(
        `${up.url}/api/sources`,
        requestOf({ what: 'create', method: 'POST', path: '', key: admin, json: sourceBody(name) }),
      )
      if (res.status !== 201) throw new Error(`creating source ${name}: ${res.status} ${res.text}`)
      return (res.json as Json).id as string
    },
    async createExport(name) {
      const res = await wire(
        `${up.url}/api/sources/export?name=${name}`,
        requestOf({
          what: 'upload',
          method: 'POST',
          path: '',
          key: admin,
          raw: ctx.exportZip,
          type: 'application/zip',
        }),
      )
      if (res.status !== 201) throw new Error(`uploading export ${name}: ${res.status} ${res.text}`)
      return (res.json as Json).id as string
    },
  }

  const served = await wire(`${up.url}/docs/json`)
  t.equal(served.status, 200, 'the document is served')
  const doc = served.json as Document

  const documented = new Set<string>()
  for (const [path, operations] of Object.entries(doc.paths)) {
    if (OWN_CONTRACT.test(path)) continue
    for (const [lower, op] of Object.entries(operations)) {
      const method = lower.toUpperCase()
      for (const [code, response] of Object.entries(op.responses ?? {})) {
        const status = Number(code)
        if (!(status >= 300)) continue
        const key = `${method} ${path} ${status}`
        documented.add(key)
        const entry = CASES[key]
        t.test(key, async (t) => {
          const probes = entry ? await entry.probes(ctx) : derived(method, path, op, status)
          if (probes === undefined) {
            t.fail(`no real-socket case provokes ${key}: add one to CASES`)
            return
          }
          if (entry?.body === undefined && !isErrorSchema(response)) {
            t.fail(`${key} is not documented as the Error schema, and its case checks no body`)
            return
          }
          t.ok(probes.length > 0, 'the case sends at least one request')
          for (const probe of probes) {
            await prove(t, worlds[probe.world ?? 'up'], probe, status, entry?.body)
          }
        })
      }
    }
  }

  t.test('every case is for a status the document lists', async (t) => {
    const stale = Object.keys(CASES).filter((key) => !documented.has(key))
    t.same(stale, [], 'cases for statuses no longer documented: remove them or document the status')
  })

  t.test(
    'every operation behind a key refuses a request without one, documented or not',
    async (t) => {
      for (const [path, operations] of Object.entries(doc.paths)) {
        if (OWN_CONTRACT.test(path)) continue
        for (const [lower, op] of Object.entries(operations)) {
          if (Array.isArray(op.security) && op.security.length === 0) continue // open
          const method = lower.toUpperCase()
          for (const probe of derived(method, path, op, 401) ?? []) {
            await prove(t, up.url, { ...probe, what: `${method} ${path}, ${probe.what}` }, 401)
          }
        }
      }
    },
  )

  t.test('routes outside the document answer in the contract too', async (t) => {
    const probes: Array<Probe & { status: number }> = [
      {
        what: 'the dashboard without a key',
        method: 'GET',
        path: '/admin/queues',
        status: 401,
        error: 'unauthorized',
      },
      {
        what: 'the dashboard with a reader key',
        method: 'GET',
        path: '/admin/queues',
        key: reader,
        status: 403,
        error: 'forbidden',
      },
      {
        what: 'an unknown route',
        method: 'GET',
        path: '/api/nothing-here',
        key: admin,
        status: 404,
        error: 'not_found',
      },
      {
        what: 'an unknown route, with a body',
        method: 'POST',
        path: '/api/nothing-here',
        key: admin,
        json: chatBody,
        status: 404,
        error: 'not_found',
      },
    ]
    for (const probe of probes) await prove(t, up.url, probe, probe.status)
  })
})
