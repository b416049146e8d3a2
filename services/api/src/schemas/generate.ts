import Type, { type Static } from 'typebox'
import { ModelName, OllamaOptionsSchema, PassThroughFields, RagOptionsSchema } from './common.ts'

export const GenerateRequestSchema = Type.Object(
  {
    model: Type.Optional(ModelName),
    prompt: Type.String({ description: 'The prompt; "" only loads the model' }),
    system: Type.Optional(Type.String()),
    stream: Type.Optional(
      Type.Boolean({ default: false, description: 'true answers application/x-ndjson' }),
    ),
    options: Type.Optional(OllamaOptionsSchema),
    images: Type.Optional(Type.Array(Type.String(), { description: 'Base64 images' })),
    raw: Type.Optional(Type.Boolean()),
    suffix: Type.Optional(Type.String()),
    rag: RagOptionsSchema(
      false,
      'Ground the answer in the Confluence index like /api/chat: off unless enabled is true. The answer then carries `sources` (and `retrieval`).',
    ),
    ...PassThroughFields,
  },
  { additionalProperties: true, $id: 'GenerateRequest', title: 'GenerateRequest' },
)
export type GenerateRequest = Static<typeof GenerateRequestSchema>

export const GenerateResponseSchema = Type.Object(
  {
    model: Type.String(),
    created_at: Type.String(),
    response: Type.String(),
    done: Type.Boolean(),
    done_reason: Type.Optional(Type.String()),
    total_duration: Type.Optional(Type.Integer({ description: 'nanoseconds' })),
    load_duration: Type.Optional(Type.Integer()),
    prompt_eval_count: Type.Optional(Type.Integer()),
    prompt_eval_duration: Type.Optional(Type.Integer()),
    eval_count: Type.Optional(Type.Integer()),
    eval_duration: Type.Optional(Type.Integer()),
    sources: Type.Optional(
      Type.Array(Type.Ref('Source'), {
        description: 'With rag.enabled: the excerpts given, numbered as the answer cites them',
      }),
    ),
    retrieval: Type.Optional(Type.Ref('Retrieval')),
    cited: Type.Optional(
      Type.Array(Type.Integer(), { description: 'Streamed with rag: on the done line' }),
    ),
  },
  {
    additionalProperties: true,
    $id: 'GenerateResponse',
    title: 'GenerateResponse',
    description: "Ollama's answer as Ollama writes it; streamed, one such object a line",
  },
)
