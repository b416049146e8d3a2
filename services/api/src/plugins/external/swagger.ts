import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { isLimited } from '../app/rate-limit.ts'
import { DOCS_CSP } from '../app/security-headers.ts'

/**
 * Marks a route whose body may be left out (its handler takes none as `{}`): @fastify/swagger
 * marks every described body as required, and the document is fixed up here.
 */
export const OPTIONAL_BODY = 'x-optional-body'

declare module 'fastify' {
  interface FastifySchema {
    [OPTIONAL_BODY]?: boolean
  }
}

type Parameter = { required?: boolean; schema?: { default?: unknown } }
type Operation = {
  requestBody: { required: boolean }
  responses: Record<string, unknown>
  parameters?: Parameter[]
  [OPTIONAL_BODY]?: boolean
}
type Paths = Record<string, Record<string, Operation>>

// Every route refuses a foreign Host or Origin (plugins/app/request-guard.ts) before anything
// else: each operation says so, where its own 403 (a reader key on an admin route) does not.
const GUARD_403 = {
  description: 'The Host or Origin is not allowed (API_ALLOWED_HOSTS, API_ALLOWED_ORIGINS)',
  content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
}

// Every route but the probes counts against its caller's RATE_LIMIT_PER_MINUTE; an answer or
// embeddings route also refuses a key past ANSWER_CONCURRENCY_PER_KEY with the same status.
const RATE_429 = {
  description:
    'Too many requests: the key (or address) is past RATE_LIMIT_PER_MINUTE, or past ANSWER_CONCURRENCY_PER_KEY answers or embeddings at once; see Retry-After',
  headers: {
    'Retry-After': { description: 'Seconds to wait', schema: { type: 'integer' } },
  },
  content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
}

function fixUp(doc: { paths: Paths }) {
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const op of Object.values(item)) {
      op.responses['403'] ??= GUARD_403
      if (isLimited(path)) op.responses['429'] ??= RATE_429
      // A parameter with a default may be left out (the default is filled in), whatever the
      // schema's `required` list says.
      for (const parameter of op.parameters ?? []) {
        if (parameter.schema?.default !== undefined) parameter.required = false
      }
      if (op[OPTIONAL_BODY] === undefined) continue
      delete op[OPTIONAL_BODY]
      op.requestBody.required = false
    }
  }
  return doc
}

// OpenAPI 3 document generated from the route schemas, served at /docs/json (and /docs/yaml),
// with Swagger UI at /docs. Only tagged routes are documented.
async function docs(fastify: FastifyInstance) {
  await fastify.register(swagger, {
    hideUntagged: true,
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'confluence-bot API',
        description:
          'Ask questions about your Confluence space, answered by a local model on Ollama. ' +
          'Send an API key as `Authorization: Bearer <key>`: a reader key may chat, generate ' +
          'and list models; an admin key may also pull models, manage Confluence sources and ' +
          'their sync jobs, and use everything under /admin. A browser page of another site ' +
          'is refused (403) unless API_ALLOWED_ORIGINS lists it. A key may be limited to some ' +
          'Confluence spaces (API_KEYS=KEY:ENG+OPS): its searches, answers, sources and ' +
          'conversations then hold those spaces alone.',
        version: '0.1.0',
      },
      tags: [
        { name: 'chat', description: 'Answers from the model' },
        {
          name: 'conversations',
          description: 'Chat history kept per API key (CONVERSATION_TTL_S, CONVERSATION_MAX_TURNS)',
        },
        { name: 'search', description: 'Search the Confluence index' },
        { name: 'keys', description: 'What the API key sending the request may do' },
        { name: 'models', description: 'Models on the Ollama server' },
        { name: 'health', description: 'Readiness and liveness' },
        { name: 'sources', description: 'Confluence sources, their syncs and jobs (admin key)' },
        { name: 'admin', description: 'Operator endpoints (admin key)' },
        {
          name: 'openai',
          description:
            "OpenAI's API under /v1 (point an OpenAI client there): chat completions grounded in the index, with the sources as an extra field; models; embeddings",
        },
        {
          name: 'mcp',
          description:
            'The Model Context Protocol server (Streamable HTTP): tools search, ask and get_page for AI assistants',
        },
        {
          name: 'ollama-compatible',
          description:
            "Ollama's API under /ollama (point an Ollama client there): plain models pass through untouched, <model>+confluence answers grounded in the index",
        },
      ],
      components: {
        securitySchemes: {
          bearer: { type: 'http', scheme: 'bearer', description: 'An API key' },
        },
      },
      security: [{ bearer: [] }],
    },
    // Shared schemas are registered with an $id, which becomes their component name.
    refResolver: { buildLocalReference: (json) => String(json.$id) },
    transformObject: (documents) =>
      fixUp((documents as unknown as { openapiObject: { paths: Paths } }).openapiObject),
  })
  await fastify.register(swaggerUi, {
    routePrefix: '/docs',
    uiConfig: { docExpansion: 'list', deepLinking: true, tryItOutEnabled: true },
    staticCSP: DOCS_CSP,
  })
}

export default fp(docs, { name: 'swagger', fastify: '5.x' })
