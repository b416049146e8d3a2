import Type, { type Static } from 'typebox'
import { RagOptionsSchema } from './common.ts'

// The OpenAI-compatible surface under /v1 (DESIGN §3): request and response shapes as OpenAI's
// API and SDKs use them, plus the documented extras (`rag` in, `sources` and `retrieval` out).
// Request objects stay open (additionalProperties): the SDKs add fields with every release and
// a field the gateway does not use must not fail the request; what is ignored is listed in the
// route descriptions and the README. Sampling parameters may be null, as OpenAI accepts (some
// clients send every field, unset ones as null): null is the same as absent.

export const OpenAIErrorSchema = Type.Object(
  {
    error: Type.Object({
      message: Type.String({ description: 'What went wrong, for a person' }),
      type: Type.String({
        description: 'invalid_request_error (4xx) or server_error (5xx)',
        examples: ['invalid_request_error'],
      }),
      param: Type.Union([Type.String(), Type.Null()], {
        description: 'The request field at fault, when one is',
      }),
      code: Type.Union([Type.String(), Type.Null()], {
        description:
          'Stable code: invalid_api_key, model_not_found, validation_failed, ollama_unavailable…',
      }),
    }),
  },
  { title: 'OpenAIError', description: "OpenAI's error shape" },
)
export type OpenAIError = Static<typeof OpenAIErrorSchema>

const ERROR_TEXT = {
  400: 'The request is invalid (invalid_request_error; `param` names the field when it can)',
  401: 'Missing or unknown API key (code invalid_api_key)',
  403: 'The Host or Origin is not allowed (API_ALLOWED_HOSTS, API_ALLOWED_ORIGINS)',
  404: 'No such model on the Ollama server (code model_not_found)',
  413: 'The body is larger than BODY_LIMIT',
  415: 'The body is not JSON (Content-Type)',
  502: 'Ollama failed',
  503: 'Ollama or the index is unavailable',
  504: 'Ollama accepted the request and did not answer within OLLAMA_RESPONSE_TIMEOUT_MS',
} as const

/** Error responses of a /v1 route, in OpenAI's shape. */
export const openAIErrors = (...codes: Array<keyof typeof ERROR_TEXT>) =>
  Object.fromEntries(
    codes.map((code) => [code, { ...OpenAIErrorSchema, description: ERROR_TEXT[code] }]),
  )

const nullable = { nullable: true }

const ContentPartSchema = Type.Object(
  { type: Type.String({ examples: ['text', 'image_url'] }) },
  {
    additionalProperties: true,
    description:
      '`{type:"text", text}`; `{type:"image_url", image_url:{url}}` with a `data:image/…;base64,` ' +
      "URL (given to Ollama as the message's `images`; links are refused, never fetched); " +
      '`{type:"refusal", refusal}` in assistant turns. Audio and file parts are refused.',
  },
)
export type ContentPart = Static<typeof ContentPartSchema> & Record<string, unknown>

const ToolCallSchema = Type.Object(
  {
    id: Type.Optional(Type.String({ description: 'Dropped (Ollama pairs calls by order)' })),
    type: Type.Optional(Type.String({ examples: ['function'] })),
    function: Type.Object(
      {
        name: Type.String(),
        arguments: Type.String({
          description: 'A JSON object as a string, as OpenAI writes it; given to Ollama parsed',
        }),
      },
      { additionalProperties: true },
    ),
  },
  { additionalProperties: true },
)

export const ChatCompletionMessageSchema = Type.Object(
  {
    role: Type.Union(
      [
        Type.Literal('system'),
        Type.Literal('developer'),
        Type.Literal('user'),
        Type.Literal('assistant'),
        Type.Literal('tool'),
      ],
      { description: '`developer` is read as `system`; `tool` is a tool result' },
    ),
    content: Type.Optional(
      Type.Union([Type.String(), Type.Null(), Type.Array(ContentPartSchema)], {
        description:
          'Text, or an array of content parts (text parts joined with a newline); null or ' +
          'absent (an assistant turn with only tool_calls) is empty text',
      }),
    ),
    name: Type.Optional(Type.String({ description: 'Ignored' })),
    tool_calls: Type.Optional(
      Type.Array(ToolCallSchema, {
        description: "An assistant turn's tool calls, given to Ollama as its tool_calls",
      }),
    ),
    tool_call_id: Type.Optional(Type.String({ description: "A tool turn's call id; dropped" })),
  },
  { additionalProperties: true },
)
export type ChatCompletionMessage = Static<typeof ChatCompletionMessageSchema>

