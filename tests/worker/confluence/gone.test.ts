import t from 'tap'
import { confirmGone } from '../../../services/worker/src/confluence/gone.ts'
import type { ConfluenceSource } from '../../../services/worker/src/confluence/types.ts'

// The wrapper the sync calls: no candidates asks nothing; the answer keeps the candidates'
// order, each once; the source is closed either way.

function fakeSource(answer: (ids: string[]) => string[]) {
  const asked: string[][] = []
  let closed = 0
  const source = {
    async confirmGone(ids: string[]) {
      asked.push(ids)
      return answer(ids)
    },
    async close() {
      closed++
    },
  } as unknown as ConfluenceSource
  return { source, asked, closed: () => closed }
}

t.test('no candidate asks the source nothing, and still closes it', async (t) => {
  const fake = fakeSource(() => {
    throw new Error('not to be asked')
  })
  t.same(await confirmGone(fake.source, []), [])
  t.same(fake.asked, [])
  t.equal(fake.closed(), 1)
})

t.test('the confirmed candidates, in their order, each once', async (t) => {
  const fake = fakeSource((ids) => ids.filter((id) => id !== '2').reverse())
  t.same(await confirmGone(fake.source, ['3', '2', '1', '3']), ['3', '1'])
  t.same(fake.asked, [['3', '2', '1']])
  t.equal(fake.closed(), 1)
})
