import Type from 'typebox'

export const IndexedSpaceSchema = Type.Object({
  key: Type.String({ description: 'The space key, as `rag.spaces` and search filters take it' }),
  pages: Type.Integer({
    minimum: 0,
    description: 'Pages of it in the index, each once however many sources hold it',
  }),
  chunks: Type.Integer({
    minimum: 0,
    description: 'Searchable excerpts of those pages (of its fullest copy, for a page held twice)',
  }),
})

export const SpaceListSchema = Type.Object(
  {
    spaces: Type.Array(IndexedSpaceSchema, {
      description: 'The indexed spaces the API key may read, by key',
    }),
  },
  { $id: 'SpaceList', title: 'SpaceList' },
)
