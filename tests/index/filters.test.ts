import { filterSql, matchesNothing, normaliseTime, SearchRequestError } from '@confluence-bot/index'
import t from 'tap'

// The filter predicate as SQL text: every value a literal, lists "any of", times as instants.

t.test('no filter, one filter, all of them', async (t) => {
  t.equal(filterSql({}), undefined)
  t.equal(filterSql({ spaces: ['ENG'] }), "(space IN ('ENG'))")
  t.equal(
    filterSql({
      spaces: ['A', "O'B"],
      source_ids: ['s1'],
      labels: ['x', "it's"],
      updated_after: '2024-05-01T10:00:00+09:00',
    }),
    "(space IN ('A', 'O''B')) AND (source_id IN ('s1')) AND " +
      "(array_has_any(labels, make_array('x', 'it''s'))) AND " +
      "(TRY_CAST(updated_at AS TIMESTAMP) > TIMESTAMP '2024-05-01T01:00:00.000Z')",
  )
})

t.test('empty lists match nothing', async (t) => {
  t.equal(matchesNothing({}), false)
  t.equal(matchesNothing({ spaces: ['a'], labels: ['b'], source_ids: ['c'] }), false)
  t.equal(matchesNothing({ spaces: [] }), true)
  t.equal(matchesNothing({ source_ids: [] }), true)
  t.equal(matchesNothing({ labels: [] }), true)
})

t.test('times: ISO 8601 in, UTC out; anything else refused', async (t) => {
  t.equal(normaliseTime('2024-05-01'), '2024-05-01T00:00:00.000Z')
  t.equal(normaliseTime('2024-02-29'), '2024-02-29T00:00:00.000Z', 'a leap day is a day')
  for (const bad of [
    '2024-02-30',
    '2023-02-29',
    '2024-04-31T10:00:00Z',
    '2024-13-01',
    '2024-00-10',
  ]) {
    t.throws(() => normaliseTime(bad), SearchRequestError, bad)
  }
  t.equal(normaliseTime('2024-05-01T10:00:00Z'), '2024-05-01T10:00:00.000Z')
  t.equal(normaliseTime('2024-05-01T10:00:00.5-02:00'), '2024-05-01T12:00:00.500Z')
  for (const bad of [
    '',
    'now',
    '1714557600',
    '2024-02-30x',
    "2024-05-01' OR '1'='1",
    '2024-99-99',
  ]) {
    t.throws(() => normaliseTime(bad), SearchRequestError, bad)
  }
})
