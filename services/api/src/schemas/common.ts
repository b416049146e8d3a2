import Type, { type TSchema } from 'typebox'

export const ErrorSchema = Type.Object(
  {
    error: Type.String({ description: 'Stable snake_case code', examples: ['validation_failed'] }),
    message: Type.String({ description: 'What went wrong, for a person' }),
    statusCode: Type.Integer(),
  },
  { $id: 'Error', title: 'Error' },
)

type ErrorStatus = keyof typeof ERROR_TEXT

export const errorResponses = (...codes: ErrorStatus[]): Record<number, TSchema> =>
  Object.fromEntries(
    codes.map((code) => [code, Type.Ref('Error', { description: ERROR_TEXT[code] })]),
  )

const ERROR_TEXT = {
  400: 'The request is invalid (the message names the field)',
  401: 'Missing or unknown API key',
  403: 'The API key lacks the admin role (or the Host or Origin is not allowed)',
  404: 'Not found (the message says what)',
  409: 'A source with that name exists',
  413: 'The body is larger than BODY_LIMIT (an export: EXPORT_UPLOAD_LIMIT)',
  415: 'The body has the wrong Content-Type (the message names the right one)',
  502: 'Ollama failed',
  503: 'Ollama, Redis or the index is unavailable (the message says which)',
  504: 'Ollama accepted the connection but did not begin answering within OLLAMA_RESPONSE_TIMEOUT_MS',
} as const

// Ollama's own options are passed through as sent: the gateway names the common ones for the
// docs and lets anything else through, since Ollama adds fields often.
export const OllamaOptionsSchema = Type.Object(
  {
    temperature: Type.Optional(Type.Number()),
    top_k: Type.Optional(Type.Integer()),
    top_p: Type.Optional(Type.Number()),
    num_ctx: Type.Optional(Type.Integer()),
    num_predict: Type.Optional(Type.Integer()),
    seed: Type.Optional(Type.Integer()),
    stop: Type.Optional(Type.Array(Type.String())),
  },
  { additionalProperties: true, description: 'Ollama model options (passed through)' },
)

export const PassThroughFields = {
  format: Type.Optional(
    Type.Union([Type.String(), Type.Object({}, { additionalProperties: true })], {
      description: '"json" or a JSON Schema the answer must follow',
    }),
  ),
  keep_alive: Type.Optional(
    Type.Union([Type.String(), Type.Number()], {
      description: 'How long Ollama keeps the model loaded ("5m", seconds, -1 forever)',
    }),
  ),
  think: Type.Optional(
    Type.Union([Type.Boolean(), Type.String()], {
      description: 'Thinking models: true/false/level',
    }),
  ),
}

export const ModelName = Type.String({
  minLength: 1,
  maxLength: 256,
  description: 'Model name as Ollama knows it (default: CHAT_MODEL)',
  examples: ['llama3.2'],
})

/**
 * The `rag` field of chat and generate: grounding in the Confluence index, on by default for
 * chat (`enabled` defaults to true) and off for generate.
 */
export const RagOptionsSchema = (enabled: boolean, description: string) =>
  Type.Optional(
    Type.Object(
      {
        enabled: Type.Optional(Type.Boolean({ default: enabled })),
        spaces: Type.Optional(
          Type.Array(Type.String({ minLength: 1, maxLength: 255 }), {
            maxItems: 100,
            description: 'Only these spaces (within those the API key may read)',
          }),
        ),
        top_k: Type.Optional(
          Type.Integer({ minimum: 1, maximum: 50, description: 'Excerpts (default RAG_TOP_K)' }),
        ),
      },
      { additionalProperties: false, description },
    ),
  )
