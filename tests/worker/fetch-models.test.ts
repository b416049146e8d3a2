import { createHash, randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import {
  downloadName,
  FetchError,
  fetchModels,
  manifestPath,
  redactedSource,
  sourcesOf,
} from '../../services/worker/src/models/fetch.ts'
import { runScript } from '../helpers/process.ts'

// The Ollama pod's download init container: it runs on the worker's image because the stock
// ollama image has no curl or wget. Tested against a real HTTP server, with real files: what it
// leaves is exactly what init-models.sh picks up (tests/k8s/ollama-init.test.ts runs that side).

const GGUF = Buffer.concat([Buffer.from('GGUF'), randomBytes(256 * 1024)])
const SUM = createHash('sha256').update(GGUF).digest('hex')

type Handler = (req: IncomingMessage, res: ServerResponse) => void

/** An HTTP server answering with `handler`; `requests` lists the paths asked for. */
async function server(t: Test, handler: Handler) {
  const requests: Array<{ path: string; authorization?: string }> = []
  const http = createServer((req, res) => {
    requests.push({ path: req.url ?? '', authorization: req.headers.authorization })
    handler(req, res)
  })
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise((resolve) => http.close(resolve)))
  const base = `http://127.0.0.1:${(http.address() as AddressInfo).port}`
  return { base, requests }
}

const serveGguf: Handler = (_req, res) => res.end(GGUF)

async function dirs(t: Test) {
  const root = await mkdtemp(join(tmpdir(), 'fetch-models-'))
  t.teardown(() => rm(root, { recursive: true, force: true }))
  return { downloadDir: join(root, 'downloads'), modelsDir: join(root, 'models') }
}

const files = (dir: string) => readdir(dir).catch(() => [] as string[])

t.test(
  'the pieces: sources, file names and manifest paths as Ollama and the script see them',
  async (t) => {
    const sources = sourcesOf(
      ' llama3.2=registry junk =x\n nomic=file:/m/n.gguf llama3.2=https://h/a.gguf ',
    )
    t.same(
      [...sources],
      [
        ['llama3.2', 'https://h/a.gguf'],
        ['nomic', 'file:/m/n.gguf'],
      ],
    )
    t.equal(downloadName('team/llama3.2:8b'), 'team_llama3.2_8b.gguf')
    t.equal(
      manifestPath('/m', 'llama3.2'),
      join('/m', 'manifests', 'registry.ollama.ai', 'library', 'llama3.2', 'latest'),
    )
    t.equal(
      manifestPath('/m', 'team/qwen:7b'),
      join('/m', 'manifests', 'registry.ollama.ai', 'team', 'qwen', '7b'),
    )
    t.equal(
      manifestPath('/m', 'mirror.local:5000/team/qwen:7b'),
      join('/m', 'manifests', 'mirror.local:5000', 'team', 'qwen', '7b'),
    )
  },
)

t.test(
  'as the init container runs it: downloads, verifies and names the file; credentials stay out of the log',
  async (t) => {
    const { base, requests } = await server(t, serveGguf)
    const { downloadDir, modelsDir } = await dirs(t)
    const url = new URL(`${base}/models/llama.gguf#sha256=${SUM.toUpperCase()}`)
    url.username = 'mirror'
    url.password = 's3cret-pass'
    const run = await runScript('services/worker/src/fetch-models.ts', [], {
      env: {
        CHAT_MODEL: 'llama3.2',
        EMBED_MODEL: 'nomic-embed-text',
        MODEL_SOURCES: `llama3.2=${url.href} nomic-embed-text=file:/models/n.gguf`,
        MODEL_DOWNLOAD_DIR: downloadDir,
        OLLAMA_MODELS: modelsDir,
      },
    })
    t.equal(run.code, 0, run.stderr)
    t.same(
      await files(downloadDir),
      ['llama3.2.gguf'],
      'only the http source is fetched, no .part left',
    )
    t.ok(
      GGUF.equals(await readFile(join(downloadDir, 'llama3.2.gguf'))),
      'the file is the one served',
    )
    t.same(requests, [
      {
        path: '/models/llama.gguf',
        authorization: `Basic ${Buffer.from('mirror:s3cret-pass').toString('base64')}`,
      },
    ])
    t.match(
      run.stdout,
      /downloading llama3\.2 from http:\/\/127\.0\.0\.1:\d+\/models\/llama\.gguf\n/,
    )
    t.match(run.stdout, /llama3\.2 downloaded, sha256 verified/)
    t.notMatch(run.stdout + run.stderr, /s3cret|mirror:/, 'no credentials in the output')
  },
)

