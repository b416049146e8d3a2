import Type, { type Static } from 'typebox'

// Sources and jobs: the contract of DESIGN.md §3. Credentials are accepted on the way in and
// never appear in any response schema, so the serializer could not send them even by mistake.

const SpaceKey = Type.String({ pattern: '^[A-Za-z0-9~_-]{1,255}$', examples: ['ENG'] })

const AuthSchema = Type.Union(
  [
    Type.Object(
      {
        type: Type.Literal('basic'),
        username: Type.String({
          minLength: 1,
          description: 'Cloud: the account e-mail; Data Center: the login name',
        }),
        token: Type.String({
          minLength: 1,
          description: 'Cloud: an API token; Data Center: the password',
        }),
      },
      { additionalProperties: false },
    ),
    Type.Object(
      {
        type: Type.Literal('bearer'),
        token: Type.String({ minLength: 1, description: 'Data Center personal access token' }),
      },
      { additionalProperties: false },
    ),
  ],
  {
    description:
      'Never returned. Without it the worker uses CONFLUENCE_USERNAME / CONFLUENCE_TOKEN.',
  },
)

const ScopeFields = {
  spaces: Type.Array(SpaceKey, { minItems: 1, maxItems: 250, uniqueItems: true }),
  cql: Type.Optional(
    Type.String({
      minLength: 1,
      maxLength: 4_000,
      description:
        'Narrows the spaces with a CQL condition, sent as `space = … AND (cql)`: its parentheses must balance outside quoted strings ("…" or \'…\', a backslash escaping), else 400',
      examples: ['label = "runbook"'],
    }),
  ),
  root_page_id: Type.Optional(
    Type.String({ pattern: '^[0-9]{1,20}$', description: 'Only this page and its subtree' }),
  ),
  labels: Type.Optional(
    Type.Object(
      {
        include: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { uniqueItems: true })),
        exclude: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { uniqueItems: true })),
      },
      { additionalProperties: false },
    ),
  ),
}

const CommonFields = {
  name: Type.String({ minLength: 1, maxLength: 200, examples: ['Engineering wiki'] }),
  schedule: Type.Optional(
    Type.String({
      minLength: 9,
      maxLength: 120,
      description: 'Cron pattern of the periodic sync (UTC), e.g. "0 * * * *" for hourly',
    }),
  ),
  rate_limit: Type.Optional(
    Type.Object(
      {
        requests_per_second: Type.Number({
          exclusiveMinimum: 0,
          maximum: 1000,
          description: 'Across all workers (default CONFLUENCE_REQUESTS_PER_SECOND)',
        }),
      },
      { additionalProperties: false },
    ),
  ),
}

