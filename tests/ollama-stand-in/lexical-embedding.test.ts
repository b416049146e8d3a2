import t from 'tap'
import { expectedEmbedding } from '../helpers/ollama-stand-in.ts'

// The stand-in's vectors are lexical: texts that share words, or pieces of words (an inflection,
// a Korean word with another particle), are closer than texts that share none, so a retrieval
// test over them measures something. Deterministic, and each model has vectors of its own.

const MODEL = 'nomic-embed-text'
const cosine = (a: number[], b: number[]) => a.reduce((sum, v, i) => sum + v * (b[i] ?? 0), 0)
const similarity = (a: string, b: string, model = MODEL) =>
  cosine(expectedEmbedding(model, a, 256), expectedEmbedding(model, b, 256))

t.test('shared words and word pieces bring texts closer', async (t) => {
  const rollback = 'Rollback procedure: undo a bad production release quickly'
  const flags = 'Feature flags let us merge unfinished work behind a switch'
  t.ok(similarity('how do I roll back a release', rollback) > 0.3)
  t.ok(similarity('how do I roll back a release', flags) < 0.1)
  t.ok(
    similarity('releasing', 'release') > similarity('releasing', 'deploy'),
    'an inflection shares n-grams',
  )
  const delegate = '대리 결재란 승인자 역할을 일정 기간 동안 다른 사용자에게 위임하는 기능입니다'
  const cluster = '쿠버네티스 클러스터를 수동으로 등록할 수 있습니다'
  const question = '휴가 기간에 결재를 다른 사람에게 위임하려면'
  t.ok(similarity(question, delegate) > similarity(question, cluster) + 0.15)
  t.ok(
    similarity('대리 결재를 설정하려면', '대리 결재는 설정합니다') >
      similarity('대리 결재를 설정하려면', '클러스터를 등록합니다') + 0.1,
    'Korean words with other particles and endings stay close',
  )
})

t.test(
  'common words, case and width do not matter; models differ; any text has a vector',
  async (t) => {
    t.same(expectedEmbedding(MODEL, 'The Rollback', 16), expectedEmbedding(MODEL, 'rollback', 16))
    t.same(
      expectedEmbedding(MODEL, 'ＲＯＬＬＢＡＣＫ', 16),
      expectedEmbedding(MODEL, 'rollback', 16),
    )
    for (const prefix of ['search_query: ', 'search_document: ', 'query: ', 'passage: ']) {
      t.same(
        expectedEmbedding(MODEL, `${prefix}rollback`, 16),
        expectedEmbedding(MODEL, 'rollback', 16),
        `a task prefix (${prefix.trim()}) is not content`,
      )
    }
    t.ok(similarity('rollback steps', 'rollback steps', 'mxbai-embed-large') > 0.999)
    t.ok(Math.abs(similarity('rollback', 'rollback', 'mxbai-embed-large') - 1) < 1e-5)
    const a = expectedEmbedding(MODEL, 'rollback', 64)
    const b = expectedEmbedding('mxbai-embed-large', 'rollback', 64)
    t.ok(Math.abs(cosine(a, b)) < 0.5, 'another model, another vector')
    for (const text of ['', '!!!', 'the', '   ']) {
      const v = expectedEmbedding(MODEL, text, 8)
      t.ok(Math.abs(Math.hypot(...v) - 1) < 1e-5, `a unit vector for ${JSON.stringify(text)}`)
    }
    t.notSame(expectedEmbedding(MODEL, '!!!', 8), expectedEmbedding(MODEL, '???', 8))
  },
)
