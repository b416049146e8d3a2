import t from 'tap'
import { uniqueById, v1Author, v1Ref } from '../../../services/worker/src/confluence/v1.ts'

t.test('v1Author: DC userKey, Cloud accountId, plain username', async (t) => {
  t.same(v1Author({ userKey: 'k1', username: 'jdoe', displayName: 'J. Doe' }), {
    id: 'k1',
    name: 'J. Doe',
  })
  t.same(v1Author({ accountId: 'acc', publicName: 'Pub' }), { id: 'acc', name: 'Pub' })
  t.same(v1Author({ username: 'jdoe' }), { id: 'jdoe', name: 'jdoe' })
  t.equal(v1Author({ displayName: 'Anonymous' }), undefined)
  t.equal(v1Author(undefined), undefined)
})

t.test('v1Ref: what is not expanded is simply absent', async (t) => {
  const url = (id: string, key: string) => `u:${key}:${id}`
  t.same(v1Ref({ id: 42, title: 'T' }, url), {
    id: '42',
    spaceKey: '',
    title: 'T',
    version: '',
    labels: [],
    url: 'u::42',
  })
  t.same(
    v1Ref(
      {
        id: '7',
        title: 'Deep',
        space: { key: 'K' },
        version: { number: 3, when: '2024-01-01T00:00:00.000Z', by: { username: 'u' } },
        ancestors: [{ id: 1 }, { id: '5' }],
        metadata: { labels: {} },
      },
      url,
    ),
    {
      id: '7',
      spaceKey: 'K',
      title: 'Deep',
      version: '3',
      labels: [],
      url: 'u:K:7',
      parentId: '5',
      updatedAt: '2024-01-01T00:00:00.000Z',
      author: { id: 'u', name: 'u' },
    },
  )
})

t.test('uniqueById keeps the first of each id', async (t) => {
  async function* items() {
    yield* [{ id: '1' }, { id: '2' }, { id: '1' }, { id: '3' }, { id: '2' }]
  }
  const out: string[] = []
  for await (const item of uniqueById(items())) out.push(item.id)
  t.same(out, ['1', '2', '3'])
})
