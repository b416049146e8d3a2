import { createHash } from 'node:crypto'
import { rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join, resolve } from 'node:path'
import t, { type Test } from 'tap'
import { creates, downloadsLeft, pulls, runInit, stubDir } from './init-script.ts'

// What an operator writes into the ConfigMap, read the way they mean it by the Ollama init
// container's script (k8s/base/ollama/init-models.sh), run against the recording `ollama` stand-in:
// digests in either case, yes/no settings in their usual spellings, file paths with spaces,
// Modelfile sidecars whose templates mention "from", and checksums next to copied GGUFs. Anything
// the script cannot read stops the pod with one line, before any download.

const script = resolve(import.meta.dirname, '../../k8s/base/ollama/init-models.sh')
const models = { CHAT_MODEL: 'llama3.2', EMBED_MODEL: 'nomic-embed-text' }
const embedPresent = { present: ['nomic-embed-text'] }

function setup(t: Test): string {
  const dir = stubDir()
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** The script's own lines on stderr; a refusal is exactly one, and the last. */
function refusal(t: Test, stderr: string): string {
  const own = stderr
    .trim()
    .split('\n')
    .filter((l) => l.startsWith('init-models:'))
  t.equal(own.length, 1, `one line: ${stderr}`)
  return own[0] as string
}

t.test(
  'URL digests: either case, #SHA256= too; empty or malformed refused before downloading',
  async (t) => {
    const body = Buffer.from('GGUF served inside the cluster')
    const sha = createHash('sha256').update(body).digest('hex')
    let requests = 0
    const server = createServer((_req, res) => {
      requests++
      res.end(body)
    })
    await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok))
    t.teardown(() => server.close())
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/chat.gguf`
    const env = { ...models, MODEL_REGISTRY: 'off', no_proxy: '127.0.0.1', NO_PROXY: '127.0.0.1' }
    const withSource = (fragment: string) => ({
      ...env,
      MODEL_SOURCES: `llama3.2=${url}${fragment}`,
    })

    for (const fragment of [
      `#sha256=${sha.toUpperCase()}`,
      `#SHA256=${sha}`,
      `#Sha256=${sha.toUpperCase()}`,
    ]) {
      const run = await runInit(script, setup(t), withSource(fragment), embedPresent)
      t.equal(run.status, 0, `${fragment}: ${run.stderr}`)
      t.equal(creates(run).length, 1, `${fragment}: created`)
      t.strictSame(downloadsLeft(run), [])
    }

    // The upper-case key is checked, not skipped: a wrong digest behind it is refused.
    const wrong = await runInit(
      script,
      setup(t),
      withSource(`#SHA256=${'A'.repeat(64)}`),
      embedPresent,
    )
    t.not(wrong.status, 0)
    t.strictSame(creates(wrong), [], '#SHA256= with the wrong digest: nothing created')
    t.equal(
      refusal(t, wrong.stderr),
      `init-models: model llama3.2 is not on the volume; tried: ${url} (sha256 ${sha}, expected ${'a'.repeat(64)}); to fix: check that the URL is served inside the cluster and its sha256, or use a file: source in MODEL_SOURCES (confluence-bot-config)`,
    )

    requests = 0
    for (const [fragment, value] of [
      ['#sha256=', ''],
      [`#sha256=${sha.slice(1)}`, sha.slice(1)],
      [`#sha256=${sha}0`, `${sha}0`],
      [`#sha256=${sha.slice(1)}g`, `${sha.slice(1)}g`],
    ] as const) {
      const run = await runInit(script, setup(t), withSource(fragment), embedPresent)
      t.not(run.status, 0, `${fragment}: refused`)
      t.strictSame(creates(run), [])
      t.equal(
        refusal(t, run.stderr),
        `init-models: model llama3.2 has a malformed sha256 "${value}" in MODEL_SOURCES (64 hex digits expected); to fix: put the GGUF's sha256sum after #sha256= in its entry (confluence-bot-config)`,
      )
    }
    for (const fragment of ['#', '#md5=abc', '#sha256']) {
      const run = await runInit(script, setup(t), withSource(fragment), embedPresent)
      t.not(run.status, 0, `${fragment}: refused`)
      t.equal(
        refusal(t, run.stderr),
        `init-models: model llama3.2 has "${fragment}" after its URL in MODEL_SOURCES; to fix: end the URL with #sha256=HEX (the GGUF's sha256sum) or nothing`,
      )
    }
    t.equal(requests, 0, 'no refused source was downloaded')
  },
)

