import { createRequire } from 'node:module'
import { convertStorage } from '../../services/worker/src/convert/index.ts'
import { normalizeWhitespace, toMarkdown } from '../../services/worker/src/convert/markdown.ts'
import { prepare } from '../../services/worker/src/convert/storage.ts'
import { hostBusySeconds } from '../lib/host-cpu.ts'
import { note, reporter, setting } from '../lib/report.ts'
import { median, percentile } from '../lib/stats.ts'
import { buildPage, buildTable } from './pages.ts'

// `pnpm bench convert`: the storage-format → markdown converter on one thread, against the
// turndown baseline of shared/reference/performance-notes.md §2, in the same run.
//
// 1. Throughput: 20 deterministic ~21 KB pages (pages.ts), a warm-up, then ROUNDS rounds of
//    PAGES_PER_RUN conversions cycling the pages, each followed by BASELINE_PAGES conversions
//    of the baseline (4.) so both see the same load; pages/s and MB/s are the median run, the
//    per-page p50/p95 over every timed conversion, the ratio the median of the rounds'.
// 2. Where the time goes: pass 1 (`prepare`: htmlparser2 parse + walk writing plain HTML) and
//    pass 2 (`toMarkdown` + `normalizeWhitespace`: turndown, which parses that HTML again) timed
//    apart, mean ms per page.
// 3. A 400×8 table (header row, <p> in every cell): the Joplin GFM plugin took 6 s on it; the
//    target is under 100 ms.
// 4. Baseline: plain turndown + @joplin/turndown-plugin-gfm on the raw page, as in the notes
//    (which also show what it gets wrong: code lost, pages swallowed by self-closing macros).
//
// Everything runs in this process, one conversion at a time (GC has its own threads); for
// steadier figures pin it: `taskset -c 0 pnpm bench convert`.
// Knobs (environment): BENCH_CONVERT_ROUNDS (3), BENCH_CONVERT_PAGES (600 a run),
// BENCH_CONVERT_BASELINE_PAGES (200).

const BENCH = 'convert'
const report = reporter(BENCH)
const log = (message: string) => note(BENCH, message)

const ROUNDS = setting('BENCH_CONVERT_ROUNDS', 3, true)
const PAGES_PER_RUN = setting('BENCH_CONVERT_PAGES', 600, true)
const BASELINE_PAGES = setting('BENCH_CONVERT_BASELINE_PAGES', 200, true)
const WARMUP = 100
const VARIANTS = 20

// turndown and the GFM plugin are the worker's dependencies, resolved from its package.
type Turndown = { use(plugin: unknown): Turndown; turndown(html: string): string }
const requireWorker = createRequire(new URL('../../services/worker/package.json', import.meta.url))
const TurndownService = requireWorker('turndown') as new (options: object) => Turndown
const { gfm } = requireWorker('@joplin/turndown-plugin-gfm') as { gfm: unknown }

type Timing = {
  ms: number[]
  totalMs: number
  bytes: number
  /** Cores' worth of CPU other programs used meanwhile (undefined without /proc/stat). */
  backgroundCores?: number
}

/** `count` calls of `fn` cycling through `inputs`, each timed. */
function timeRun(inputs: readonly string[], count: number, fn: (input: string) => unknown): Timing {
  const ms: number[] = []
  let bytes = 0
  const hostBefore = hostBusySeconds()
  const ownBefore = process.cpuUsage()
  const started = performance.now()
  for (let i = 0; i < count; i++) {
    const input = inputs[i % inputs.length] as string
    const t0 = performance.now()
    fn(input)
    ms.push(performance.now() - t0)
    bytes += Buffer.byteLength(input)
  }
  const totalMs = performance.now() - started
  const own = process.cpuUsage(ownBefore)
  const hostAfter = hostBusySeconds()
  const backgroundCores =
    hostBefore === undefined || hostAfter === undefined
      ? undefined
      : Math.max(0, hostAfter - hostBefore - (own.user + own.system) / 1e6) / (totalMs / 1000)
  return { ms, totalMs, bytes, backgroundCores }
}

