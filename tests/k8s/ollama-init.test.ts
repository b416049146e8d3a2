import { createHash } from 'node:crypto'
import { readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join, resolve } from 'node:path'
import type { IConfigMap, IContainer } from 'kubernetes-models/v1'
import t, { type Test } from 'tap'
import { creates, downloadsLeft, pulls, runInit, stockTools, stubDir } from './init-script.ts'
import { container, environment, find, workload } from './kube.ts'
import { build, type K8sObject } from './render.ts'

// The Ollama init container's script: models on the volume are kept without any network call;
// a missing one comes from its source in MODEL_SOURCES (registry, a GGUF file, an http(s) URL);
// when nothing provides it, one line says which model, what was tried and what to do.

const k8s = resolve(import.meta.dirname, '../../k8s')
const script = join(k8s, 'base/ollama/init-models.sh')
const models = { CHAT_MODEL: 'llama3.2', EMBED_MODEL: 'nomic-embed-text' }

// A stub directory per test, removed at its end.
function setup(t: Test): string {
  const dir = stubDir()
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** The single line the script writes when it gives up (after whatever Ollama printed). */
function failureLine(t: Test, stderr: string): string {
  const lines = stderr.trim().split('\n')
  t.equal(lines.filter((l) => l.startsWith('init-models:')).length, 1, `one line: ${stderr}`)
  return lines.at(-1) as string
}

t.test('models already on the volume: no pull, no create, server stopped', async (t) => {
  const dir = setup(t)
  const run = await runInit(
    script,
    dir,
    { ...models, MODEL_SOURCES: 'llama3.2=https://nowhere.invalid/x.gguf' },
    { present: ['llama3.2', 'nomic-embed-text'] },
  )
  t.equal(run.status, 0)
  t.ok(run.calls.includes('serve'), 'starts a temporary server')
  t.strictSame(pulls(run), [])
  t.strictSame(creates(run), [])
  t.strictSame(
    run.calls.filter((c) => c.startsWith('show ')),
    ['show llama3.2', 'show nomic-embed-text'],
  )
  t.equal(run.calls.at(-1), 'stopped', 'stops the server when done')
})

t.test('registry source (the default): pulled', async (t) => {
  const dir = setup(t)
  const run = await runInit(script, dir, { ...models, MODEL_SOURCES: 'nomic-embed-text=registry' })
  t.equal(run.status, 0)
  t.strictSame(pulls(run), ['pull llama3.2', 'pull nomic-embed-text'])
  t.equal(run.calls.at(-1), 'stopped')

  const failing = await runInit(script, setup(t), models, { pullFails: ['nomic-embed-text'] })
  t.not(failing.status, 0, 'a pull that fails stops the pod')
  t.equal(
    failureLine(t, failing.stderr),
    'init-models: model nomic-embed-text is not on the volume; tried: registry (ollama pull failed: is the registry reachable?); to fix: allow egress to the registry, or give nomic-embed-text a file: or http(s) source in MODEL_SOURCES (confluence-bot-config)',
  )
  t.equal(failing.calls.at(-1), 'stopped', 'and still stops the server')
})

t.test('MODEL_REGISTRY=off: a registry source fails without a pull', async (t) => {
  const dir = setup(t)
  const run = await runInit(
    script,
    dir,
    { ...models, MODEL_REGISTRY: 'off' },
    { present: ['nomic-embed-text'] },
  )
  t.not(run.status, 0)
  t.strictSame(pulls(run), [])
  t.equal(
    failureLine(t, run.stderr),
    'init-models: model llama3.2 is not on the volume; tried: registry (refused: MODEL_REGISTRY=off); to fix: set llama3.2=file:/models/<file>.gguf in MODEL_SOURCES (confluence-bot-config) and copy the GGUF to the models-import volume (k8s/README.md, Air-gapped cluster)',
  )
})

t.test('file source: created from the GGUF, with the optional Modelfile sidecar', async (t) => {
  const dir = setup(t)
  writeFileSync(join(dir, 'chat.gguf'), 'GGUF chat')
  writeFileSync(join(dir, 'embed.gguf'), 'GGUF embed')
  writeFileSync(
    join(dir, 'chat.Modelfile'),
    'FROM something-else\nTEMPLATE """{{ .Prompt }}"""\nPARAMETER num_ctx 8192\n',
  )
  const run = await runInit(script, dir, {
    ...models,
    MODEL_REGISTRY: 'off',
    MODEL_SOURCES: `llama3.2=file:${dir}/chat.gguf\nnomic-embed-text=file:${dir}/embed.gguf`,
  })
  t.equal(run.status, 0, run.stderr)
  t.strictSame(pulls(run), [])
  t.strictSame(
    creates(run).map((c) => c.split(' ').slice(0, 3).join(' ')),
    ['create llama3.2 -f', 'create nomic-embed-text -f'],
  )
  t.equal(
    run.modelfiles['llama3.2'],
    `FROM ${dir}/chat.gguf\nTEMPLATE """{{ .Prompt }}"""\nPARAMETER num_ctx 8192\n`,
    'the sidecar adds its lines; its FROM is replaced by the GGUF',
  )
  t.equal(run.modelfiles['nomic-embed-text'], `FROM ${dir}/embed.gguf\n`)
  t.equal(run.calls.at(-1), 'stopped')
})

t.test('file source missing or not a GGUF: the failure line', async (t) => {
  const dir = setup(t)
  const missing = await runInit(
    script,
    dir,
    { ...models, MODEL_SOURCES: `llama3.2=file:${dir}/nope.gguf` },
    { present: ['nomic-embed-text'] },
  )
  t.not(missing.status, 0)
  t.strictSame(pulls(missing), [], 'no fallback to the registry')
  t.strictSame(creates(missing), [])
  t.equal(
    failureLine(t, missing.stderr),
    `init-models: model llama3.2 is not on the volume; tried: file:${dir}/nope.gguf (no such file); to fix: copy the GGUF to ${dir}/nope.gguf (k8s/README.md, Air-gapped cluster) or change its entry in MODEL_SOURCES (confluence-bot-config)`,
  )
  t.equal(missing.calls.at(-1), 'stopped')

  writeFileSync(join(dir, 'bad.gguf'), 'not a gguf')
  const bad = await runInit(
    script,
    setup(t),
    { ...models, MODEL_SOURCES: `llama3.2=file:${dir}/bad.gguf` },
    { present: ['nomic-embed-text'], createFails: ['llama3.2'] },
  )
  t.not(bad.status, 0)
  t.match(
    bad.stderr.trim().split('\n').at(-1),
    `init-models: model llama3.2: ollama create from ${dir}/bad.gguf failed (is it a GGUF file?)`,
  )
})

t.test('unknown source: the failure line', async (t) => {
  const run = await runInit(
    script,
    setup(t),
    { ...models, MODEL_SOURCES: 'llama3.2=s3://bucket/x.gguf' },
    { present: ['nomic-embed-text'] },
  )
  t.not(run.status, 0)
  t.equal(
    failureLine(t, run.stderr),
    'init-models: model llama3.2 has an unknown source "s3://bucket/x.gguf" in MODEL_SOURCES; to fix: use registry, file:/path.gguf or an http(s) URL',
  )
})

t.test('URL source: downloaded, checked against its sha256, created, cleaned up', async (t) => {
  const body = Buffer.from('GGUF served inside the cluster')
  const sha = createHash('sha256').update(body).digest('hex')
  const server = createServer((req, res) => {
    if (req.url === '/models/chat.gguf') res.end(body)
    else res.writeHead(404).end()
  })
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok))
  t.teardown(() => server.close())
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/models`
  // curl must reach the test's server directly, whatever proxy the machine sets.
  const env = { ...models, no_proxy: '127.0.0.1', NO_PROXY: '127.0.0.1' }

  const dir = setup(t)
  const run = await runInit(
    script,
    dir,
    { ...env, MODEL_REGISTRY: 'off', MODEL_SOURCES: `llama3.2=${base}/chat.gguf#sha256=${sha}` },
    { present: ['nomic-embed-text'] },
  )
  t.equal(run.status, 0, run.stderr)
  t.strictSame(pulls(run), [])
  t.strictSame(creates(run).length, 1)
  t.equal(run.modelfiles['llama3.2'], `FROM ${dir}/downloads/llama3.2.gguf\n`)
  t.strictSame(downloadsLeft(run), [], 'the download is removed once the model exists')

  const wrong = await runInit(
    script,
    setup(t),
    { ...env, MODEL_SOURCES: `llama3.2=${base}/chat.gguf#sha256=${'0'.repeat(64)}` },
    { present: ['nomic-embed-text'] },
  )
  t.not(wrong.status, 0)
  t.strictSame(creates(wrong), [], 'a file with the wrong digest is never created')
  t.strictSame(downloadsLeft(wrong), [], 'and is deleted')
  t.equal(
    failureLine(t, wrong.stderr),
    `init-models: model llama3.2 is not on the volume; tried: ${base}/chat.gguf (sha256 ${sha}, expected ${'0'.repeat(64)}); to fix: check that the URL is served inside the cluster and its sha256, or use a file: source in MODEL_SOURCES (confluence-bot-config)`,
  )

  const gone = await runInit(
    script,
    setup(t),
    { ...env, MODEL_SOURCES: `llama3.2=${base}/missing.gguf` },
    { present: ['nomic-embed-text'] },
  )
  t.not(gone.status, 0)
  t.strictSame(pulls(gone), [])
  t.match(
    gone.stderr.trim().split('\n').at(-1),
    `init-models: model llama3.2 is not on the volume; tried: ${base}/missing.gguf (download failed)`,
  )
  t.strictSame(downloadsLeft(gone), [], 'no partial file is left behind')

  const broken = await runInit(
    script,
    setup(t),
    { ...env, MODEL_SOURCES: `llama3.2=${base}/chat.gguf` },
    { present: ['nomic-embed-text'], createFails: ['llama3.2'] },
  )
  t.not(broken.status, 0)
  t.strictSame(downloadsLeft(broken), [], 'a download Ollama refuses is deleted too')
  t.match(broken.stderr, 'ollama create from')
})