export const ChatCompletionRequestSchema = Type.Object(
  {
    model: Type.String({
      minLength: 1,
      maxLength: 256,
      description: 'A model installed on the Ollama server (GET /v1/models)',
      examples: ['llama3.2:latest'],
    }),
    messages: Type.Array(ChatCompletionMessageSchema, { minItems: 1 }),
    stream: Type.Optional(
      Type.Boolean({ ...nullable, description: 'true answers text/event-stream' }),
    ),
    stream_options: Type.Optional(
      Type.Object(
        {
          include_usage: Type.Optional(
            Type.Boolean({ description: 'A last chunk with `usage` and no choices' }),
          ),
        },
        { ...nullable, additionalProperties: true },
      ),
    ),
    temperature: Type.Optional(Type.Number({ ...nullable, minimum: 0, maximum: 2 })),
    top_p: Type.Optional(Type.Number({ ...nullable, minimum: 0, maximum: 1 })),
    max_tokens: Type.Optional(
      Type.Integer({ ...nullable, minimum: 1, description: "Ollama's num_predict" }),
    ),
    max_completion_tokens: Type.Optional(
      Type.Integer({
        ...nullable,
        minimum: 1,
        description: "Ollama's num_predict (wins over max_tokens)",
      }),
    ),
    stop: Type.Optional(
      Type.Union([Type.String(), Type.Array(Type.String(), { maxItems: 16 }), Type.Null()], {
        description: 'Where the answer stops',
      }),
    ),
    seed: Type.Optional(Type.Integer({ ...nullable })),
    frequency_penalty: Type.Optional(Type.Number({ ...nullable, minimum: -2, maximum: 2 })),
    presence_penalty: Type.Optional(Type.Number({ ...nullable, minimum: -2, maximum: 2 })),
    n: Type.Optional(
      Type.Integer({ ...nullable, minimum: 1, maximum: 1, description: 'Only one choice' }),
    ),
    response_format: Type.Optional(
      Type.Object(
        {
          type: Type.Union([
            Type.Literal('text'),
            Type.Literal('json_object'),
            Type.Literal('json_schema'),
          ]),
          json_schema: Type.Optional(
            Type.Object(
              { schema: Type.Optional(Type.Object({}, { additionalProperties: true })) },
              { additionalProperties: true },
            ),
          ),
        },
        {
          ...nullable,
          additionalProperties: true,
          description: "json_object: Ollama's format json; json_schema: the schema as format",
        },
      ),
    ),
    rag: RagOptionsSchema(
      true,
      'Extra field (not OpenAI): grounding in the Confluence index, on unless enabled is false. The answer cites the excerpts it used as [n].',
    ),
  },
  { additionalProperties: true, title: 'ChatCompletionRequest' },
)
export type ChatCompletionRequest = Static<typeof ChatCompletionRequestSchema>

const SourcesField = Type.Array(Type.Ref('Source'), {
  description:
    'Extra field: the excerpts the answer was given, numbered as it cites them ([n]); `cited` marks those it uses',
})

const GroundedField = Type.Boolean({
  description:
    'Extra field: whether the answer was grounded in the index (true also when the index held nothing on the question)',
})
const GroundingNoteField = Type.String({
  description:
    "Extra field, when not grounded: why (grounding off, or the last message is not the user's, so there was no question to retrieve for)",
})

export const OpenAIChatCompletionSchema = Type.Object(
  {
    id: Type.String(),
    object: Type.Literal('chat.completion'),
    created: Type.Integer({ description: 'Unix seconds' }),
    model: Type.String(),
    choices: Type.Array(
      Type.Object({
        index: Type.Integer(),
        message: Type.Object({
          role: Type.Literal('assistant'),
          content: Type.String(),
          refusal: Type.Null(),
        }),
        finish_reason: Type.String({ examples: ['stop', 'length'] }),
        logprobs: Type.Null(),
      }),
    ),
    usage: Type.Ref('Usage'),
    sources: SourcesField,
    retrieval: Type.Optional(Type.Ref('Retrieval')),
    grounded: GroundedField,
    grounding_note: Type.Optional(GroundingNoteField),
  },
  { title: 'ChatCompletion' },
)
export type OpenAIChatCompletion = Static<typeof OpenAIChatCompletionSchema>

