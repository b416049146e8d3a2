import {
  CHUNKS_TABLE,
  ChunkColumn,
  rowChunkId,
  SEARCH_RESULT_COLUMNS,
  sqlString,
  sqlStringList,
} from '@confluence-bot/shared'
import t from 'tap'

t.test('the chunk id is source, page and position', async (t) => {
  t.equal(rowChunkId('src-1', '12345', 3), 'src-1:12345:3')
  t.equal(CHUNKS_TABLE, 'chunks')
  t.equal(ChunkColumn.headingPath, 'heading_path')
  t.same(SEARCH_RESULT_COLUMNS, ['chunk_id', 'text', 'title', 'url', 'space', 'heading_path'])
})

t.test('SQL string literals double their quotes and keep everything else', async (t) => {
  t.equal(sqlString('plain'), "'plain'")
  t.equal(sqlString(''), "''")
  t.equal(sqlString("it's"), "'it''s'")
  t.equal(sqlString("''"), "''''''")
  t.equal(sqlString("a\\'); DROP TABLE chunks; --"), "'a\\''); DROP TABLE chunks; --'")
  t.equal(sqlString('line\nbreak ünï 😀'), "'line\nbreak ünï 😀'")
  t.equal(sqlStringList(['a', "b'c"]), "('a', 'b''c')")
  t.equal(sqlStringList(new Set(['x'])), "('x')")
})