t.test(
  'MODEL_REGISTRY: off/false/no/0 and on/true/yes/1 in any case; anything else refused',
  async (t) => {
    for (const value of ['off', 'OFF', 'Off', 'false', 'FALSE', '0', 'no', 'No']) {
      const run = await runInit(
        script,
        setup(t),
        { ...models, MODEL_REGISTRY: value },
        embedPresent,
      )
      t.not(run.status, 0, `${value}: a registry source fails`)
      t.strictSame(pulls(run), [], `${value}: no pull`)
      t.equal(
        refusal(t, run.stderr),
        `init-models: model llama3.2 is not on the volume; tried: registry (refused: MODEL_REGISTRY=${value}); to fix: set llama3.2=file:/models/<file>.gguf in MODEL_SOURCES (confluence-bot-config) and copy the GGUF to the models-import volume (k8s/README.md, Air-gapped cluster)`,
      )
    }
    for (const value of ['on', 'ON', 'true', 'True', '1', 'yes', 'YES', '']) {
      const run = await runInit(
        script,
        setup(t),
        { ...models, MODEL_REGISTRY: value },
        embedPresent,
      )
      t.equal(run.status, 0, `"${value}": ${run.stderr}`)
      t.strictSame(pulls(run), ['pull llama3.2'], `"${value}": pulled`)
    }
    for (const value of ['of', 'disabled', 'off ', '2']) {
      const run = await runInit(
        script,
        setup(t),
        { ...models, MODEL_REGISTRY: value },
        embedPresent,
      )
      t.not(run.status, 0, `"${value}": refused`)
      t.strictSame(run.calls, [], `"${value}": refused before Ollama is started`)
      t.equal(
        refusal(t, run.stderr),
        `init-models: MODEL_REGISTRY="${value}" is neither on nor off; to fix: set it to off (or false, no, 0) or on (or true, yes, 1) in confluence-bot-config`,
      )
    }
  },
)

t.test('file paths with spaces, on one line or one entry per line', async (t) => {
  const dir = setup(t)
  writeFileSync(join(dir, 'Llama 3.2  Q4.gguf'), 'GGUF chat')
  writeFileSync(join(dir, 'nomic embed.gguf'), 'GGUF embed')
  const chat = `${dir}/Llama 3.2  Q4.gguf`
  const embed = `${dir}/nomic embed.gguf`
  for (const sources of [
    `llama3.2=file:${chat} nomic-embed-text=file:${embed}`,
    `\n  llama3.2=file:${chat}\n\tnomic-embed-text=file:${embed}  \n`,
    `nomic-embed-text=file:${embed}\nother=registry llama3.2=file:${chat}`,
  ]) {
    const run = await runInit(script, dir, {
      ...models,
      MODEL_REGISTRY: 'off',
      MODEL_SOURCES: sources,
    })
    t.equal(run.status, 0, `${JSON.stringify(sources)}: ${run.stderr}`)
    t.equal(run.modelfiles['llama3.2'], `FROM ${chat}\n`, 'the whole path, spaces kept')
    t.equal(run.modelfiles['nomic-embed-text'], `FROM ${embed}\n`)
    writeFileSync(join(dir, 'calls'), '')
  }
  const missing = await runInit(
    script,
    dir,
    { ...models, MODEL_SOURCES: `llama3.2=file:${dir}/no such.gguf` },
    embedPresent,
  )
  t.match(refusal(t, missing.stderr), `tried: file:${dir}/no such.gguf (no such file)`)
})

