import Type, { type Static, type TSchema } from 'typebox'
import { OllamaOptionsSchema } from './common.ts'

// The /ollama scope speaks Ollama's wire format, so these schemas describe Ollama's bodies, not
// the API's. Every object is open (`additionalProperties: true`): Ollama adds fields often and
// the gateway passes what it does not know through untouched. Only the fields the gateway reads
// are typed, with the types Ollama itself insists on. No field has a default: a default would be
// written into a body that must reach Ollama as it was sent.

const open = { additionalProperties: true } as const

const ModelField = Type.Optional(
  Type.String({
    maxLength: 256,
    description:
      'A model Ollama has (passed through), or its grounded alias `<model>+confluence` ' +
      '(e.g. `llama3.2+confluence`, `llama3.2:1b+confluence`)',
    examples: ['llama3.2+confluence'],
  }),
)

const StreamField = Type.Optional(
  Type.Boolean({ description: 'false: one JSON object; absent or true: an NDJSON stream' }),
)

export const OllamaCompatOptionsSchema = Type.Object(
  {
    ...OllamaOptionsSchema.properties,
    rag_spaces: Type.Optional(
      Type.Union(
        [
          Type.Array(Type.String({ maxLength: 255 }), { maxItems: 100 }),
          Type.String({ maxLength: 2000 }),
        ],
        {
          description:
            'Grounded models only: search these spaces (a list, or keys separated by commas), ' +
            'within those the API key may read. Blank (`""`, `[]`, what a UI sends for an ' +
            'empty field) narrows nothing: every space the key may read. Removed before the ' +
            'body reaches Ollama.',
        },
      ),
    ),
    rag_top_k: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 50,
        description: 'Grounded models only: how many excerpts (default RAG_TOP_K)',
      }),
    ),
  },
  { ...open, description: 'Ollama model options (passed through), and two for grounding' },
)
export type OllamaCompatOptions = Static<typeof OllamaCompatOptionsSchema>

// `content` may be left out, as Ollama allows (an assistant turn that only called tools).
const MessageSchema = Type.Object(
  {
    role: Type.String({ examples: ['user'] }),
    content: Type.Optional(Type.String()),
  },
  open,
)

export const OllamaChatRequestSchema = Type.Object(
  {
    model: ModelField,
    messages: Type.Optional(
      Type.Array(MessageSchema, { description: 'The conversation, the question last' }),
    ),
    stream: StreamField,
    options: Type.Optional(OllamaCompatOptionsSchema),
  },
  { ...open, title: 'OllamaChatRequest', description: "Ollama's /api/chat body" },
)
export type OllamaChatRequest = Static<typeof OllamaChatRequestSchema>

export const OllamaGenerateRequestSchema = Type.Object(
  {
    model: ModelField,
    prompt: Type.Optional(Type.String()),
    system: Type.Optional(Type.String()),
    stream: StreamField,
    options: Type.Optional(OllamaCompatOptionsSchema),
  },
  { ...open, title: 'OllamaGenerateRequest', description: "Ollama's /api/generate body" },
)
export type OllamaGenerateRequest = Static<typeof OllamaGenerateRequestSchema>

export const OllamaShowRequestSchema = Type.Object(
  {
    model: ModelField,
    name: Type.Optional(Type.String({ maxLength: 256, description: 'Same as model (deprecated)' })),
  },
  { ...open, title: 'OllamaShowRequest' },
)
export type OllamaShowRequest = Static<typeof OllamaShowRequestSchema>

export const OllamaEmbedRequestSchema = Type.Object(
  {
    model: ModelField,
    input: Type.Optional(Type.Union([Type.String(), Type.Array(Type.String())])),
  },
  { ...open, title: 'OllamaEmbedRequest', description: 'An alias embeds with its base model' },
)
export type OllamaEmbedRequest = Static<typeof OllamaEmbedRequestSchema>

export const OllamaEmbeddingsRequestSchema = Type.Object(
  { model: ModelField, prompt: Type.Optional(Type.String()) },
  {
    ...open,
    title: 'OllamaEmbeddingsRequest',
    description: 'The legacy /api/embeddings body; an alias embeds with its base model',
  },
)
export type OllamaEmbeddingsRequest = Static<typeof OllamaEmbeddingsRequestSchema>

// Answers. Documentation only for what Ollama wrote (sent on as its bytes); the few answers the
// gateway builds itself are serialized through them, hence open objects all the way down.

const SourcesField = Type.Optional(
  Type.Array(Type.Ref('Source'), {
    description:
      'Grounded models, on the `done:true` object: the numbered excerpts, `cited` set for ' +
      'those the answer cites (the same items as /api/chat gives)',
  }),
)

const Metrics = {
  done_reason: Type.Optional(Type.String({ examples: ['stop'] })),
  total_duration: Type.Optional(Type.Integer()),
  load_duration: Type.Optional(Type.Integer()),
  prompt_eval_count: Type.Optional(Type.Integer()),
  prompt_eval_duration: Type.Optional(Type.Integer()),
  eval_count: Type.Optional(Type.Integer()),
  eval_duration: Type.Optional(Type.Integer()),
}

