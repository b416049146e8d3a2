import {
  type GroundingSource,
  type IndexedPage,
  MAX_QUERY_CHARS,
  MAX_TOP_K,
  markCited,
  openPageReader,
  type PageReader,
  type SearchHit,
} from '@confluence-bot/index'
import { AppError } from '@confluence-bot/shared'
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
import type { CallToolResult, ServerNotification } from '@modelcontextprotocol/sdk/types.js'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import * as z from 'zod'
import { AnswerRefused } from '../../lib/answer-slots.ts'
import { createTurnPreparer } from '../../lib/grounded-chat.ts'
import { type ParsedLine, tokenTextOf } from '../../lib/ndjson.ts'
import { allowedSpaces } from '../../lib/spaces.ts'
import { searchFailure } from '../api/search.ts'

// The MCP tools over the index: search, ask (a grounded answer) and get_page. One McpServer is
// built for each HTTP request (see index.ts), bound to that request: its key's spaces limit what
// every tool reads. Failures the caller can act on (no such page, a model Ollama lacks, the index
// unreadable) are thrown as AppErrors, which the SDK returns as tool errors (`isError`) with
// their message; each message was written for clients and names no secret.

/** The LanceDB cache of the page reader: it reads a few rows per call, never vectors. */
const PAGE_READER_CACHE_MB = 16
/** The longest question `ask` takes (a pasted page says no more past this). */
const MAX_QUESTION_CHARS = 4000

const SpacesInput = z
  .array(z.string().min(1).max(255))
  .min(1)
  .max(100)
  .optional()
  .describe(
    'Confluence space keys to read, e.g. ["ENG"]. Default: every space this API key may read ' +
      '(spaces outside the key are never read, whatever is asked).',
  )

const HitOutput = z.object({
  title: z.string(),
  breadcrumb: z.string().describe('Space › ancestor pages › page › section'),
  url: z.string().describe("The section's URL (the page URL with the heading anchor)"),
  space: z.string().describe('Space key'),
  page_id: z.string().describe('Pass it to get_page to read the whole page'),
  updated_at: z.string().describe('When the page was last updated (ISO 8601)'),
  score: z.number().describe('Relevance, higher is better (comparable within one call)'),
  snippet: z.string().describe('The passage around the query terms'),
})

const SourceOutput = HitOutput.omit({ score: true }).extend({
  n: z.number().int().describe('The number the answer cites it by: [n]'),
  cited: z.boolean().describe('The answer cites it'),
})

const PageOutput = {
  page_id: z.string(),
  title: z.string(),
  url: z.string().describe("The page's URL"),
  space: z.string().describe('Space key'),
  breadcrumb: z.string().describe('Space › ancestor pages › page'),
  updated_at: z.string().describe('When the page was last updated (ISO 8601)'),
  labels: z.array(z.string()),
  markdown: z.string().describe('The page as the index holds it, in markdown'),
}

const READ_ONLY = { readOnlyHint: true, destructiveHint: false, openWorldHint: false } as const

/** A tool's answer: text for the assistant to read, the same as structured content. */
const result = (text: string, structured: Record<string, unknown>): CallToolResult => ({
  content: [{ type: 'text', text }],
  structuredContent: structured,
})

const hitOf = (hit: SearchHit) => ({
  title: hit.title,
  breadcrumb: hit.breadcrumb,
  url: hit.url,
  space: hit.space,
  page_id: hit.page_id,
  updated_at: hit.updated_at,
  score: hit.score,
  snippet: hit.snippet,
})

const sourceOf = (source: GroundingSource) => ({
  n: source.n,
  title: source.title,
  breadcrumb: source.breadcrumb,
  url: source.url,
  space: source.space,
  page_id: source.page_id,
  updated_at: source.updated_at,
  snippet: source.snippet,
  cited: source.cited,
})

function hitsText(query: string, hits: ReturnType<typeof hitOf>[]): string {
  if (hits.length === 0) return `No indexed page this key may read matches "${query}".`
  return hits
    .map(
      (hit, i) =>
        `${i + 1}. ${hit.title} (${hit.breadcrumb})\n   ${hit.url}\n   space ${hit.space}, ` +
        `page_id ${hit.page_id}, updated ${hit.updated_at}, score ${hit.score.toFixed(3)}\n` +
        `   ${hit.snippet}`,
    )
    .join('\n\n')
}

function answerText(answer: string, sources: ReturnType<typeof sourceOf>[]): string {
  if (sources.length === 0) return answer
  const list = sources.map((s) => `[${s.n}] ${s.title}: ${s.url}${s.cited ? '' : ' (not cited)'}`)
  return `${answer}\n\nSources:\n${list.join('\n')}`
}