t.test('with nothing configured the container has nothing to do', async (t) => {
  const run = await runScript('services/worker/src/fetch-models.ts', [], { env: {} })
  t.equal(run.code, 0, run.stderr)
  t.equal(run.stdout + run.stderr, '')
})

t.test('a failure is one line on stderr and a failed container', async (t) => {
  const { base } = await server(t, (_req, res) => res.end('<html>not found</html>'))
  const { downloadDir, modelsDir } = await dirs(t)
  const run = await runScript('services/worker/src/fetch-models.ts', [], {
    env: {
      CHAT_MODEL: 'llama3.2',
      MODEL_SOURCES: `llama3.2=${base}/x.gguf`,
      MODEL_DOWNLOAD_DIR: downloadDir,
      OLLAMA_MODELS: modelsDir,
    },
  })
  t.equal(run.code, 1)
  t.equal(
    run.stderr,
    `fetch-models: model llama3.2: download from ${base}/x.gguf failed (not a GGUF file); to fix: serve the model as a .gguf file\n`,
  )
  t.same(await files(downloadDir), [], 'nothing half-written is left')
})

/** A model as Ollama keeps it: a manifest naming a config and a layer, both blobs present. */
async function haveModel(modelsDir: string, model: string, manifest?: string, blobs = 2) {
  const path = manifestPath(modelsDir, model)
  await mkdir(join(path, '..'), { recursive: true })
  const digests = ['1', '2'].map((n) => `sha256:${n.repeat(64)}`)
  await writeFile(
    path,
    manifest ??
      JSON.stringify({ config: { digest: digests[0] }, layers: [{ digest: digests[1] }] }),
  )
  await mkdir(join(modelsDir, 'blobs'), { recursive: true })
  for (const digest of digests.slice(0, blobs)) {
    await writeFile(join(modelsDir, 'blobs', digest.replace(':', '-')), '')
  }
}

t.test('no request for a model on the volume, or one downloaded already', async (t) => {
  const { base, requests } = await server(t, serveGguf)
  const { downloadDir, modelsDir } = await dirs(t)
  await haveModel(modelsDir, 'team/chat:q4')
  await mkdir(downloadDir, { recursive: true })
  await writeFile(join(downloadDir, downloadName('embed')), GGUF)
  const said: string[] = []
  await fetchModels(
    {
      models: ['team/chat:q4', 'embed', 'from-the-registry'],
      sources: `team/chat:q4=${base}/c.gguf embed=${base}/e.gguf`,
      downloadDir,
      modelsDir,
    },
    (line) => said.push(line),
  )
  t.same(requests, [])
  t.same(said, [
    'fetch-models: team/chat:q4 is on the volume',
    'fetch-models: embed is downloaded already',
  ])
})