export const OllamaChatResponseSchema = Type.Object(
  {
    model: Type.String(),
    created_at: Type.String(),
    message: Type.Object({ role: Type.String(), content: Type.String() }, open),
    done: Type.Boolean(),
    ...Metrics,
    sources: SourcesField,
  },
  {
    ...open,
    title: 'OllamaChatResponse',
    description: 'One object (stream:false) or each NDJSON line of a stream',
  },
)

export const OllamaGenerateResponseSchema = Type.Object(
  {
    model: Type.String(),
    created_at: Type.String(),
    response: Type.String(),
    thinking: Type.Optional(Type.String()),
    done: Type.Boolean(),
    ...Metrics,
    sources: SourcesField,
  },
  {
    ...open,
    title: 'OllamaGenerateResponse',
    description: 'One object (stream:false) or each NDJSON line of a stream',
  },
)

const DetailsSchema = Type.Object(
  {
    parent_model: Type.Optional(Type.String()),
    format: Type.Optional(Type.String()),
    family: Type.Optional(Type.String()),
    families: Type.Optional(Type.Union([Type.Array(Type.String()), Type.Null()])),
    parameter_size: Type.Optional(Type.String()),
    quantization_level: Type.Optional(Type.String()),
  },
  open,
)

const ListedModel = Type.Object(
  {
    name: Type.String({ examples: ['llama3.2:latest+confluence'] }),
    model: Type.String(),
    modified_at: Type.Optional(Type.String()),
    size: Type.Optional(Type.Integer()),
    digest: Type.Optional(Type.String()),
    details: Type.Optional(DetailsSchema),
  },
  open,
)

export const OllamaTagsSchema = Type.Object(
  { models: Type.Array(ListedModel) },
  {
    ...open,
    title: 'OllamaTags',
    description:
      'Each model Ollama has, followed (if it can chat) by its grounded alias (same details)',
  },
)

export const OllamaShowResponseSchema = Type.Object(
  {
    modelfile: Type.Optional(Type.String()),
    template: Type.Optional(Type.String()),
    details: Type.Optional(DetailsSchema),
    model_info: Type.Optional(Type.Object({}, open)),
    capabilities: Type.Optional(Type.Array(Type.String())),
  },
  { ...open, title: 'OllamaShowResponse' },
)

export const OllamaEmbedResponseSchema = Type.Object(
  {
    model: Type.String(),
    embeddings: Type.Array(Type.Array(Type.Number())),
  },
  { ...open, title: 'OllamaEmbedResponse' },
)

export const OllamaEmbeddingsResponseSchema = Type.Object(
  { embedding: Type.Array(Type.Number()) },
  { ...open, title: 'OllamaEmbeddingsResponse' },
)

export const OllamaVersionSchema = Type.Object(
  { version: Type.String({ examples: ['0.32.15'] }) },
  { ...open, title: 'OllamaVersion' },
)

export const OllamaPsSchema = Type.Object(
  { models: Type.Array(Type.Object({ name: Type.String() }, open)) },
  { ...open, title: 'OllamaPs', description: 'The models Ollama has loaded' },
)

/** Ollama's error body; the gateway's own errors (401, 400, 503…) take the same shape here. */
export const OllamaErrorSchema = Type.Object(
  { error: Type.String({ description: 'What went wrong, for a person' }) },
  { title: 'OllamaError' },
)

const ERROR_TEXT = {
  400: 'The body is invalid (the message says why), as Ollama or the gateway found',
  401: 'Missing or unknown API key (Authorization: Bearer <key>)',
  403: 'The Host or Origin is not allowed (API_ALLOWED_HOSTS, API_ALLOWED_ORIGINS)',
  404: 'The model (or an alias’s base model) is not on the Ollama server',
  413: 'The body is larger than BODY_LIMIT',
  415: 'The body has the wrong Content-Type',
  502: 'Ollama failed, or OLLAMA_URL is not an Ollama server',
  503: 'Ollama or the index is unavailable (the message says which)',
  504: 'Ollama accepted the request and did not answer within OLLAMA_RESPONSE_TIMEOUT_MS',
} as const

type ErrorStatus = keyof typeof ERROR_TEXT

const errorsOf = (codes: ErrorStatus[]): Record<number, TSchema> =>
  Object.fromEntries(
    codes.map((code) => [code, { ...OllamaErrorSchema, description: ERROR_TEXT[code] }]),
  )

/**
 * What can go wrong on an /ollama route that reads no body, each in Ollama's `{error}` shape.
 * These calls load no model, so OLLAMA_RESPONSE_TIMEOUT_MS bounds them (504).
 */
export const OLLAMA_GET_ERRORS = errorsOf([401, 403, 502, 503, 504])

/** What can go wrong on an /ollama route that takes a body naming a model. */
export const OLLAMA_POST_ERRORS = errorsOf([400, 401, 403, 404, 413, 415, 502, 503])
