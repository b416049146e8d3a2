import t from 'tap'
import { estimateTokens } from '../../../services/worker/src/chunk/index.ts'

t.test(
  'English prose: a run of letters costs ceil(length / 3), punctuation 1, a space 0',
  async (t) => {
    // The | quick | brown | fox | jumps | over | the | lazy | dog | . → 1+2+2+1+2+2+1+2+1+1
    const text = 'The quick brown fox jumps over the lazy dog.'
    t.equal(estimateTokens(text), 15)
    t.ok(estimateTokens(text) >= 10, 'bert-base-uncased makes 10 tokens of it')
    t.ok(estimateTokens(text) >= Math.ceil(text.length / 3), 'at least chars / 3')
    t.ok(estimateTokens(text) >= Math.ceil(9 * 1.3), 'at least 1.3 per word')
    t.equal(estimateTokens(''), 0)
    t.equal(estimateTokens('a'), 1)
    t.equal(estimateTokens('tokenizer'), 3)
  },
)

t.test(
  'code and tables: every symbol and digit is a token, indentation and newlines count',
  async (t) => {
    // const | x | = | foo | ( | bar | , | 4 | 2 | ) | ; → 2+1+1+1+1+1+1+1+1+1+1
    t.equal(estimateTokens('const x = foo(bar, 42);'), 12)
    t.equal(estimateTokens('foo(bar);'), 5, 'BERT: foo ( bar ) ;')
    t.equal(estimateTokens('| --- | --- |'), 9)
    t.equal(estimateTokens('2024-01-31'), 10, 'llama 2 splits numbers into digits')
    // if | \n | 4 spaces | return | \n | \t | x
    t.equal(estimateTokens('if\n    return\n\tx'), 1 + 1 + 1 + 2 + 1 + 1 + 1)
    t.equal(estimateTokens('a  b'), 3, 'a run of 2–4 spaces is one token')
    t.equal(estimateTokens('a b'), 2, 'a single space is free')
    t.equal(estimateTokens('a\r\nb'), 4)
  },
)

t.test(
  'Korean: each syllable costs its jamo (what BERT’s NFD normalizer makes of it)',
  async (t) => {
    // 안(ㅇㅏㄴ) 녕(ㄴㅕㅇ) 하(ㅎㅏ) 세(ㅅㅔ) 요(ㅇㅛ) → 3+3+2+2+2
    t.equal(estimateTokens('안녕하세요'), 12)
    const sentence = '이 문서는 설치 방법을 설명합니다. 먼저 저장소를 복제합니다.'
    const jamo = sentence.normalize('NFD').replaceAll(' ', '').length
    t.equal(estimateTokens(sentence), jamo)
    t.equal(jamo, 66)
    const syllables = [...sentence.replaceAll(/[ .]/g, '')].length
    t.ok(estimateTokens(sentence) >= 2 * syllables, 'at least 2 per syllable')
    t.equal(estimateTokens('ㄱㅏ'), 2, 'compatibility jamo: one each')
  },
)

t.test('other scripts: CJK ideographs and kana 1 each, emoji 4, accented letters 1', async (t) => {
  t.equal(estimateTokens('日本語のテキスト'), 8)
  t.equal(estimateTokens('中文文本'), 4)
  t.equal(estimateTokens('👍'), 4)
  t.equal(estimateTokens('café'), 2, 'caf | é')
  t.equal(estimateTokens('Привет'), 6)
})

t.test('the estimate is additive over the separators the packer uses', async (t) => {
  const parts = [
    '## Heading',
    '- item one\n- item two',
    '```bash\n  make build\n```',
    '설치합니다.',
  ]
  for (const a of parts) {
    for (const b of parts) {
      t.equal(estimateTokens(`${a}\n\n${b}`), estimateTokens(a) + 2 + estimateTokens(b))
      t.equal(estimateTokens(`${a}\n${b}`), estimateTokens(a) + 1 + estimateTokens(b))
      t.equal(estimateTokens(`${a} ${b}`), estimateTokens(a) + estimateTokens(b))
    }
  }
})