t.test('each refusal names the model, the cause and the fix, and leaves no file', async (t) => {
  let mode = 'gguf'
  const { base, requests } = await server(t, (_req, res) => {
    if (mode === 'gguf') return res.end(GGUF)
    if (mode === '404') {
      res.statusCode = 404
      return res.end('no such model')
    }
    if (mode === '204') {
      res.statusCode = 204
      return res.end()
    }
    if (mode === 'short') return res.end('GG')
    // Cut: half the file, then the connection dies.
    res.writeHead(200, { 'content-length': String(GGUF.length) })
    res.write(GGUF.subarray(0, 1000), () => res.socket?.destroy())
  })
  const { downloadDir, modelsDir } = await dirs(t)
  const attempt = (source: string) =>
    fetchModels({ models: ['m'], sources: `m=${source}`, downloadDir, modelsDir }, () => {})

  const before = requests.length
  await t.rejects(attempt(`${base}/m.gguf#sha256=abc`), {
    constructor: FetchError,
    message: `model m: the source ${base}/m.gguf ends in "#sha256=abc"; to fix: end it in #sha256= and the file's 64 hex digit sha256, or nothing`,
  })
  await t.rejects(attempt(`${base}/m.gguf#md5=${SUM.slice(0, 32)}`), { message: /ends in "#md5=/ })
  t.equal(requests.length, before, 'a malformed digest is refused before any download')

  await t.rejects(attempt(`${base}/m.gguf#sha256=${'0'.repeat(64)}`), {
    message: `model m: download from ${base}/m.gguf failed (sha256 ${SUM}, expected ${'0'.repeat(64)}); to fix: serve the right file or fix #sha256=`,
  })
  mode = '404'
  await t.rejects(attempt(`${base}/m.gguf`), {
    message: `model m: download from ${base}/m.gguf failed (HTTP 404); to fix: check the URL in MODEL_SOURCES (confluence-bot-config)`,
  })
  mode = '204'
  await t.rejects(attempt(`${base}/m.gguf`), { message: /failed \(HTTP 204\)/ })
  mode = 'short'
  await t.rejects(attempt(`${base}/m.gguf`), { message: /failed \(not a GGUF file\)/ })
  mode = 'cut'
  await t.rejects(attempt(`${base}/m.gguf`), {
    message:
      /^model m: download from .* failed \(.+\); to fix: check the server and the free space of the download volume$/,
  })
  await t.rejects(attempt('http://'), {
    message:
      'model m: the source "http://" is not a URL; to fix: correct its entry in MODEL_SOURCES (confluence-bot-config)',
  })
  // Nothing listens on a port just released; a port fetch refuses outright is a cause too.
  const closed = createServer()
  await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve))
  const port = (closed.address() as AddressInfo).port
  await new Promise((resolve) => closed.close(resolve))
  await t.rejects(attempt(`http://127.0.0.1:${port}/m.gguf`), {
    message: `model m: download from http://127.0.0.1:${port}/m.gguf failed (connect ECONNREFUSED 127.0.0.1:${port}); to fix: serve the GGUF inside the cluster and allow the Ollama pod to reach it (NetworkPolicy)`,
  })
  await t.rejects(attempt('http://127.0.0.1:1/m.gguf'), { message: /failed \(bad port\)/ })
  t.same(await files(downloadDir), [], 'no file and no .part after any refusal')

  // The download directory cannot be created (a file stands in its way).
  const blocked = join(downloadDir, 'blocked')
  await writeFile(blocked, '')
  mode = 'gguf'
  await t.rejects(
    fetchModels(
      { models: ['m'], sources: `m=${base}/m.gguf`, downloadDir: join(blocked, 'x'), modelsDir },
      () => {},
    ),
    {
      message:
        /^model m: cannot create the download directory .*blocked\/x \(.+\); to fix: mount a writable volume there$/,
    },
  )
})

t.test('sources are shown without user, password, query or fragment', async (t) => {
  t.equal(
    redactedSource(`HTTPS://mirror:s3cret@models.tools.svc:8443/a.gguf?token=abc#sha256=${SUM}`),
    'HTTPS://models.tools.svc:8443/a.gguf',
  )
  t.equal(redactedSource('http://models/a.gguf'), 'http://models/a.gguf')
  t.equal(redactedSource('not a url at all'), 'not a url at all')
  // A password with an unescaped "/" (a base64 token): the URL is malformed, and still hidden.
  t.equal(redactedSource('https://bot:Zm9v+YmFy/YmF6==@host/x.gguf'), 'https://host/x.gguf')
  const { downloadDir, modelsDir } = await dirs(t)
  await t.rejects(
    fetchModels(
      {
        models: ['m'],
        sources: 'm=http://u:s3cret@host:99999/x.gguf?t=tok',
        downloadDir,
        modelsDir,
      },
      () => {},
    ),
    {
      message:
        'model m: the source "http://host:99999/x.gguf" is not a URL; to fix: correct its entry in MODEL_SOURCES (confluence-bot-config)',
    },
  )
  await t.rejects(
    fetchModels(
      { models: ['m'], sources: 'm=http://us%zzer:pw@127.0.0.1:9/x.gguf', downloadDir, modelsDir },
      () => {},
    ),
    {
      message:
        'model m: the user or password in the source http://127.0.0.1:9/x.gguf has a malformed %-escape; to fix: write each special character as % and two hex digits',
    },
  )
})

