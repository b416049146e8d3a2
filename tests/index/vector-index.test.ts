import {
  VECTOR_INDEX_MAX_PARTITIONS,
  VECTOR_INDEX_ROWS_PER_PARTITION,
  vectorIndex,
  vectorIndexPartitions,
} from '@confluence-bot/index'
import t from 'tap'

t.test('one partition for a small table, more as it grows, never past the cap', async (t) => {
  t.equal(vectorIndexPartitions(0), 1)
  t.equal(vectorIndexPartitions(300), 1)
  t.equal(vectorIndexPartitions(VECTOR_INDEX_ROWS_PER_PARTITION), 1)
  t.equal(vectorIndexPartitions(VECTOR_INDEX_ROWS_PER_PARTITION * 6), 6)
  t.equal(vectorIndexPartitions(100_000), 1, 'one graph at 100k rows')
  t.equal(vectorIndexPartitions(10_000_000), VECTOR_INDEX_MAX_PARTITIONS)
})

t.test('the index is an HNSW-SQ index LanceDB accepts', async (t) => {
  // The worker's store tests build it on a real table; here only that it is made at every size.
  t.ok(vectorIndex(300))
  t.ok(vectorIndex(1_000_000))
})
