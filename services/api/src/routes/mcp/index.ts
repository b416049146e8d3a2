import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js'
import type { FastifyInstance, FastifyReply } from 'fastify'
import Type from 'typebox'
import { errorResponses } from '../../schemas/common.ts'
import { createMcpServerFactory } from './tools.ts'

// /mcp — the Model Context Protocol server over Streamable HTTP: tools search, ask and get_page.
//
// Stateless: every POST gets a new McpServer and transport (sessionIdGenerator: undefined) and
// carries everything it needs, the API key included. No session lives in one api process, so
// any replica answers any request behind a plain load balancer (no sticky sessions, no shared
// session store), a restart loses nothing, and each request's tools are bound to its own key's
// spaces. The tools need no server-to-client messages (no sampling, no subscriptions), which is
// all a session would buy. Answers are plain JSON (enableJsonResponse): one response a request,
// what proxies and curl handle best; only a call that asks for progress gets an SSE stream, which
// carries the progress notifications `ask` sends while the model works.
//
// GET (a stream for server-initiated messages) and DELETE (ending a session) have nothing to
// serve without sessions: 405, as the transport specification provides and as the SDK's client
// expects.

const JsonRpcMessageSchema = Type.Object(
  {
    jsonrpc: Type.Literal('2.0'),
    id: Type.Optional(Type.Union([Type.String(), Type.Integer()])),
    method: Type.String({
      description: 'initialize, tools/list, tools/call, ping, notifications/…',
      examples: ['tools/list'],
    }),
    params: Type.Optional(Type.Object({}, { additionalProperties: true })),
  },
  {
    additionalProperties: true,
    description: 'A JSON-RPC 2.0 request or notification of the Model Context Protocol',
  },
)

const JsonRpcAnswerSchema = Type.Object(
  {
    jsonrpc: Type.Literal('2.0'),
    id: Type.Union([Type.String(), Type.Integer(), Type.Null()]),
    result: Type.Optional(Type.Object({}, { additionalProperties: true })),
    error: Type.Optional(
      Type.Object({ code: Type.Integer(), message: Type.String() }, { additionalProperties: true }),
    ),
  },
  { additionalProperties: true, description: 'The JSON-RPC 2.0 response' },
)

/**
 * A message that asks for progress notifications (a progressToken): its answer is an SSE stream
 * that carries them before the result. Anything else is answered with one JSON body.
 */
const asksForProgress = (body: unknown) =>
  (body as { params?: { _meta?: { progressToken?: unknown } } }).params?._meta?.progressToken !==
  undefined

const notAllowed = (reply: FastifyReply) =>
  reply
    .code(405)
    .header('allow', 'POST')
    .send({
      jsonrpc: '2.0',
      error: {
        code: -32000,
        message: 'Method not allowed: this MCP server is stateless; send JSON-RPC messages by POST',
      },
      id: null,
    })

export default async function mcp(fastify: FastifyInstance) {
  const servers = createMcpServerFactory(fastify)
  fastify.addHook('onClose', () => servers.close())
  fastify.addHook('onRequest', fastify.requireRole('reader'))

  fastify.post(
    '/',
    {
      prefixTrailingSlash: 'no-slash',
      schema: {
        tags: ['mcp'],
        summary: 'Model Context Protocol server (Streamable HTTP)',
        description:
          'An MCP endpoint for AI assistants: point an MCP client at this URL with the header ' +
          '`Authorization: Bearer <key>`. Tools: `search` (query, spaces, top_k → hits with ' +
          'section URLs), `ask` (a grounded answer with numbered citations and its sources) and ' +
          '`get_page` (a page as markdown, by page_id or URL). Every tool reads only the spaces ' +
          'the key may read. Stateless: no session id, every message is answered on its own ' +
          'POST (with JSON; with an SSE stream when the call asks for progress, which `ask` ' +
          'reports while the model works); GET and DELETE answer 405. The client must accept ' +
          '`application/json` and `text/event-stream` (406 otherwise). A tool failure is a ' +
          'tool result with `isError`, arguments that do not fit its schema too; an unknown ' +
          'method is a JSON-RPC error; a body that is no JSON-RPC message is a 400.',
        body: JsonRpcMessageSchema,
        response: {
          200: JsonRpcAnswerSchema,
          202: Type.Null({ description: 'A notification, accepted (no body)' }),
          406: Type.Object(
            {
              jsonrpc: Type.Literal('2.0'),
              error: Type.Object({}, { additionalProperties: true }),
            },
            {
              additionalProperties: true,
              description: 'The Accept header lacks application/json or text/event-stream',
            },
          ),
          ...errorResponses(400, 401, 403, 413, 415),
        },
      },
    },
    async (request, reply) => {
      const server = servers.serverFor(request)
      const transport = new StreamableHTTPServerTransport({
        sessionIdGenerator: undefined,
        enableJsonResponse: !asksForProgress(request.body),
      })
      // The response is the transport's to write from here on.
      reply.hijack()
      // Closing the transport when the response ends (or the client goes away first) aborts the
      // tool calls still running: `ask` then stops its Ollama request. (Nothing is left to
      // report a failure to close to.)
      reply.raw.on('close', () => {
        void Promise.allSettled([transport.close(), server.close()])
      })
      await server.connect(transport)
      await transport.handleRequest(request.raw, reply.raw, request.body)
    },
  )

  const hidden = { prefixTrailingSlash: 'no-slash', schema: { hide: true } } as const
  fastify.get('/', hidden, async (_request, reply) => notAllowed(reply))
  fastify.delete('/', hidden, async (_request, reply) => notAllowed(reply))
}
