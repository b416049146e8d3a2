import Type, { type Static } from 'typebox'
import { ModelName, OllamaOptionsSchema, PassThroughFields } from './common.ts'

export const ChatMessageSchema = Type.Object(
  {
    role: Type.Union(['system', 'user', 'assistant', 'tool'].map((r) => Type.Literal(r))),
    content: Type.String(),
    images: Type.Optional(Type.Array(Type.String(), { description: 'Base64 images' })),
  },
  { additionalProperties: true },
)

export const ChatRequestSchema = Type.Object(
  {
    model: Type.Optional(ModelName),
    messages: Type.Array(ChatMessageSchema, { minItems: 1 }),
    stream: Type.Optional(
      Type.Boolean({ default: false, description: 'true answers application/x-ndjson' }),
    ),
    rag: Type.Optional(
      Type.Object(
        {
          enabled: Type.Optional(Type.Boolean({ default: true })),
          spaces: Type.Optional(Type.Array(Type.String({ minLength: 1 }))),
          top_k: Type.Optional(Type.Integer({ minimum: 1, maximum: 50 })),
        },
        {
          additionalProperties: false,
          description: 'Grounding in the Confluence index (sources stay empty until it is built)',
        },
      ),
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
    title: Type.String(),
    url: Type.String(),
    space: Type.String(),
    score: Type.Number(),
    snippet: Type.String(),
  },
  { $id: 'Source', title: 'Source' },
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
    sources: Type.Array(Type.Ref('Source')),
  },
  { $id: 'ChatCompletion', title: 'ChatCompletion' },
)
export type ChatCompletion = Static<typeof ChatCompletionSchema>

export const ChatStreamLineSchema = Type.Object(
  {
    sources: Type.Optional(Type.Array(Type.Ref('Source'))),
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
      'One JSON object a line: {sources} first, then token lines as Ollama writes them, then ' +
      '{done:true, done_reason, usage}; a failure ends the stream with {error, message}.',
  },
)
