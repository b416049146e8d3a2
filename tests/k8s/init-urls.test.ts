import { createHash } from 'node:crypto'
import { rmSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join, resolve } from 'node:path'
import t, { type Test } from 'tap'
import { creates, runInit, stubDir } from './init-script.ts'

// init-models.sh with URL sources as operators write them: credentials or tokens in the URL never
// reach the pod's log (kubectl logs is readable by more people than the ConfigMap's Secret-like
// values deserve), and a scheme in capitals is still a URL.

const script = resolve(import.meta.dirname, '../../k8s/base/ollama/init-models.sh')
const models = { CHAT_MODEL: 'llama3.2', EMBED_MODEL: 'nomic-embed-text' }
const body = Buffer.from('GGUF served inside the cluster')
const sha = createHash('sha256').update(body).digest('hex')

async function serve(t: Test) {
  const asked: Array<string | undefined> = []
  const server = createServer((req, res) => {
    asked.push(req.headers.authorization)
    if (req.url?.startsWith('/models/chat.gguf')) res.end(body)
    else res.writeHead(404).end()
  })
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok))
  t.teardown(() => server.close())
  return { host: `127.0.0.1:${(server.address() as AddressInfo).port}`, asked }
}

function setup(t: Test): string {
  const dir = stubDir()
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

// curl must reach the test's server directly, whatever proxy the machine sets.
const direct = { no_proxy: '127.0.0.1', NO_PROXY: '127.0.0.1' }

t.test('user, password and query of a URL source never reach the log', async (t) => {
  const { host, asked } = await serve(t)
  const secret = 's3cret-pass'
  const token = 'tok-0123456789'
  const ok = await runInit(
    script,
    setup(t),
    {
      ...models,
      ...direct,
      MODEL_SOURCES: `llama3.2=http://mirror:${secret}@${host}/models/chat.gguf?token=${token}#sha256=${sha}`,
    },
    { present: ['nomic-embed-text'] },
  )
  t.equal(ok.status, 0, ok.stderr)
  t.equal(creates(ok).length, 1)
  t.equal(
    asked[0],
    `Basic ${Buffer.from(`mirror:${secret}`).toString('base64')}`,
    'sent to the server',
  )
  t.match(ok.stdout, `init-models: llama3.2 comes from http://${host}/models/chat.gguf\n`)

  const failed = await runInit(
    script,
    setup(t),
    {
      ...models,
      ...direct,
      MODEL_SOURCES: `llama3.2=http://mirror:${secret}@${host}/gone.gguf?token=${token}`,
    },
    { present: ['nomic-embed-text'] },
  )
  t.not(failed.status, 0)
  t.match(failed.stderr, `tried: http://${host}/gone.gguf (download failed)`)

  const unknown = await runInit(
    script,
    setup(t),
    {
      ...models,
      MODEL_SOURCES: `llama3.2=s3://AKIAKEY:${secret}@bucket/x.gguf?X-Amz-Signature=${token}`,
    },
    { present: ['nomic-embed-text'] },
  )
  t.not(unknown.status, 0)
  t.match(unknown.stderr, 'has an unknown source "s3://bucket/x.gguf" in MODEL_SOURCES')

  // A password with an unescaped "/" (a base64 token): the URL is malformed, the secret hidden.
  const slashed = await runInit(
    script,
    setup(t),
    { ...models, ...direct, MODEL_SOURCES: `llama3.2=http://bot:${secret}/x==@${host}/gone.gguf` },
    { present: ['nomic-embed-text'] },
  )
  t.not(slashed.status, 0)

  for (const run of [ok, failed, unknown, slashed]) {
    t.notMatch(run.stdout + run.stderr, secret, 'no password')
    t.notMatch(run.stdout + run.stderr, token, 'no token')
    t.notMatch(run.stdout + run.stderr, 'mirror:', 'no user')
  }
})

t.test('a scheme in capitals is a URL source', async (t) => {
  const { host } = await serve(t)
  const dir = setup(t)
  const run = await runInit(
    script,
    dir,
    {
      ...models,
      ...direct,
      MODEL_SOURCES: `llama3.2=HTTP://${host}/models/chat.gguf#SHA256=${sha}`,
    },
    { present: ['nomic-embed-text'] },
  )
  t.equal(run.status, 0, run.stderr)
  t.equal(run.modelfiles['llama3.2'], `FROM ${join(dir, 'downloads', 'llama3.2.gguf')}\n`)
})