t.test('URL source in an image without curl or wget: the failure line says so', async (t) => {
  const dir = setup(t)
  const run = await runInit(
    script,
    dir,
    { ...models, PATH: stockTools(dir), MODEL_SOURCES: 'llama3.2=http://models.internal/x.gguf' },
    { present: ['nomic-embed-text'] },
  )
  t.not(run.status, 0)
  t.strictSame(creates(run), [])
  t.equal(
    failureLine(t, run.stderr),
    'init-models: model llama3.2 is not on the volume; tried: http://models.internal/x.gguf (no curl or wget in this image); to fix: add the model-downloads component to your overlay, which downloads it first (k8s/README.md, Where the models come from), or use a file: source in MODEL_SOURCES (confluence-bot-config)',
  )
  t.equal(run.calls.at(-1), 'stopped')
})

t.test('the rendered Deployment mounts the script and runs it', async (t) => {
  for (const target of ['base', 'overlays/dev', 'overlays/production']) {
    const objects = build(join(k8s, target))
    const w = workload(objects, 'ollama')
    const init = w.spec.template.spec.initContainers?.[0] as IContainer
    t.equal(init.image, container(w).image, `${target}: same image as the server`)
    t.strictSame(init.command, ['/bin/sh', '/opt/init/init-models.sh'], `${target}: runs it`)
    t.equal(init.args, undefined)
    const mount = init.volumeMounts?.find((m) => m.mountPath === '/opt/init')
    t.ok(mount?.readOnly, `${target}: script mounted read-only`)
    t.ok(
      init.volumeMounts?.some((m) => m.mountPath === '/root/.ollama'),
      `${target}: onto the model volume`,
    )
    const volume = w.spec.template.spec.volumes?.find((v) => v.name === mount?.name)
    const configMap = find<K8sObject & IConfigMap>(
      objects,
      'ConfigMap',
      volume?.configMap?.name ?? '',
    )
    t.equal(
      configMap.data?.['init-models.sh'],
      readFileSync(script, 'utf8'),
      `${target}: the ConfigMap carries the script file`,
    )
    const env = environment(objects, init)
    const config = find(objects, 'ConfigMap', 'confluence-bot-config').data as Record<
      string,
      string
    >
    for (const key of ['CHAT_MODEL', 'EMBED_MODEL', 'MODEL_SOURCES', 'MODEL_REGISTRY']) {
      t.equal(env[key], config[key], `${target}: ${key} from the ConfigMap`)
    }

    // The shipped text, run with the rendered environment: fresh volume → both pulled.
    const dir = setup(t)
    const shipped = join(dir, 'init-models.sh')
    writeFileSync(shipped, configMap.data?.['init-models.sh'] ?? '')
    const run = await runInit(shipped, dir, env)
    t.equal(run.status, 0, run.stderr)
    t.strictSame(pulls(run), [`pull ${config.CHAT_MODEL}`, `pull ${config.EMBED_MODEL}`])
  }
})
