import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, relative, resolve } from 'node:path'
import type { IConfigMap, IContainer, IPersistentVolumeClaim } from 'kubernetes-models/v1'
import t, { type Test } from 'tap'
import { creates, pulls, runInit, stubDir } from './init-script.ts'
import { container, environment, find, podOf, selects, validateObject, workload } from './kube.ts'
import { build, hasKubectl, type K8sObject, kubectlKustomize, podSpecOf } from './render.ts'

// The `airgap` component (through the `airgap` overlay: production without internet access):
// every model comes from a GGUF on the `ollama-models-import` volume and the registry is never
// asked, whatever is or is not on the volumes.

const k8s = resolve(import.meta.dirname, '../../k8s')
const objects = build(join(k8s, 'overlays/airgap'))
const ollama = workload(objects, 'ollama')
const init = ollama.spec.template.spec.initContainers?.[0] as IContainer
const env = environment(objects, init)
const config = find<K8sObject & IConfigMap>(objects, 'ConfigMap', 'confluence-bot-config')
  .data as Record<string, string>
const script = find<K8sObject & IConfigMap>(objects, 'ConfigMap', 'ollama-init').data?.[
  'init-models.sh'
] as string

t.test('the overlay renders valid objects', async (t) => {
  const errors = (await Promise.all(objects.map(validateObject))).flat()
  t.strictSame(errors, [], `${objects.length} objects`)
})

t.test("the loader: idle until scaled up, on Ollama's node, with the import volume", async (t) => {
  const loader = workload(objects, 'ollama-models-loader')
  t.equal(loader.kind, 'Deployment')
  t.equal(loader.spec.replicas, 0, 'no pod until the operator scales it up')
  t.equal(loader.metadata.namespace, 'confluence-bot')
  const c = container(loader, 'loader')
  // The same image as the Ollama server, so the overlay's images: block rewrites both alike.
  t.equal(c.image, container(ollama).image, 'the Ollama image, tag included')
  t.equal(c.imagePullPolicy, 'IfNotPresent')
  const spec = loader.spec.template.spec
  const term = spec.affinity?.podAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.[0]
  t.equal(term?.topologyKey, 'kubernetes.io/hostname')
  t.ok(selects(term?.labelSelector ?? {}, podOf(ollama).labels), 'next to the Ollama pod')
  const mount = c.volumeMounts?.find((m) => m.mountPath === '/models')
  const volume = spec.volumes?.find((v) => v.name === mount?.name)
  t.equal(volume?.persistentVolumeClaim?.claimName, 'ollama-models-import')
  t.notOk(mount?.readOnly, 'written to by kubectl cp')
  // The walkthrough's commands name it as rendered.
  const readme = readFileSync(join(k8s, 'README.md'), 'utf8')
  const step = readme.slice(readme.indexOf('5. Fill the import volume'), readme.indexOf('6. First'))
  t.match(step, 'scale deployment/ollama-models-loader --replicas=1')
  t.match(
    step,
    `get pod -l app.kubernetes.io/name=${podOf(loader).labels['app.kubernetes.io/name']}`,
  )
  t.match(step, 'scale deployment/ollama-models-loader --replicas=0')
  t.match(step, /exec "\$loader" -- sh -c 'cd \/models && cat \*\.gguf\.sha256 \| sha256sum -c'/)
  // `kubectl cp` unpacks with tar in the pod, which (as root) keeps the archive's owner, the
  // operator's uid, and needs CAP_CHOWN for it: the loader drops every capability, so each copy
  // must ask tar not to (or every file ends in "Cannot change ownership", exit 2).
  const caps = c.securityContext?.capabilities
  t.strictSame(caps?.drop, ['ALL'], 'the loader drops every capability')
  t.notOk(caps?.add?.includes('CHOWN'), 'and gets no CHOWN back')
  const copies = [...step.matchAll(/kubectl\b[^\n;]*\scp\s[^\n;]*/g)].map((m) => m[0])
  t.ok(copies.length > 0, 'step 5 copies with kubectl cp')
  for (const copy of copies) t.match(copy, / cp --no-preserve=true /, `${copy}: owner not kept`)
})

