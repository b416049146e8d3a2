import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { hitPlace, printable, spaceFilter } from '../../scripts/search.ts'
import { tempDir } from '../helpers/api.ts'
import { DEFAULT_MODELS } from '../helpers/ollama-stand-in.ts'
import { runScript } from '../helpers/process.ts'
import { evalIndex, QUESTIONS_FILE } from '../helpers/search-fixtures.ts'

// `cnfl search`, `cnfl eval` and `cnfl ask` as an operator runs them: real processes on an
// index the real pipeline built from the querypie pages and the English fixture space, with
// the Ollama stand-in embedding queries and writing answers.

const CNFL = 'scripts/cnfl.ts'

const rig = await evalIndex(t)
if (rig === null) throw new Error('these tests need the querypie pages of ../shared/fixtures')
// The stand-in's lexical vectors are less alike than a real model's (0.2–0.5 for a good match):
// the relevance floor of grounded answers is lowered to match.
const env = {
  LANCEDB_URI: rig.lancedbUri,
  OLLAMA_URL: rig.ollama.url,
  LOG_LEVEL: 'silent',
  RAG_MIN_SIMILARITY: '0.1',
}
const cnfl = (args: string[], extra: Record<string, string> = {}) =>
  runScript(CNFL, args, { env: { ...env, ...extra } })

