// `pnpm --silent cnfl convert FILE`: an operator's tool around the worker's converter. Prints the
// markdown of one Confluence storage-format page on stdout (exactly what the worker indexes),
// its warnings on stderr. FILE is storage XHTML, a REST response (.json, v1 or v2) holding
// `body.storage`, or `-` for stdin. Exit codes: 0 done, 1 error (one line on stderr), 2 usage.
import { readFile } from 'node:fs/promises'
import { resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { type ConvertOptions, convertStorage } from '../services/worker/src/convert/index.ts'
import { INGEST_USAGE, UsageError } from './ingest-usage.ts'

const USAGE = `Usage: cnfl <command> [options]

Commands:
  ingest SOURCE_ID  Run one sync of a source in the foreground, progress on stderr (or register
                    one first with --export FILE.zip or --kind; see below).
  convert FILE      Print the markdown of a Confluence storage-format page. FILE is storage
                    XHTML, a REST response (.json, v1 or v2) holding body.storage, or - for
                    stdin. Warnings go to stderr.
  search QUERY      Search the index as POST /api/search does: a table of hits (rank, score,
                    space, title › section, URL), or JSON lines with --json. Options:
                    --mode hybrid|vector|keyword, --top-k N, --space KEY…, --per-page N.
  ask QUESTION      A grounded answer from the chat model, streamed, then its numbered sources
                    with their URLs. Options: --space KEY…, --model NAME.
  eval FILE         Retrieval quality on a question set (JSON: [{question, page_id | url,
                    lang?}]): hit@1, hit@5 and MRR per mode and language. Options: --top-k N,
                    --mode M…, --space KEY…, --json.
  secrets rekey     Encrypt every source's credentials under SECRETS_KEY (after a rotation:
                    exit 0 means SECRETS_KEY_PREVIOUS can go).
  models import FILE --name NAME
                    Make a GGUF file a model of the Ollama at OLLAMA_URL, with a progress
                    bar. Options: --system TEXT, --template FILE, --parameters JSON,
                    --replace.
                    (cnfl search|ask|eval|secrets|models --help says more.)

Options of convert:
  --base-url URL    the site as a browser shows it (https://acme.atlassian.net/wiki): page and
                    attachment links point there
  --space KEY       the page's space key (links without a space point into it)
  --page-id ID      the page's id (attachment links)
  --jira-url URL    Jira base URL, to link issue keys
  --kind KIND       cloud (default) or datacenter: the heading ids anchor links point at
                    (Data Center's start with the page title)
  --title TITLE     the page's title (Data Center anchor links on the page)
  --max-bytes N     refuse a page body over N bytes (default: the worker's limit)
  A REST response supplies --base-url, --space, --page-id and --title from its _links.base,
  space key, id and title; the options override them.

  -h, --help        this help

${INGEST_USAGE}`

class CliError extends Error {}

/** Under `pnpm cnfl` the working directory is the repository; paths are the caller's. */
function callerCwd(): string {
  const base = process.env.npm_lifecycle_event === 'cnfl' ? process.env.INIT_CWD : undefined
  return base ?? process.cwd()
}

type Page = { storage: string; defaults: ConvertOptions }

/** The storage body of a REST response, and what it says about the page. */
function fromResponse(text: string, name: string): Page {
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (err) {
    throw new CliError(`${name}: not valid JSON (${(err as Error).message})`)
  }
  const page = (json ?? {}) as {
    id?: unknown
    title?: unknown
    space?: { key?: unknown }
    body?: { storage?: unknown }
    _links?: { base?: unknown; webui?: unknown }
  }
  const storage = page.body?.storage
  const value =
    typeof storage === 'string' ? storage : (storage as { value?: unknown } | undefined)?.value
  if (typeof value !== 'string') {
    const has = Object.keys(page.body ?? {}).join(', ') || 'no body'
    throw new CliError(
      `${name}: no body.storage in this response (it has: ${has}); ask for the storage ` +
        'format (v1: expand=body.storage, v2: body-format=storage)',
    )
  }
  const defaults: ConvertOptions = {}
  if (typeof page.id === 'string' || typeof page.id === 'number') defaults.pageId = String(page.id)
  if (typeof page.title === 'string') defaults.pageTitle = page.title
  const webui = typeof page._links?.webui === 'string' ? page._links.webui : ''
  const spaceKey = page.space?.key ?? /\/spaces\/([^/]+)\//.exec(webui)?.[1]
  if (typeof spaceKey === 'string') defaults.spaceKey = decodeURIComponent(spaceKey)
  if (typeof page._links?.base === 'string') defaults.baseUrl = page._links.base
  return { storage: value, defaults }
}

async function readInput(file: string): Promise<Page> {
  let text: string
  if (file === '-') {
    const chunks: Buffer[] = []
    for await (const chunk of process.stdin) chunks.push(chunk as Buffer)
    text = Buffer.concat(chunks).toString('utf8')
  } else {
    try {
      text = await readFile(resolve(callerCwd(), file), 'utf8')
    } catch (err) {
      throw new CliError(`cannot read ${file}: ${(err as Error).message}`)
    }
  }
  const name = file === '-' ? 'stdin' : file
  const json = file === '-' ? text.trimStart().startsWith('{') : /\.json$/i.test(file)
  return json ? fromResponse(text, name) : { storage: text, defaults: {} }
}

async function convert(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      'base-url': { type: 'string' },
      space: { type: 'string' },
      'page-id': { type: 'string' },
      'jira-url': { type: 'string' },
      kind: { type: 'string' },
      title: { type: 'string' },
      'max-bytes': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  })
  if (values.help) {
    process.stdout.write(USAGE)
    return 0
  }
  if (positionals.length !== 1) {
    process.stderr.write(
      positionals.length === 0 ? USAGE : `cnfl convert: one FILE at a time\n\n${USAGE}`,
    )
    return 2
  }
  let maxBytes: number | undefined
  if (values['max-bytes'] !== undefined) {
    maxBytes = Number(values['max-bytes'])
    if (!Number.isInteger(maxBytes) || maxBytes < 0) {
      throw new CliError(`--max-bytes must be a whole number of bytes, not ${values['max-bytes']}`)
    }
  }
  if (values.kind !== undefined && values.kind !== 'cloud' && values.kind !== 'datacenter') {
    throw new CliError(`--kind must be cloud or datacenter, not ${values.kind}`)
  }
  const file = positionals[0] as string
  const { storage, defaults } = await readInput(file)
  const options: ConvertOptions & { maxBytes?: number } = { ...defaults }
  if (values['base-url'] !== undefined) options.baseUrl = values['base-url']
  if (values.space !== undefined) options.spaceKey = values.space
  if (values['page-id'] !== undefined) options.pageId = values['page-id']
  if (values['jira-url'] !== undefined) options.jiraBaseUrl = values['jira-url']
  if (values.kind !== undefined) {
    options.anchorStyle = values.kind === 'datacenter' ? 'server' : 'cloud'
  }
  if (values.title !== undefined) options.pageTitle = values.title
  if (maxBytes !== undefined) options.maxBytes = maxBytes
  let result: ReturnType<typeof convertStorage>
  try {
    result = convertStorage(storage, options)
  } catch (err) {
    // convertStorage only throws ConversionError (a page over the size limit).
    throw new CliError(`${file}: ${(err as Error).message}`)
  }
  for (const warning of result.warnings) process.stderr.write(`warning: ${warning}\n`)
  process.stdout.write(result.markdown)
  return 0
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv
  if (command === undefined) {
    process.stderr.write(USAGE)
    return 2
  }
  if (command === '-h' || command === '--help' || command === 'help') {
    process.stdout.write(USAGE)
    return 0
  }
  if (command === 'convert') return convert(rest)
  if (command === 'search') {
    const { search } = await import('./search.ts')
    return search(rest)
  }
  if (command === 'ask') {
    const { ask } = await import('./ask.ts')
    return ask(rest)
  }
  if (command === 'eval') {
    const { evalQuestions } = await import('./eval.ts')
    return evalQuestions(rest, callerCwd())
  }
  if (command === 'secrets') {
    const { secrets } = await import('./secrets.ts')
    return secrets(rest)
  }
  if (command === 'models') {
    const { models } = await import('./models.ts')
    return models(rest, callerCwd())
  }
  if (command === 'ingest') {
    const { ingest } = await import('./ingest.ts')
    return ingest(rest, callerCwd())
  }
  throw new CliError(`unknown command '${command}' (cnfl --help lists the commands)`)
}

try {
  process.exitCode = await main(process.argv.slice(2))
} catch (err) {
  // parseArgs reports unknown or malformed options with a code of its own.
  const code = (err as { code?: string }).code ?? ''
  const message = (err as Error).message
  if (code.startsWith('ERR_PARSE_ARGS')) {
    const unknown = /^Unknown option '([^']+)'/.exec(message)?.[1]
    const line = unknown ? `unknown option ${unknown}` : (message.split('. ')[0] as string)
    process.stderr.write(`cnfl: ${line} (cnfl --help lists the options)\n`)
  } else {
    // A CliError says what went wrong in one line; anything else is shown the same way.
    process.stderr.write(`cnfl: ${message}\n`)
  }
  process.exitCode = err instanceof UsageError ? 2 : 1
}