t.test('the registry is off and every model comes from a file on the import volume', async (t) => {
  t.equal(env.MODEL_REGISTRY, 'off')
  const mount = init.volumeMounts?.find((m) => m.mountPath === '/models')
  t.ok(mount?.readOnly, 'import volume mounted read-only at /models')
  const volume = ollama.spec.template.spec.volumes?.find((v) => v.name === mount?.name)
  const claim = find<K8sObject & IPersistentVolumeClaim>(
    objects,
    'PersistentVolumeClaim',
    volume?.persistentVolumeClaim?.claimName ?? '',
  )
  t.equal(claim.metadata.name, 'ollama-models-import')
  t.equal(claim.metadata.namespace, 'confluence-bot')
  t.strictSame(claim.spec?.accessModes, ['ReadWriteOnce'])
  for (const model of [config.CHAT_MODEL, config.EMBED_MODEL] as string[]) {
    t.match(
      env.MODEL_SOURCES,
      new RegExp(`(^|\\s)${model.replace('.', '\\.')}=file:/models/\\S+\\.gguf(\\s|$)`),
      `${model} from a file on /models`,
    )
  }
  for (const c of [init, container(ollama)]) {
    t.equal(c.imagePullPolicy, 'IfNotPresent', `${c.name}: images from the node or the mirror`)
  }
})

// The rendered script and environment, with /models pointing at a temp dir.
async function run(
  t: Test,
  files: string[],
  present: string[] = [],
  prepare?: (dir: string) => void,
) {
  const dir = stubDir()
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  mkdirSync(join(dir, 'models'))
  for (const file of files) writeFileSync(join(dir, 'models', file), `GGUF ${file}`)
  prepare?.(dir)
  writeFileSync(join(dir, 'init-models.sh'), script)
  const sources = (env.MODEL_SOURCES as string).replaceAll('file:/models/', `file:${dir}/models/`)
  return runInit(join(dir, 'init-models.sh'), dir, { ...env, MODEL_SOURCES: sources }, { present })
}

t.test(
  "the walkthrough's checksums: written before the copy, checked after it and by the init container",
  async (t) => {
    const readme = readFileSync(join(k8s, 'README.md'), 'utf8')
    const airgap = readme.slice(
      readme.indexOf('## Air-gapped cluster'),
      readme.indexOf('## LanceDB'),
    )
    const blocks = [...airgap.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) =>
      (m[1] as string).replace(/^ {3}/gm, ''),
    )
    const write = blocks.find((b) => b.includes('sha256sum') && !b.includes('kubectl')) ?? ''
    const check = /sh -c '([^']*sha256sum -c[^']*)'/.exec(airgap)?.[1] ?? ''
    t.ok(write && check, 'step 1 writes the checksums, step 5 checks them in the pod')
    const files = ['llama3.2.gguf', 'nomic-embed-text.gguf']
    // Step 1 verbatim on this machine, then the pod's check on the "copied" files.
    const ok = await run(t, files, [], (dir) => {
      execFileSync('sh', ['-c', write], { cwd: dir })
      t.ok(existsSync(join(dir, 'models/llama3.2.gguf.sha256')), 'llama3.2.gguf.sha256 written')
      const inPod = check.replace('cd /models', `cd ${dir}/models`)
      t.match(execFileSync('sh', ['-c', inPod], { encoding: 'utf8' }), /llama3\.2\.gguf: OK/)
    })
    t.equal(ok.status, 0, ok.stderr)
    t.match(
      ok.stdout,
      /checking \S+\/models\/llama3\.2\.gguf against/,
      'the init container checks too',
    )
    t.equal(creates(ok).length, 2)
    // A copy cut short: the pod's check says FAILED, the init container refuses it.
    const damaged = await run(t, files, [], (dir) => {
      execFileSync('sh', ['-c', write], { cwd: dir })
      writeFileSync(join(dir, 'models/llama3.2.gguf'), 'GGUF')
      const inPod = check.replace('cd /models', `cd ${dir}/models`)
      t.throws(() => execFileSync('sh', ['-c', inPod], { stdio: 'pipe' }), 'sha256sum -c fails')
    })
    t.not(damaged.status, 0)
    t.strictSame(creates(damaged), [])
    t.match(
      damaged.stderr,
      /model llama3\.2 is not on the volume; tried: file:\S+ \(sha256 [0-9a-f]{64}, expected/,
    )
  },
)