t.test('cnfl search prints a table of hits, the right page first', async (t) => {
  const run = await cnfl(['search', 'how do I roll back a bad release in Argo CD'])
  t.equal(run.code, 0, run.stderr)
  t.equal(run.stderr, '')
  const [header, first, ...rest] = run.stdout.trimEnd().split('\n')
  t.match(header, /^\s*#\s+score\s+space\s+title › section\s+url$/)
  t.match(
    first,
    /^\s*1\s+\d\.\d{4}\s+PLAT\s+Rollback Procedure( › \S.*)?\s+http:\/\/\S+\/pages\/9012/,
  )
  t.equal(rest.length, 9, 'ten hits by default')
})

t.test('cnfl search --json: one hit per line, in the spaces asked (`qm` is QM)', async (t) => {
  const run = await cnfl([
    'search',
    '감사 로그를 CSV 파일로 내려받기',
    '--json',
    '--top-k',
    '3',
    '--mode',
    'keyword',
    '--space',
    'qm',
    '--per-page',
    '1',
  ])
  t.equal(run.code, 0, run.stderr)
  const hits = run.stdout
    .trimEnd()
    .split('\n')
    .map((line) => JSON.parse(line))
  t.equal(hits.length, 3)
  t.same(
    hits.map((h) => h.space),
    ['QM', 'QM', 'QM'],
  )
  t.equal(new Set(hits.map((h) => h.page_id)).size, 3, 'one hit per page')
  t.match(hits[0], { page_id: '544379140', url: /^http/, text: String, snippet: String })
  t.ok(hits.every((h) => h.keyword_score !== undefined && h.similarity === undefined))
})

t.test('cnfl search: no hits, and keywords when the embedding model is down', async (t) => {
  const none = await cnfl(['search', 'rollback', '--space', 'NOPE'])
  t.equal(none.code, 0, none.stderr)
  t.equal(none.stderr, 'no hits\n')
  t.match(none.stdout, /^\s*#\s+score\s+space\s+title › section\s+url\n$/)
  const down = await cnfl(['search', 'force failover RDS'], { OLLAMA_URL: 'http://127.0.0.1:1' })
  t.equal(down.code, 0, down.stderr)
  t.match(down.stderr, /^searched in keyword mode: the embedding model nomic-embed-text/)
  t.match(down.stdout, /Runbook: Database Failover/)
})

t.test('cnfl search: bad usage exits 2 and says why', async (t) => {
  const bare = await cnfl(['search'])
  t.equal(bare.code, 2)
  t.match(bare.stderr, /^Usage: cnfl search "QUERY"/)
  const help = await cnfl(['search', '--help'])
  t.equal(help.code, 0)
  t.match(help.stdout, /^Usage: cnfl search "QUERY"/)
  for (const [args, message] of [
    [['--mode', 'fuzzy'], /--mode must be hybrid, vector or keyword, not fuzzy/],
    [['--top-k', '0'], /--top-k must be a whole number from 1 to 100, not 0/],
    [['--per-page', '2.5'], /--per-page must be a whole number from 1 to 100, not 2.5/],
    [['--colour'], /^cnfl: unknown option --colour\n$/],
    [['--mode'], /^cnfl: Option '--mode <value>' argument missing\n$/],
  ] as const) {
    const run = await cnfl(['search', 'x', ...args])
    t.equal(run.code, 2, args.join(' '))
    t.match(run.stderr, message)
  }
})

t.test('cnfl eval prints hit@1, hit@5 and MRR per mode and language', async (t) => {
  const run = await cnfl(['eval', QUESTIONS_FILE])
  t.equal(run.code, 0, run.stderr)
  t.match(run.stderr, /^searching 56 questions in keyword, vector, hybrid \(top 10\)\n/)
  t.match(run.stderr, /hybrid: done \(168\/168\)/)
  t.notMatch(run.stderr, /no question found/)
  const lines = run.stdout.trimEnd().split('\n')
  t.match(lines[0], /^mode\s+lang\s+questions\s+hit@1\s+hit@5\s+MRR$/)
  const rows = lines.slice(1, 10).map((line) => line.split(/\s+/))
  t.same(
    rows.map((r) => r.slice(0, 3)),
    ['keyword', 'vector', 'hybrid'].flatMap((mode) => [
      [mode, 'all', '56'],
      [mode, 'en', '28'],
      [mode, 'ko', '28'],
    ]),
  )
  for (const row of rows) {
    for (const figure of row.slice(3)) t.match(figure, /^[01]\.\d{3}$/)
  }
  const hybridAll = rows[6] as string[]
  t.ok(Number(hybridAll[4]) >= 0.9, `hybrid hit@5 ${hybridAll[4]}`)
  t.equal(lines[10], 'top k = 10; ranks count pages')
})

t.test('cnfl eval --json, some modes, one space', async (t) => {
  const run = await cnfl([
    'eval',
    QUESTIONS_FILE,
    '--json',
    '--mode',
    'hybrid',
    '--mode',
    'keyword',
    '--top-k',
    '5',
    '--space',
    'PLAT',
  ])
  t.equal(run.code, 0, run.stderr)
  const report = JSON.parse(run.stdout)
  t.equal(report.top_k, 5)
  t.same(Object.keys(report.modes), ['hybrid', 'keyword'])
  t.equal(report.modes.hybrid.by_lang.ko.hit_at_5, 0, 'the Korean pages are in another space')
  t.ok(report.modes.hybrid.by_lang.en.hit_at_5 >= 0.9)
  t.equal(report.ranks.keyword.length, 56)
})

t.test('cnfl eval: a question set it cannot use, and bad usage', async (t) => {
  const dir = await tempDir(t, 'cnfl-eval-')
  const notJson = join(dir, 'not.json')
  await writeFile(notJson, '[{"question": ')
  const noPage = join(dir, 'no-page.json')
  await writeFile(noPage, JSON.stringify([{ question: 'where?' }]))
  for (const [file, message] of [
    [join(dir, 'missing.json'), /^cnfl: cannot read .*missing\.json: ENOENT/],
    [notJson, /^cnfl: .*not\.json: not valid JSON: /],
    [noPage, /^cnfl: .*no-page\.json: question 1: name the expected page/],
  ] as const) {
    const run = await cnfl(['eval', file])
    t.equal(run.code, 1, file)
    t.match(run.stderr, message)
    t.equal(run.stdout, '')
  }
  // An index that holds none of the pages the questions name: all zeros, and a hint why.
  const elsewhere = join(dir, 'elsewhere.json')
  await writeFile(
    elsewhere,
    JSON.stringify([{ question: 'how do I force a failover?', page_id: '999999999' }]),
  )
  const zeros = await cnfl(['eval', elsewhere, '--mode', 'keyword'])
  t.equal(zeros.code, 0, zeros.stderr)
  t.match(zeros.stdout, /^keyword\s+all\s+1\s+0\.000\s+0\.000\s+0\.000$/m)
  t.match(
    zeros.stderr,
    /no question found its page in any mode: does LANCEDB_URI=.* hold the pages the questions name\?/,
  )
  // No index at LANCEDB_URI: every command that reads it says so and fails, rather than
  // answering as if the space held nothing.
  for (const args of [
    ['eval', QUESTIONS_FILE, '--mode', 'keyword'],
    ['search', 'failover'],
    ['ask', 'how do I fail over?'],
  ]) {
    const empty = await cnfl(args, { LANCEDB_URI: dir })
    t.equal(empty.code, 1, args.join(' '))
    t.equal(empty.stdout, '')
    t.equal(
      empty.stderr,
      `cnfl: no chunk index at LANCEDB_URI=${dir} yet: register a source and sync it first (cnfl ingest --help)\n`,
    )
  }
  const bare = await cnfl(['eval'])
  t.equal(bare.code, 2)
  t.match(bare.stderr, /^Usage: cnfl eval QUESTIONS\.json/)
  const help = await cnfl(['eval', '-h'])
  t.equal(help.code, 0)
  t.match(help.stdout, /hit@1, hit@5 and MRR/)
  const mode = await cnfl(['eval', QUESTIONS_FILE, '--mode', 'bm25'])
  t.equal(mode.code, 2)
  t.match(mode.stderr, /--mode must be hybrid, vector or keyword, not bm25/)
})

t.test('cnfl ask streams a grounded answer, then its numbered sources', async (t) => {
  const { options } = rig.ollama
  const tokens = options.tokens
  options.tokens = ['Roll back', ' in Argo CD', ' [1].']
  t.teardown(() => {
    options.tokens = tokens
  })
  const before = rig.ollama.requests.length
  const run = await cnfl(['ask', 'How do I roll back a bad release in Argo CD?', '--space', 'PLAT'])
  t.equal(run.code, 0, run.stderr)
  const [answer, sources] = run.stdout.split('\n\nSources:\n')
  t.equal(answer, 'Roll back in Argo CD [1].')
  const entries = (sources as string).trimEnd().split('\n')
  t.match(entries[0], /^\[1\]\* Rollback Procedure/, 'the first source, cited')
  t.match(entries[1], /^ {5}http:\/\/\S+\/wiki\/spaces\/PLAT\/pages\/9012/)
  t.match(entries[2], /^\[2\] {2}\S/, 'the second source, not cited')
  const chat = rig.ollama.requests.slice(before).find((r) => r.path === '/api/chat')
  const body = chat?.body as { model: string; options: { num_ctx: number }; messages: unknown[] }
  t.equal(body.model, 'llama3.2')
  t.ok(body.options.num_ctx >= 2048, `num_ctx ${body.options.num_ctx}`)
  t.match(JSON.stringify(body.messages), /argocd app rollback order-service/)
})

t.test('cnfl ask: nothing found, keyword fallback, errors and usage', async (t) => {
  const none = await cnfl(['ask', '휴가 중 결재 위임은 어떻게 하나요?', '--space', 'NOPE'])
  t.equal(none.code, 0, none.stderr)
  t.equal(none.stdout, '색인된 Confluence 스페이스에는 이 질문에 대한 내용이 없습니다.\n')
  // The chat model is there, the embedding model is not: keywords, said so on stderr.
  const { options } = rig.ollama
  options.models = DEFAULT_MODELS.filter((m) => m.name.startsWith('llama')).map((m) => ({ ...m }))
  t.teardown(() => {
    options.models = DEFAULT_MODELS.map((m) => ({ ...m }))
  })
  const keyword = await cnfl(['ask', 'force failover of the RDS primary'])
  t.equal(keyword.code, 0, keyword.stderr)
  t.match(keyword.stderr, /^searched in keyword mode: the embedding model nomic-embed-text/)
  t.match(keyword.stdout, /\nSources:\n\[1\]/)
  const missing = await cnfl(['ask', 'force failover of the RDS primary', '--model', 'nope'])
  t.equal(missing.code, 1)
  t.match(missing.stderr, /^cnfl: .*nope.*not found/)
  const bare = await cnfl(['ask', '  '])
  t.equal(bare.code, 2)
  t.match(bare.stderr, /^Usage: cnfl ask "QUESTION"/)
  const help = await cnfl(['ask', '--help'])
  t.equal(help.code, 0)
  t.match(help.stdout, /numbered sources/)
})

t.test('cnfl --help lists search, ask and eval', async (t) => {
  const run = await cnfl(['--help'])
  t.equal(run.code, 0)
  t.match(run.stdout, /\n {2}search QUERY {6}/)
  t.match(run.stdout, /\n {2}ask QUESTION {4}/)
  t.match(run.stdout, /\n {2}eval FILE {9}/)
})

t.test('page text reaches a terminal without its control characters', async (t) => {
  t.equal(printable('a\u001b[2Jb\u009b31mc\n\td'), 'a [2Jb 31mc\n\td')
  t.same(spaceFilter(['eng', '~jdoe', 'not a key']), { spaces: ['ENG', '~jdoe', 'not a key'] })
  t.equal(spaceFilter(undefined), undefined)
  t.equal(
    hitPlace({ title: 'Evil\u001b]8;;http://x\u0007 title', heading_path: 'A\nB' }),
    'Evil ]8;;http://x title › A B',
  )
})
