import Type, { type Static } from 'typebox'

export const CheckSchema = Type.Object(
  {
    status: Type.Union([Type.Literal('ok'), Type.Literal('down')]),
    latency_ms: Type.Number(),
    error: Type.Optional(Type.String()),
    version: Type.Optional(Type.String()),
  },
  { $id: 'Check', title: 'Check' },
)
export type Check = Static<typeof CheckSchema>

export const HealthSchema = Type.Object(
  {
    status: Type.Union([Type.Literal('ok'), Type.Literal('degraded'), Type.Literal('down')]),
    checks: Type.Object({
      redis: Type.Ref('Check'),
      lancedb: Type.Ref('Check'),
      ollama: Type.Ref('Check'),
    }),
  },
  { $id: 'Health', title: 'Health' },
)
export type Health = Static<typeof HealthSchema>

export const LiveSchema = Type.Object(
  { status: Type.Literal('ok') },
  { $id: 'Live', title: 'Live' },
)
