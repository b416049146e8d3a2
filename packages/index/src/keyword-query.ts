// What the keyword leg searches for: the query, plus the stem of each Korean word that carries a
// particle or a verb ending. Korean glues them to words ("서버를", "설치하려면"), and the
// full-text index splits on spaces, so "서버를" in a question only matches "서버를" in a page.
// Adding "서버" also matches the word where the page writes it bare (headings, tables, lists,
// compounds). Measured on the 28 Korean questions (fts.ts): hit@1 0.68 → 0.82, hit@5
// 0.89 → 1.00, MRR 0.77 → 0.90; English questions are unchanged (no Hangul).

/**
 * Particles and endings, longest first. A stem keeps at least two syllables, so a word that
 * merely ends like a particle ("평가", "속도") is left whole; a wrong cut only adds a term.
 */
const ENDINGS = [
  '했습니다',
  '하려면',
  '합니다',
  '하나요',
  '인가요',
  '되나요',
  '입니다',
  '이라는',
  '에서는',
  '하는',
  '하면',
  '하고',
  '하기',
  '해야',
  '되는',
  '에서',
  '에게',
  '한테',
  '으로',
  '까지',
  '부터',
  '보다',
  '처럼',
  '마다',
  '이나',
  '이랑',
  '라는',
  '이란',
  '을',
  '를',
  '이',
  '가',
  '은',
  '는',
  '의',
  '에',
  '로',
  '와',
  '과',
  '도',
  '만',
  '나',
  '랑',
]

/** The stem of one Korean word, or the word itself when nothing is glued to it. */
export function koreanStem(word: string): string {
  const ending = ENDINGS.find((e) => word.length >= e.length + 2 && word.endsWith(e))
  return ending === undefined ? word : word.slice(0, -ending.length)
}

/** The keyword leg's query text: the query and the stems its Korean words lack. */
export function keywordQuery(query: string): string {
  const words: string[] = query.match(/\p{Script=Hangul}+/gu) ?? []
  const stems = new Set(words.map(koreanStem).filter((stem) => !words.includes(stem)))
  return stems.size === 0 ? query : `${query} ${[...stems].join(' ')}`
}
