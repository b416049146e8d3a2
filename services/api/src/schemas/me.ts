import Type, { type Static } from 'typebox'

export const MeSchema = Type.Object(
  {
    role: Type.Union([Type.Literal('reader'), Type.Literal('admin')], {
      description: 'reader: chat, search, own conversations; admin: also sources, jobs, /admin',
    }),
    spaces: Type.Union([Type.Array(Type.String()), Type.Null()], {
      description: 'The Confluence spaces the key may read; null: every space',
      examples: [['ENG', 'OPS']],
    }),
    auth: Type.Boolean({
      description: 'Whether the API asks for keys at all (false: every request is an admin)',
    }),
  },
  { $id: 'Me', title: 'Me' },
)
export type Me = Static<typeof MeSchema>