t.test(
  'the Modelfile sidecar loses its FROM instruction, never a line of a """ block',
  async (t) => {
    const dir = setup(t)
    writeFileSync(join(dir, 'chat.gguf'), 'GGUF chat')
    const kept = [
      '# Modelfile generated by "ollama show"',
      'TEMPLATE """{{ if .System }}{{ .System }}',
      'from the context below, answer:',
      'FROM {{ .Prompt }}',
      '  from here on',
      '{{ end }}"""',
      'PARAMETER stop "<|eot_id|>"',
      'SYSTEM """',
      'From now on, cite the pages."""',
      'TEMPLATE """one line"""',
      'LICENSE """',
      'FROM THE AUTHORS',
      '"""',
    ]
    writeFileSync(
      join(dir, 'chat.Modelfile'),
      [
        'FROM /root/.ollama/models/blobs/sha256-abc',
        ...kept.slice(0, 7),
        '  from other-model',
        ...kept.slice(7),
        'from\tthird',
      ].join('\n'),
    )
    const run = await runInit(
      script,
      dir,
      { ...models, MODEL_SOURCES: `llama3.2=file:${dir}/chat.gguf` },
      embedPresent,
    )
    t.equal(run.status, 0, run.stderr)
    t.equal(
      run.modelfiles['llama3.2'],
      [`FROM ${dir}/chat.gguf`, ...kept, ''].join('\n'),
      'top-level FROM lines dropped (any case, indented, last line without newline); block lines kept',
    )
  },
)

t.test(
  'a NAME.gguf.sha256 next to a copied GGUF is checked before the model is created',
  async (t) => {
    const dir = setup(t)
    const gguf = join(dir, 'chat.gguf')
    writeFileSync(gguf, 'GGUF chat, copied with kubectl cp')
    const sha = createHash('sha256').update('GGUF chat, copied with kubectl cp').digest('hex')
    const env = { ...models, MODEL_REGISTRY: 'off', MODEL_SOURCES: `llama3.2=file:${gguf}` }

    for (const written of [`${sha}  chat.gguf\n`, `${sha.toUpperCase()} *chat.gguf`, `${sha}\n`]) {
      writeFileSync(`${gguf}.sha256`, written)
      const run = await runInit(script, dir, env, embedPresent)
      t.equal(run.status, 0, `${JSON.stringify(written)}: ${run.stderr}`)
      t.equal(creates(run).length, 1, 'created')
      writeFileSync(join(dir, 'calls'), '')
    }

    writeFileSync(`${gguf}.sha256`, `${'0'.repeat(64)}  chat.gguf\n`)
    const damaged = await runInit(script, dir, env, embedPresent)
    t.not(damaged.status, 0)
    t.strictSame(creates(damaged), [], 'a damaged copy is never created')
    t.equal(
      refusal(t, damaged.stderr),
      `init-models: model llama3.2 is not on the volume; tried: file:${gguf} (sha256 ${sha}, expected ${'0'.repeat(64)} from ${gguf}.sha256); to fix: copy the GGUF again (the copy is damaged or incomplete; k8s/README.md, Air-gapped cluster)`,
    )
    writeFileSync(join(dir, 'calls'), '')

    for (const written of ['', 'SHA256 (chat.gguf) = abc\n', `${sha.slice(2)}  chat.gguf\n`]) {
      writeFileSync(`${gguf}.sha256`, written)
      const run = await runInit(script, dir, env, embedPresent)
      t.not(run.status, 0, `${JSON.stringify(written)}: refused`)
      t.strictSame(creates(run), [])
      t.equal(
        refusal(t, run.stderr),
        `init-models: model llama3.2: ${gguf}.sha256 holds no sha256 (64 hex digits); to fix: write it with \`sha256sum chat.gguf > chat.gguf.sha256\` next to the GGUF, or remove it`,
      )
      writeFileSync(join(dir, 'calls'), '')
    }
  },
)