export const SourceCreateSchema = Type.Object(
  {
    ...CommonFields,
    kind: Type.Union([Type.Literal('cloud'), Type.Literal('datacenter')], {
      description: 'An export source is created by uploading its zip (POST /api/sources/export)',
    }),
    base_url: Type.String({
      format: 'uri',
      pattern: '^[Hh][Tt][Tt][Pp][Ss]?://',
      maxLength: 2_000,
      description:
        'What a browser shows before /spaces or /display: https://acme.atlassian.net/wiki, https://wiki.acme.com/confluence',
    }),
    ...ScopeFields,
    auth: Type.Optional(AuthSchema),
    tls: Type.Optional(
      Type.Object(
        {
          ca_cert: Type.Optional(
            Type.String({
              pattern: '-----BEGIN CERTIFICATE-----',
              description: 'PEM of the CA(s) that sign the server certificate',
            }),
          ),
          reject_unauthorized: Type.Optional(
            Type.Boolean({ description: 'false trusts any certificate, for this source only' }),
          ),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false, $id: 'SourceCreate', title: 'SourceCreate' },
)
export type SourceCreate = Static<typeof SourceCreateSchema>

export const ConfluenceSourceSchema = Type.Object(
  {
    id: Type.String({ examples: ['src_3f9a0c1b2d4e'] }),
    name: Type.String(),
    kind: Type.Union([Type.Literal('cloud'), Type.Literal('datacenter'), Type.Literal('export')]),
    base_url: Type.String(),
    ...ScopeFields,
    spaces: Type.Array(Type.String()),
    schedule: CommonFields.schedule,
    rate_limit: CommonFields.rate_limit,
    tls: Type.Optional(
      Type.Object({
        ca_cert: Type.Optional(Type.String({ description: '"(set)" when a CA bundle is set' })),
        reject_unauthorized: Type.Optional(Type.Boolean()),
      }),
    ),
    has_credentials: Type.Boolean({ description: 'Whether credentials were registered' }),
    created_at: Type.String(),
  },
  { $id: 'ConfluenceSource', title: 'ConfluenceSource' },
)

export const SourceListSchema = Type.Object(
  { sources: Type.Array(Type.Ref('ConfluenceSource')) },
  { $id: 'SourceList', title: 'SourceList' },
)

export const SourceIdParams = Type.Object({ id: Type.String({ pattern: '^src_[0-9a-f]{12}$' }) })

export const SyncRequestSchema = Type.Object(
  {
    full: Type.Optional(
      Type.Boolean({ description: 'Reconvert and re-embed every page, not only changed ones' }),
    ),
    force: Type.Optional(
      Type.Boolean({
        description: 'Delete vanished pages even beyond SYNC_MAX_DELETE_SHARE of the space',
      }),
    ),
  },
  { additionalProperties: false, $id: 'SyncRequest', title: 'SyncRequest' },
)

export const JobAcceptedSchema = Type.Object(
  {
    job_id: Type.String(),
    deduplicated: Type.Optional(
      Type.Boolean({
        description: 'true when a sync of this source was already queued or running',
      }),
    ),
  },
  { $id: 'JobAccepted', title: 'JobAccepted' },
)

const Count = Type.Integer({ minimum: 0 })

export const JobSchema = Type.Object(
  {
    id: Type.String(),
    source_id: Type.String(),
    name: Type.String({ description: 'sync or purge' }),
    state: Type.Union(
      [
        Type.Literal('waiting'),
        Type.Literal('active'),
        Type.Literal('completed'),
        Type.Literal('failed'),
      ],
      { description: 'A sync waiting for its page batches is active' },
    ),
    progress: Type.Object({
      discovered: Count,
      converted: Count,
      embedded: Count,
      unchanged: Count,
      deleted: Count,
      failed: Count,
    }),
    errors: Type.Array(
      Type.Object({ page_id: Type.Optional(Type.String()), message: Type.String() }),
    ),
    failed_reason: Type.Optional(Type.String()),
    attempts: Type.Integer(),
    created_at: Type.String(),
    started_at: Type.Optional(Type.String()),
    finished_at: Type.Optional(Type.String()),
  },
  { $id: 'Job', title: 'Job' },
)

export const JobListSchema = Type.Object(
  { jobs: Type.Array(Type.Ref('Job')) },
  { $id: 'JobList', title: 'JobList' },
)

const DEFAULT_JOB_LIMIT = 50

export const JobListQuery = Type.Object({
  source_id: Type.Optional(Type.String({ pattern: '^src_[0-9a-f]{12}$' })),
  limit: Type.Integer({
    minimum: 1,
    maximum: 200,
    default: DEFAULT_JOB_LIMIT,
    description: 'How many jobs at most',
  }),
})

export const ExportUploadQuery = Type.Object({
  name: Type.String({ minLength: 1, maxLength: 200, description: 'Name of the new source' }),
  base_url: Type.Optional(
    Type.String({
      format: 'uri',
      pattern: '^[Hh][Tt][Tt][Pp][Ss]?://',
      description: 'The site the export came from, so citations link to it',
    }),
  ),
  schedule: CommonFields.schedule,
})