const pageText = (page: IndexedPage) =>
  `# ${page.title}\n\nURL: ${page.url}\nSpace: ${page.space}\nUpdated: ${page.updated_at}\n\n` +
  page.markdown

/** How often `ask` tells a client that asked for progress that it is still waiting. */
const PROGRESS_EVERY_MS = 5_000

type ToolExtra = {
  _meta?: { progressToken?: string | number }
  sendNotification(notification: ServerNotification): Promise<void>
}

/**
 * While `ask` waits (a model may take minutes to load on a CPU), a progress notification every
 * PROGRESS_EVERY_MS to a client that asked for progress (a progressToken): MCP clients time out
 * a request that says nothing (the SDK's after 60 s) unless progress resets the clock. Returns
 * what stops it. A note that can no longer be delivered (the client left) is dropped.
 */
function progressHeartbeat(extra: ToolExtra): () => void {
  const progressToken = extra._meta?.progressToken
  if (progressToken === undefined) return () => undefined
  let progress = 0
  const timer = setInterval(() => {
    progress += 1
    const params = { progressToken, progress, message: 'Waiting for the model to answer' }
    void Promise.allSettled([extra.sendNotification({ method: 'notifications/progress', params })])
  }, PROGRESS_EVERY_MS)
  return () => clearInterval(timer)
}

export type McpServerFactory = {
  /** A server whose tools read what `request`'s key may read. */
  serverFor(request: FastifyRequest): McpServer
  close(): Promise<void>
}