t.test('the init script never calls the registry', async (t) => {
  const fresh = await run(t, ['llama3.2.gguf', 'nomic-embed-text.gguf'])
  t.equal(fresh.status, 0, fresh.stderr)
  t.strictSame(pulls(fresh), [], 'files present: created, no pull')
  t.strictSame(
    creates(fresh).map((c) => c.split(' ')[1]),
    [config.CHAT_MODEL, config.EMBED_MODEL],
  )

  const kept = await run(t, [], [config.CHAT_MODEL, config.EMBED_MODEL] as string[])
  t.equal(kept.status, 0, 'models on the volume: starts without the files')
  t.strictSame([...pulls(kept), ...creates(kept)], [])

  const empty = await run(t, ['nomic-embed-text.gguf'])
  t.not(empty.status, 0, 'a missing file stops the pod')
  t.strictSame(pulls(empty), [], 'and never falls back to the registry')
  t.match(
    empty.stderr.trim().split('\n').at(-1),
    /^init-models: model llama3\.2 is not on the volume; tried: file:\S+\/models\/llama3\.2\.gguf \(no such file\); to fix: copy the GGUF to /,
  )
})

t.test("the README's mirror step points all four images at the private registry", async (t) => {
  const readme = readFileSync(join(k8s, 'README.md'), 'utf8')
  const step = readme.slice(readme.indexOf('Point the overlay at the mirror'))
  const block = /```yaml\n([\s\S]*?)```/.exec(step)?.[1] ?? ''
  t.match(block, /^\s*images:/, 'the step has an images: block')
  const dir = mkdtempSync(join(tmpdir(), 'airgap-mirror-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const indented = block.replace(/^ {3}/gm, '')
  writeFileSync(
    join(dir, 'kustomization.yaml'),
    // Relative: kustomize refuses an absolute root.
    `resources:\n  - ${relative(dir, join(k8s, 'overlays/airgap'))}\n${indented}`,
  )
  const imagesOf = (list: K8sObject[]) =>
    list.flatMap((o) => {
      const pod = podSpecOf(o)
      const containers = [
        ...((pod?.initContainers ?? []) as unknown as IContainer[]),
        ...((pod?.containers ?? []) as unknown as IContainer[]),
      ]
      return containers.map((c) => `${o.kind}/${o.metadata.name} ${c.image as string}`)
    })
  const named = imagesOf(build(dir))
  t.ok(
    named.some((i) => i.startsWith('Deployment/ollama-models-loader ')),
    'the loader is among them',
  )
  // kubectl's own kustomize, where installed, rewrites the same images.
  if (hasKubectl) {
    const theirs = await kubectlKustomize(dir)
    t.strictSame(imagesOf(theirs).sort(), [...named].sort(), 'kubectl kustomize agrees')
  }
  const images = named.map((i) => i.split(' ')[1] as string)
  t.equal(new Set(images.map((i) => i.split(':')[0])).size, 4, 'four images')
  for (const image of named) {
    t.match(image, / registry\.internal\/\S+:\S+$/, `${image}: from the mirror`)
    t.notMatch(image, / (docker\.io\/|ollama\/|redis)/, `${image}: nothing from Docker Hub`)
  }
  // ... and the mirroring step copies exactly the third-party tags the manifests run.
  const mirror = /for image in ([^;]+); do/.exec(readme)?.[1]?.split(' ') ?? []
  const mirrored = images
    .filter((i) => i.startsWith('registry.internal/mirror/'))
    .map((i) => i.slice('registry.internal/mirror/'.length))
  t.strictSame([...new Set(mirrored)].sort(), [...mirror].sort(), 'skopeo copies these tags')
})

t.test(
  "the docs' image builds are for linux/amd64, the only platform the images run on",
  async (t) => {
    const readme = readFileSync(join(k8s, 'README.md'), 'utf8')
    // Each build command with its continuation lines.
    const builds = [...readme.matchAll(/docker (?:buildx )?build(?= )(?:[^\n]*\\\n)*[^\n]*/g)].map(
      (m) => m[0],
    )
    t.ok(builds.length >= 3, `the walkthroughs build images (${builds.length} commands)`)
    for (const command of builds) {
      t.match(command, /--platform linux\/amd64(\s|$)/, command)
    }
    const airgap = readme.slice(readme.indexOf('## Air-gapped cluster'))
    t.match(
      airgap,
      /docker build --platform linux\/amd64 --target "\$service"/,
      'the air-gapped build',
    )
  },
)
