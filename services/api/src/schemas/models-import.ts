import Type, { type Static } from 'typebox'

/**
 * A model name Ollama accepts (`[host[:port]/][namespace/]model[:tag]`): refused here, before a
 * multi-GB upload, rather than by Ollama's create once the file has arrived (`cnfl models import`
 * checks it too, before hashing the file).
 */
export const MODEL_NAME_PATTERN =
  '^(?:[A-Za-z0-9][A-Za-z0-9.-]*(?::[0-9]+)?/)?(?:[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}/)?[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,79})?$'

export const ModelImportQuerySchema = Type.Object(
  {
    name: Type.String({
      minLength: 1,
      maxLength: 256,
      pattern: MODEL_NAME_PATTERN,
      description: 'The name the model gets in Ollama',
      examples: ['acme-llama:8b'],
    }),
    template: Type.Optional(
      Type.String({ description: "The model's prompt template (Go template syntax)" }),
    ),
    system: Type.Optional(Type.String({ description: 'The default system prompt' })),
    parameters: Type.Optional(
      Type.String({
        description: 'Default options as a JSON object',
        examples: ['{"temperature":0.2,"num_ctx":8192}'],
      }),
    ),
    replace: Type.Optional(
      Type.Boolean({ default: false, description: 'Replace a model of that name (else 409)' }),
    ),
    digest: Type.Optional(
      Type.String({
        pattern: '^sha256:[0-9a-f]{64}$',
        description: "The file's SHA-256 as the client computed it: checked against what arrived",
      }),
    ),
    stream: Type.Optional(
      Type.Boolean({ default: false, description: 'true streams progress lines (NDJSON)' }),
    ),
  },
  { additionalProperties: false },
)
export type ModelImportQuery = Static<typeof ModelImportQuerySchema>

export const ModelImportProgressSchema = Type.Object(
  {
    status: Type.String({ examples: ['uploading sha256:…', 'parsing GGUF', 'success'] }),
    digest: Type.Optional(Type.String()),
    total: Type.Optional(Type.Integer()),
    completed: Type.Optional(Type.Integer()),
  },
  { $id: 'ModelImportProgress', title: 'ModelImportProgress' },
)