export function createMcpServerFactory(fastify: FastifyInstance): McpServerFactory {
  const { config } = fastify
  const prepareTurn = createTurnPreparer(fastify)
  let pages: Promise<PageReader> | undefined
  let opened: PageReader | undefined

  /** The page reader, opened on first use (again after a failed open). */
  function pageReader(): Promise<PageReader> {
    pages ??= openPageReader({ uri: config.LANCEDB_URI, cacheMb: PAGE_READER_CACHE_MB }).then(
      (reader) => {
        opened = reader
        return reader
      },
      (err: unknown) => {
        pages = undefined
        throw err
      },
    )
    return pages
  }

  /** A grounded answer to one question, cited, or the answer the index gives without the model. */
  async function ask(
    request: FastifyRequest,
    question: string,
    spaces: string[] | undefined,
    model: string,
    signal: AbortSignal,
  ): Promise<CallToolResult> {
    // An answer holds a connection to Ollama like /api/chat's do: it takes an answer slot
    // (plugins/app/answer-limits.ts), refused as a tool error when the key or the server has
    // too many running. A tool call's result carries no HTTP status or Retry-After, so its text
    // starts with the code and says when to retry (the message names the setting).
    const slot = fastify.takeAnswerSlot(request)
    if (slot instanceof AnswerRefused) {
      throw new AppError(slot.statusCode, slot.code, `${slot.code}: ${slot.message}`)
    }
    let answer: string | undefined
    let sources: GroundingSource[] = []
    try {
      const turn = await prepareTurn(request, {
        model,
        messages: [{ role: 'user', content: question }],
        grounded: true,
        spaces,
        stream: false,
        signal,
      })
      answer = turn.nothingFound
      if (answer === undefined) {
        const upstream = await fastify.ollama.post('/api/chat', turn.payload, signal)
        if (upstream.statusCode >= 400) throw await fastify.ollama.error(upstream)
        answer = tokenTextOf(await fastify.ollama.json<ParsedLine>(upstream))
        sources = markCited(turn.sources, answer)
      }
    } finally {
      slot()
    }
    const listed = sources.map(sourceOf)
    return result(answerText(answer, listed), { answer, model, sources: listed })
  }

  function serverFor(request: FastifyRequest): McpServer {
    const server = new McpServer(
      { name: 'confluence-bot', version: '0.1.0' },
      {
        instructions:
          "Answers questions from the team's Confluence pages, indexed by confluence-bot. Use " +
          'search to find pages and sections, ask for an answer with citations, get_page to ' +
          'read a whole page. Only the spaces the API key may read are ever searched.',
      },
    )

    server.registerTool(
      'search',
      {
        title: 'Search Confluence',
        description:
          "Search the team's Confluence pages (keyword and semantic search over the indexed " +
          'spaces). Use it to find which pages and sections cover a topic, or to collect links ' +
          'to cite. Returns the best hits, each with its page title, breadcrumb, section URL, ' +
          'space key, page_id, last update, relevance score and a snippet. Read a whole page ' +
          'with get_page (its page_id); for a written answer with citations use ask.',
        inputSchema: {
          query: z
            .string()
            .trim()
            .min(1)
            .max(MAX_QUERY_CHARS)
            .describe('What to look for, in words (a question or keywords)'),
          spaces: SpacesInput,
          top_k: z
            .number()
            .int()
            .min(1)
            .max(MAX_TOP_K)
            .optional()
            .describe(`How many hits (1 to ${MAX_TOP_K}, default 10)`),
        },
        outputSchema: {
          mode: z
            .enum(['hybrid', 'vector', 'keyword'])
            .describe('The search that ran (keyword when no embedding model is reachable)'),
          fallback: z.string().optional().describe('Why the search ran on keywords only'),
          results: z.array(HitOutput),
        },
        annotations: { ...READ_ONLY, idempotentHint: true },
      },
      async ({ query, spaces, top_k }) => {
        try {
          const index = await fastify.chunkIndex.open()
          const found = await index.search({
            query,
            top_k,
            filters: { spaces: allowedSpaces(request, spaces) },
          })
          const results = found.results.map(hitOf)
          const { mode, fallback } = found
          if (fallback === undefined) return result(hitsText(query, results), { mode, results })
          const text = `Keyword search only (${fallback}).\n\n${hitsText(query, results)}`
          return result(text, { mode, fallback, results })
        } catch (err) {
          throw searchFailure(err)
        }
      },
    )

    server.registerTool(
      'ask',
      {
        title: 'Ask Confluence',
        description:
          "Ask a question about the team's documentation and get an answer written from the " +
          'indexed Confluence pages only, with numbered citations [1], [2] that refer to the ' +
          'returned sources (title, section URL, space, page_id). When the indexed spaces hold ' +
          'nothing on the question it says so rather than guess. Slower than search (a model ' +
          'writes the answer); quote its citations with their URLs.',
        inputSchema: {
          question: z
            .string()
            .trim()
            .min(1)
            .max(MAX_QUESTION_CHARS)
            .describe('The question, as a person would ask it'),
          spaces: SpacesInput,
          model: z
            .string()
            .min(1)
            .max(256)
            .optional()
            .describe(`The Ollama model that writes the answer (default ${config.CHAT_MODEL})`),
        },
        outputSchema: {
          answer: z.string().describe('The answer, citing sources as [n]'),
          model: z.string(),
          sources: z.array(SourceOutput).describe('The excerpts the answer was written from'),
        },
        annotations: { ...READ_ONLY, idempotentHint: false },
      },
      async ({ question, spaces, model: named }, extra) => {
        const stop = progressHeartbeat(extra)
        try {
          return await ask(request, question, spaces, named ?? config.CHAT_MODEL, extra.signal)
        } finally {
          stop()
        }
      },
    )

    server.registerTool(
      'get_page',
      {
        title: 'Read a Confluence page',
        description:
          'Read one indexed Confluence page in full, as markdown: by its page_id (from a ' +
          'search hit or an ask source) or by its URL (a section URL with #anchor works too). ' +
          'Give exactly one of page_id and url. Returns the title, URL, space, breadcrumb, ' +
          'last update, labels and the markdown. A page outside the spaces this API key may ' +
          'read is not found.',
        inputSchema: z
          .object({
            page_id: z.string().min(1).max(255).optional().describe('The Confluence page id'),
            url: z
              .string()
              .min(1)
              .max(2048)
              .optional()
              .describe("The page's URL, or a section's URL"),
          })
          .refine((input) => (input.page_id === undefined) !== (input.url === undefined), {
            message: 'Give exactly one of page_id and url',
          }),
        outputSchema: PageOutput,
        annotations: { ...READ_ONLY, idempotentHint: true },
      },
      async ({ page_id, url }) => {
        let page: IndexedPage | null
        try {
          const reader = await pageReader()
          page = await reader.read({ page_id, url, spaces: allowedSpaces(request) })
        } catch (err) {
          throw searchFailure(err)
        }
        if (page === null) {
          const named = page_id === undefined ? `at ${url}` : `with id ${page_id}`
          return {
            content: [
              {
                type: 'text',
                text: `No indexed page ${named} in the spaces this API key may read.`,
              },
            ],
            isError: true,
          }
        }
        const { source_id: _source, version: _version, chunks: _chunks, ...shown } = page
        return result(pageText(page), shown)
      },
    )

    return server
  }

  return {
    serverFor,
    async close() {
      await opened?.close()
    },
  }
}
