import Type from 'typebox'

export const IndexedSpaceSchema = Type.Object({
  key: Type.String({ description: 'The space key, as `rag.spaces` and search filters take it' }),
  pages: Type.Integer({ minimum: 0, description: 'Pages of it in the index' }),
  chunks: Type.Integer({ minimum: 0, description: 'Searchable excerpts of those pages' }),
})

export const SpaceListSchema = Type.Object(
  {
    spaces: Type.Array(IndexedSpaceSchema, {
      description: 'The indexed spaces the API key may read, by key',
    }),
  },
  { $id: 'SpaceList', title: 'SpaceList' },
)
