import Type, { type Static } from 'typebox'
import { CONVERSATION_ID_PATTERN } from '../plugins/app/conversations.ts'
import { ModelName, OllamaOptionsSchema, PassThroughFields, RagOptionsSchema } from './common.ts'

export const ChatMessageSchema = Type.Object(
  {
    role: Type.Union(['system', 'user', 'assistant', 'tool'].map((r) => Type.Literal(r))),
    content: Type.String(),
    images: Type.Optional(Type.Array(Type.String(), { description: 'Base64 images' })),
  },
  { additionalProperties: true },
)

export type ChatMessage = Static<typeof ChatMessageSchema>

export const ChatRequestSchema = Type.Object(
  {
    model: Type.Optional(ModelName),
    messages: Type.Array(ChatMessageSchema, { minItems: 1 }),
    stream: Type.Optional(
      Type.Boolean({ default: false, description: 'true answers application/x-ndjson' }),
    ),
    rag: RagOptionsSchema(
      true,
      'Grounding in the Confluence index: on unless enabled is false. The answer cites the excerpts it used as [n].',
    ),
    conversation_id: Type.Optional(
      Type.String({
        pattern: CONVERSATION_ID_PATTERN,
        description:
          'Continue this conversation: its stored messages come before `messages` (send only the new turn). Without it a new conversation is started; the answer names it.',
      }),
    ),
    options: Type.Optional(OllamaOptionsSchema),
    tools: Type.Optional(Type.Array(Type.Object({}, { additionalProperties: true }))),
    ...PassThroughFields,
  },
  { additionalProperties: true, $id: 'ChatRequest', title: 'ChatRequest' },
)
export type ChatRequest = Static<typeof ChatRequestSchema>

// A tool call as Ollama writes it: `arguments` is an object (not the JSON string OpenAI uses);
// Ollama adds `id` and `function.index`.
export const ToolCallSchema = Type.Object(
  {
    id: Type.Optional(Type.String({ examples: ['call_i9r62nxq'] })),
    function: Type.Object(
      {
        index: Type.Optional(Type.Integer()),
        name: Type.String(),
        arguments: Type.Object({}, { additionalProperties: true }),
      },
      { additionalProperties: true },
    ),
  },
  { additionalProperties: true },
)

// The model's message as Ollama writes it. Fields Ollama adds later pass through too.
export const AssistantMessageSchema = Type.Object(
  {
    role: Type.Literal('assistant'),
    content: Type.String(),
    thinking: Type.Optional(Type.String({ description: 'The reasoning, when the model thinks' })),
    images: Type.Optional(Type.Array(Type.String(), { description: 'Base64 images' })),
    tool_calls: Type.Optional(Type.Array(ToolCallSchema)),
    tool_name: Type.Optional(Type.String()),
    tool_call_id: Type.Optional(Type.String()),
  },
  { additionalProperties: true },
)

export const SourceSchema = Type.Object(
  {
    n: Type.Integer({ minimum: 1, description: 'The number the answer cites it by: [n]' }),
    title: Type.String(),
    url: Type.String({ description: 'The section on the Confluence page (with its anchor)' }),
    space: Type.String(),
    updated_at: Type.String({ description: 'When the page version was saved (ISO 8601)' }),
    score: Type.Number({ description: 'Search score; higher is better' }),
    similarity: Type.Optional(
      Type.Number({ description: "Cosine similarity of the excerpt's vector to the question's" }),
    ),
    snippet: Type.String(),
    cited: Type.Boolean({ description: 'The answer cites it' }),
    breadcrumb: Type.String(),
    heading_path: Type.String(),
    page_id: Type.String(),
    chunk_id: Type.String(),
  },
  { $id: 'Source', title: 'Source' },
)

export const RetrievalSchema = Type.Object(
  {
    query: Type.String({
      description: 'What was searched: the question, or its standalone rewrite',
    }),
    rewritten: Type.Boolean({ description: 'A follow-up was rewritten with the conversation' }),
    mode: Type.Union(
      ['hybrid', 'vector', 'keyword'].map((m) => Type.Literal(m)),
      {
        description: 'The search mode that ran',
      },
    ),
    fallback: Type.Optional(Type.String({ description: 'Why the mode is not hybrid' })),
    below_floor: Type.Integer({ description: 'Hits left out under RAG_MIN_SIMILARITY' }),
    left_out: Type.Integer({ description: 'Hits that did not fit in the context window' }),
  },
  {
    $id: 'Retrieval',
    title: 'Retrieval',
    description: 'How the answer was grounded (absent when it was not)',
  },
)

export const UsageSchema = Type.Object(
  {
    prompt_tokens: Type.Integer(),
    completion_tokens: Type.Integer(),
    total_tokens: Type.Integer(),
  },
  { $id: 'Usage', title: 'Usage' },
)

export const ChatCompletionSchema = Type.Object(
  {
    id: Type.String(),
    object: Type.Literal('chat.completion'),
    created: Type.Integer({ description: 'Unix seconds' }),
    model: Type.String(),
    choices: Type.Array(
      Type.Object({
        index: Type.Integer(),
        message: AssistantMessageSchema,
        finish_reason: Type.String({ examples: ['stop', 'length'] }),
      }),
    ),
    usage: Type.Ref('Usage'),
    sources: Type.Array(Type.Ref('Source'), {
      description: 'The excerpts the answer was given, numbered as it cites them',
    }),
    retrieval: Type.Optional(Type.Ref('Retrieval')),
    conversation_id: Type.Optional(
      Type.String({
        description:
          'The conversation this answer was saved in (absent when it could not be saved: Redis unavailable)',
      }),
    ),
  },
  { $id: 'ChatCompletion', title: 'ChatCompletion' },
)
export type ChatCompletion = Static<typeof ChatCompletionSchema>

export const ChatStreamLineSchema = Type.Object(
  {
    sources: Type.Optional(Type.Array(Type.Ref('Source'))),
    retrieval: Type.Optional(Type.Ref('Retrieval')),
    conversation_id: Type.Optional(Type.String()),
    cited: Type.Optional(
      Type.Array(Type.Integer(), { description: 'On the done line: the source numbers cited' }),
    ),
    model: Type.Optional(Type.String()),
    created_at: Type.Optional(Type.String()),
    message: Type.Optional(
      Type.Union([
        AssistantMessageSchema,
        Type.String({ description: 'On an {error} line: what went wrong' }),
      ]),
    ),
    done: Type.Optional(Type.Boolean()),
    done_reason: Type.Optional(Type.String()),
    usage: Type.Optional(Type.Ref('Usage')),
    error: Type.Optional(Type.String()),
  },
  {
    description:
      'One JSON object a line: {sources, retrieval, conversation_id} first, then token lines ' +
      'as Ollama writes them, then {done:true, done_reason, usage, cited}; a failure ends the ' +
      'stream with {error, message}.',
  },
)
