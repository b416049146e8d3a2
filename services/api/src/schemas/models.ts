import Type, { type Static } from 'typebox'

export const ModelSchema = Type.Object(
  {
    name: Type.String({ examples: ['llama3.2:latest'] }),
    size: Type.String({ description: 'Human-readable size', examples: ['2.0 GB'] }),
    bytes: Type.Integer({ description: 'Size in bytes' }),
    modified_at: Type.String(),
    family: Type.Optional(Type.String()),
    parameter_size: Type.Optional(Type.String()),
    quantization: Type.Optional(Type.String()),
  },
  { $id: 'Model', title: 'Model' },
)
export type Model = Static<typeof ModelSchema>

export const ModelListSchema = Type.Object(
  { models: Type.Array(Type.Ref('Model')) },
  { $id: 'ModelList', title: 'ModelList' },
)

export const PullRequestSchema = Type.Object(
  {
    name: Type.Optional(Type.String({ minLength: 1, maxLength: 256, examples: ['llama3.2'] })),
    model: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 256,
        description: 'Same as name (Ollama accepts both)',
      }),
    ),
    stream: Type.Optional(
      Type.Boolean({ default: false, description: "true streams Ollama's progress lines" }),
    ),
    insecure: Type.Optional(Type.Boolean({ description: 'Allow an http:// registry' })),
  },
  {
    additionalProperties: false,
    $id: 'PullRequest',
    title: 'PullRequest',
    description: 'Name the model with `name` or `model`',
  },
)
export type PullRequest = Static<typeof PullRequestSchema>

export const PullProgressSchema = Type.Object(
  {
    status: Type.String(),
    digest: Type.Optional(Type.String()),
    total: Type.Optional(Type.Integer()),
    completed: Type.Optional(Type.Integer()),
  },
  { $id: 'PullProgress', title: 'PullProgress' },
)
