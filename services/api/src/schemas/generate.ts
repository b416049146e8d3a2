import Type, { type Static } from 'typebox'
import { ModelName, OllamaOptionsSchema, PassThroughFields } from './common.ts'

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
  },
  {
    additionalProperties: true,
    $id: 'GenerateResponse',
    title: 'GenerateResponse',
    description: "Ollama's answer as Ollama writes it; streamed, one such object a line",
  },
)