t.test(
  'a TLS failure is one line, and so is a malformed source with a slash in its password',
  async (t) => {
    const { base } = await server(t, serveGguf)
    const { downloadDir, modelsDir } = await dirs(t)
    const tls = fetchModels(
      {
        models: ['m'],
        sources: `m=${base.replace('http:', 'https:')}/m.gguf`,
        downloadDir,
        modelsDir,
      },
      () => {},
    )
    const err = (await tls.catch((e: Error) => e)) as Error
    t.match(
      err.message,
      /^model m: download from https:\/\/127\.0\.0\.1:\d+\/m\.gguf failed \(.+\); to fix: /,
    )
    t.notMatch(err.message, /\n/, 'one line')
    const bad = fetchModels(
      {
        models: ['m'],
        sources: 'm=https://bot:Zm9v+YmFy/YmF6==@host/x.gguf',
        downloadDir,
        modelsDir,
      },
      () => {},
    )
    const refused = (await bad.catch((e: Error) => e)) as Error
    t.equal(
      refused.message,
      'model m: the source "https://host/x.gguf" is not a URL; to fix: correct its entry in MODEL_SOURCES (confluence-bot-config)',
    )
  },
)

t.test('a volume it cannot read is a failure, never taken for an empty one', async (t) => {
  const { base, requests } = await server(t, serveGguf)
  const { downloadDir, modelsDir } = await dirs(t)
  // A file where a directory should be: the check fails with ENOTDIR (tests run as root, so a
  // mode 0700 directory would not refuse them).
  await mkdir(join(modelsDir, '..'), { recursive: true })
  await writeFile(modelsDir, '')
  await t.rejects(
    fetchModels(
      {
        models: ['m'],
        sources: `m=${base}/m.gguf`,
        downloadDir,
        modelsDir: join(modelsDir, 'models'),
      },
      () => {},
    ),
    {
      message: new RegExp(
        `^cannot read Ollama's model directory ${modelsDir}/models \\(ENOTDIR.*\\); to fix: mount the model volume readable by this container \\(k8s/components/model-downloads\\)$`,
      ),
    },
  )
  t.same(requests, [], 'nothing downloaded')
})

t.test(
  'without a #sha256 the download is not called verified; a trickling server is given up',
  async (t) => {
    let trickle = false
    const { base } = await server(t, (_req, res) => {
      if (!trickle) return res.end(GGUF)
      res.writeHead(200, { 'content-length': String(GGUF.length) })
      res.write(GGUF.subarray(0, 4))
      let sent = 4
      const timer = setInterval(() => {
        if (res.destroyed) return clearInterval(timer)
        res.write(GGUF.subarray(sent, sent + 1))
        sent++
      }, 20)
      res.on('close', () => clearInterval(timer))
    })
    const { downloadDir, modelsDir } = await dirs(t)
    const said: string[] = []
    await fetchModels(
      { models: ['m'], sources: `m=${base}/m.gguf`, downloadDir, modelsDir },
      (line) => said.push(line),
    )
    t.equal(
      said.at(-1),
      'fetch-models: m downloaded (no #sha256 in its source: its content is not verified)',
    )

    trickle = true
    await t.rejects(
      fetchModels(
        { models: ['n'], sources: `n=${base}/n.gguf`, downloadDir, modelsDir, stallWindowMs: 300 },
        () => {},
      ),
      {
        message: new RegExp(
          `^model n: download from ${base}/n\\.gguf failed \\(\\d+ bytes in the last 0\\.3 s\\); to fix: check the server; it must send at least 64 KiB in any such window$`,
        ),
      },
    )
    t.same(await files(downloadDir), ['m.gguf'], 'the trickled file is not kept')
  },
)

t.test('a model Ollama could not serve is downloaded again', async (t) => {
  const { base, requests } = await server(t, serveGguf)
  const broken: Array<[string, string | undefined, number]> = [
    ['a blob missing', undefined, 1],
    ['a manifest that is no JSON', '{"config":', 2],
    ['a manifest naming nothing', '{}', 2],
    [
      'a layer without its digest',
      `{"config":{"digest":"sha256:${'1'.repeat(64)}"},"layers":[{}]}`,
      2,
    ],
  ]
  for (const [what, manifest, blobs] of broken) {
    const { downloadDir, modelsDir } = await dirs(t)
    await haveModel(modelsDir, 'chat', manifest, blobs)
    const before = requests.length
    await fetchModels(
      { models: ['chat'], sources: `chat=${base}/c.gguf`, downloadDir, modelsDir },
      () => {},
    )
    t.equal(requests.length, before + 1, `${what}: downloaded`)
    t.same(await files(downloadDir), ['chat.gguf'], `${what}: left for init-models.sh`)
  }
})