function main(): void {
  const started = performance.now()
  const pages = Array.from({ length: VARIANTS }, (_, i) => buildPage(i))
  const sizes = pages.map((page) => Buffer.byteLength(page))
  const meanKb = sizes.reduce((a, b) => a + b, 0) / sizes.length / 1024
  log(`${VARIANTS} pages, ${meanKb.toFixed(1)} KiB on average`)

  // The pages must exercise the converter: two fenced code blocks and two tables each.
  for (const [i, page] of pages.entries()) {
    const { markdown } = convertStorage(page)
    const fences = markdown.match(/^```/gm)?.length ?? 0
    const tables = markdown.match(/^\| --- /gm)?.length ?? 0
    if (fences !== 4 || tables !== 2) {
      throw new Error(
        `page ${i}: expected 2 code blocks and 2 tables, got ${fences / 2} and ${tables}`,
      )
    }
  }

  // 1. Throughput of the whole converter, each round followed by a run of the baseline (plain
  // turndown + Joplin GFM on the raw page), so the ratio compares runs under the same load.
  const turndown = new TurndownService({
    headingStyle: 'atx',
    codeBlockStyle: 'fenced',
    bulletListMarker: '-',
  }).use(gfm)
  const ours = (page: string) => convertStorage(page)
  const theirs = (page: string) => turndown.turndown(page)
  timeRun(pages, WARMUP, ours)
  timeRun(pages, WARMUP / 5, theirs)
  const perS = (run: Timing) => (run.ms.length / run.totalMs) * 1000
  const runs: Timing[] = []
  const baselines: Timing[] = []
  const ratios: number[] = []
  for (let round = 0; round < ROUNDS; round++) {
    const run = timeRun(pages, PAGES_PER_RUN, ours)
    const baseline = timeRun(pages, BASELINE_PAGES, theirs)
    runs.push(run)
    baselines.push(baseline)
    ratios.push(perS(run) / perS(baseline))
    log(
      `round ${round + 1}: ${perS(run).toFixed(1)} pages/s (p50 ${median(run.ms).toFixed(2)} ms, ` +
        `p95 ${percentile(run.ms, 95).toFixed(2)} ms), turndown + GFM ` +
        `${perS(baseline).toFixed(1)} pages/s` +
        (run.backgroundCores === undefined
          ? ''
          : `; other programs: ${run.backgroundCores.toFixed(2)} cores`),
    )
  }
  const pagesPerS = median(runs.map(perS))
  const mbPerS = median(runs.map((run) => run.bytes / 1e6 / (run.totalMs / 1000)))
  const all = runs.flatMap((run) => run.ms)
  report('pages_per_s', pagesPerS, 'pages/s')
  report('mb_per_s', mbPerS, 'MB/s')
  report('ms_per_page_p50', median(all), 'ms')
  report('ms_per_page_p95', percentile(all, 95), 'ms')
  report('page_kb_mean', meanKb, 'KiB')
  const baselinePagesPerS = median(baselines.map(perS))
  report('turndown_gfm_raw_pages_per_s', baselinePagesPerS, 'pages/s')
  report('turndown_gfm_raw_ms_per_page_p50', median(baselines.flatMap((run) => run.ms)), 'ms')
  const ratio = median(ratios)
  report('pages_per_s_ratio_vs_turndown_gfm_raw', ratio, 'ratio')
  const background = [...runs, ...baselines].flatMap((run) =>
    run.backgroundCores === undefined ? [] : [run.backgroundCores],
  )
  if (background.length > 0) report('background_cpu_cores_median', median(background), 'cores')

  // 2. Pass 1 and pass 2 apart, on the same pages: mean ms a page (GC pauses included, charged
  // to the pass they interrupt), so the two add up to what pages/s says.
  let pass1Total = 0
  let pass2Total = 0
  for (let i = 0; i < PAGES_PER_RUN; i++) {
    const page = pages[i % pages.length] as string
    const t0 = performance.now()
    const prepared = prepare(page)
    const t1 = performance.now()
    normalizeWhitespace(toMarkdown(prepared.html, prepared.code))
    pass2Total += performance.now() - t1
    pass1Total += t1 - t0
  }
  const pass1Ms = pass1Total / PAGES_PER_RUN
  const pass2Ms = pass2Total / PAGES_PER_RUN
  report('pass1_prepare_ms_per_page', pass1Ms, 'ms')
  report('pass2_markdown_ms_per_page', pass2Ms, 'ms')
  report('pass1_share', pass1Ms / (pass1Ms + pass2Ms), 'ratio')

  // 3. One big table.
  const big = buildTable(400, 8)
  convertStorage(big)
  const tableMs = median(timeRun([big], 7, (html) => convertStorage(html)).ms)
  report('table_400x8_ms', tableMs, 'ms')
  if (tableMs >= 100) log(`table_400x8_ms = ${tableMs.toFixed(1)} ms, over the 100 ms target`)

  log(
    `converter ${pagesPerS.toFixed(1)} pages/s (${mbPerS.toFixed(2)} MB/s; pass 1 ` +
      `${pass1Ms.toFixed(2)} ms + pass 2 ${pass2Ms.toFixed(2)} ms a page), turndown + GFM on the ` +
      `raw page ${baselinePagesPerS.toFixed(1)} pages/s: ×${ratio.toFixed(2)}; ` +
      `400×8 table ${tableMs.toFixed(1)} ms; done in ${((performance.now() - started) / 1000).toFixed(0)} s`,
  )
}

main()