export const ChatCompletionChunkSchema = Type.Object(
  {
    id: Type.String(),
    object: Type.Literal('chat.completion.chunk'),
    created: Type.Integer(),
    model: Type.String(),
    choices: Type.Array(
      Type.Object({
        index: Type.Integer(),
        delta: Type.Object({
          role: Type.Optional(Type.Literal('assistant')),
          content: Type.Optional(Type.String()),
        }),
        finish_reason: Type.Union([Type.String(), Type.Null()]),
      }),
    ),
    sources: Type.Optional(SourcesField),
    retrieval: Type.Optional(Type.Ref('Retrieval')),
    grounded: Type.Optional(GroundedField),
    grounding_note: Type.Optional(GroundingNoteField),
    cited: Type.Optional(
      Type.Array(Type.Integer(), {
        description: 'Extra field on the finish chunk: the source numbers the answer cites',
      }),
    ),
    usage: Type.Optional(Type.Ref('Usage')),
  },
  {
    title: 'ChatCompletionChunk',
    description:
      'Each event is `data: <chunk>`: the first has delta.role and the extra fields `sources`, ' +
      '`grounded` (and `retrieval`, or `grounding_note`), then one chunk per token, then one with finish_reason (and `cited`), ' +
      'then with stream_options.include_usage one with `usage` and no choices, then ' +
      '`data: [DONE]`. A failure ends the stream with `data: {"error":{…}}` and no [DONE].',
  },
)

export const OpenAIModelSchema = Type.Object(
  {
    id: Type.String({ examples: ['llama3.2:latest'] }),
    object: Type.Literal('model'),
    created: Type.Integer({ description: 'When Ollama last changed it (unix seconds)' }),
    owned_by: Type.String({ examples: ['ollama'] }),
  },
  { title: 'OpenAIModel' },
)
export type OpenAIModel = Static<typeof OpenAIModelSchema>

export const OpenAIModelListSchema = Type.Object(
  { object: Type.Literal('list'), data: Type.Array(OpenAIModelSchema) },
  { title: 'OpenAIModelList' },
)

export const ModelParamsSchema = Type.Object({
  model: Type.String({ description: 'The model id, as /v1/models lists it', maxLength: 256 }),
})

export const EmbeddingRequestSchema = Type.Object(
  {
    model: Type.String({ minLength: 1, maxLength: 256, examples: ['nomic-embed-text'] }),
    input: Type.Union(
      [
        Type.String({ minLength: 1 }),
        Type.Array(Type.String({ minLength: 1 }), { minItems: 1, maxItems: 2048 }),
        Type.Array(Type.Integer(), { minItems: 1 }),
        Type.Array(Type.Array(Type.Integer()), { minItems: 1 }),
      ],
      { description: 'A text or a list of texts (token arrays are refused: send text)' },
    ),
    encoding_format: Type.Optional(
      Type.Union([Type.Literal('float'), Type.Literal('base64')], {
        description: 'base64: little-endian float32 bytes (what the openai SDKs ask for)',
      }),
    ),
    dimensions: Type.Optional(
      Type.Integer({ minimum: 1, description: 'Shorter vectors, if the model supports it' }),
    ),
  },
  { additionalProperties: true, title: 'EmbeddingRequest' },
)
export type EmbeddingRequest = Static<typeof EmbeddingRequestSchema>

export const EmbeddingResponseSchema = Type.Object(
  {
    object: Type.Literal('list'),
    data: Type.Array(
      Type.Object({
        object: Type.Literal('embedding'),
        index: Type.Integer(),
        embedding: Type.Union([Type.Array(Type.Number()), Type.String()], {
          description: 'Numbers, or base64 of float32 bytes with encoding_format base64',
        }),
      }),
    ),
    model: Type.String(),
    usage: Type.Object({ prompt_tokens: Type.Integer(), total_tokens: Type.Integer() }),
  },
  { title: 'EmbeddingResponse' },
)
