import { createHash, randomBytes } from 'node:crypto'
import { readFileSync, rmSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join, resolve } from 'node:path'
import type { INetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1'
import type { IContainer } from 'kubernetes-models/v1'
import t, { type Test } from 'tap'
import { runScript } from '../helpers/process.ts'
import { creates, downloadsLeft, pulls, runInit, stockTools, stubDir } from './init-script.ts'
import {
  container,
  egressAllowed,
  environment,
  quantity,
  validateObject,
  workload,
} from './kube.ts'
import { build, hasKubectl, type K8sObject, kubectlKustomize, overlayOnTop } from './render.ts'

// The `model-downloads` component: models served over http(s) inside the cluster reach an Ollama
// pod whose image has no curl or wget. Rendered the way k8s/README.md says to use it (added to the
// overlay that sets the images), and run end to end: the download container, then init-models.sh
// with only the stock image's tools.

const k8s = resolve(import.meta.dirname, '../../k8s')
const script = join(k8s, 'base/ollama/init-models.sh')

/**
 * The overlay `name` with the component added on top (as an overlay building on it would); with
 * kubectl installed, `kubectl kustomize` must give the Ollama pod the same init containers.
 */
async function withComponent(t: Test, name: string): Promise<K8sObject[]> {
  const dir = overlayOnTop(t, name, ['model-downloads'])
  const objects = build(dir)
  if (hasKubectl) {
    const theirs = await kubectlKustomize(dir)
    const inits = (o: K8sObject[]) => workload(o, 'ollama').spec.template.spec.initContainers
    t.strictSame(inits(objects), inits(theirs), 'kubectl kustomize agrees')
  }
  return objects
}

const policies = (objects: K8sObject[]) =>
  objects.filter((o) => o.kind === 'NetworkPolicy') as unknown as INetworkPolicy[]
const OLLAMA = { 'app.kubernetes.io/name': 'ollama', 'app.kubernetes.io/component': 'inference' }
const MODEL_SERVER = {
  pod: { app: 'model-server' },
  namespace: { 'kubernetes.io/metadata.name': 'tools' },
}

for (const overlay of ['production', 'airgap']) {
  t.test(`${overlay} with the component: a download container before pull-models`, async (t) => {
    const objects = await withComponent(t, overlay)
    t.strictSame((await Promise.all(objects.map(validateObject))).flat(), [])
    const ollama = workload(objects, 'ollama')
    const inits = ollama.spec.template.spec.initContainers as IContainer[]
    t.strictSame(
      inits.map((c) => c.name),
      ['fetch-models', 'pull-models'],
    )
    const [fetch, pull] = inits as [IContainer, IContainer]
    t.equal(fetch.image, container(workload(objects, 'worker')).image, "the worker's image")
    t.strictSame(fetch.command, ['node', 'dist/fetch-models.js'])
    t.equal(fetch.securityContext?.runAsNonRoot, true)
    t.equal(fetch.securityContext?.readOnlyRootFilesystem, true)
    const models = fetch.volumeMounts?.find((m) => m.name === 'models')
    t.equal(models?.readOnly, true, 'the model volume is only read, to skip models on it')
    // /root is mode 0700 in the worker image: its uid 1000 could not see a volume below it, and
    // every start would download the models again (review 8, D1).
    t.equal(fetch.securityContext?.runAsUser, 1000)
    t.notMatch(
      models?.mountPath,
      /^\/root(\/|$)/,
      'the volume is mounted where uid 1000 can reach it',
    )
    t.equal(
      ollama.spec.template.spec.nodeSelector?.['kubernetes.io/arch'],
      'amd64',
      'the worker image is amd64 only, so the pod is too',
    )
    const fetchEnv = environment(objects, fetch)
    const pullEnv = environment(objects, pull)
    t.equal(fetchEnv.MODEL_DOWNLOAD_DIR, pullEnv.MODEL_DOWNLOAD_DIR, 'one download directory')
    t.equal(fetchEnv.OLLAMA_MODELS, `${models?.mountPath}/models`)
    t.equal(fetchEnv.MODEL_SOURCES, pullEnv.MODEL_SOURCES)
    for (const c of [fetch, pull]) {
      const mount = c.volumeMounts?.find((m) => m.mountPath === fetchEnv.MODEL_DOWNLOAD_DIR)
      t.equal(mount?.name, 'model-downloads', `${c.name} mounts the downloads`)
    }
    const volume = ollama.spec.template.spec.volumes?.find((v) => v.name === 'model-downloads')
    const scratch = quantity(volume?.emptyDir?.sizeLimit)
    t.ok(scratch > 0, 'a scratch volume with a size limit')
    for (const bound of ['requests', 'limits'] as const) {
      t.ok(
        quantity(fetch.resources?.[bound]?.['ephemeral-storage']) >= scratch,
        `the download container's disk ${bound} cover the scratch volume`,
      )
    }

    const all = policies(objects)
    t.ok(egressAllowed(all, OLLAMA, { ...MODEL_SERVER, port: 80 }), 'a model server in the cluster')
    t.notOk(egressAllowed(all, OLLAMA, { ip: '10.0.0.9', port: 80 }), 'no outside address on 80')
    t.notOk(egressAllowed(all, OLLAMA, { ip: '169.254.169.254', port: 80 }), 'no metadata')
    t.equal(
      egressAllowed(all, OLLAMA, { ip: '93.184.216.34', port: 443 }),
      overlay !== 'airgap',
      'the internet as before: registry in production, nothing in airgap',
    )
  })
}

t.test('without the component, Ollama reaches no model server in the cluster', async (t) => {
  const objects = build(join(k8s, 'overlays/production'))
  t.notOk(egressAllowed(policies(objects), OLLAMA, { ...MODEL_SERVER, port: 80 }))
  t.equal(workload(objects, 'ollama').spec.template.spec.initContainers?.length, 1)
})

t.test(
  'end to end: downloaded by the worker image, created by the stock ollama image',
  async (t) => {
    const gguf = Buffer.concat([Buffer.from('GGUF'), randomBytes(64 * 1024)])
    const sum = createHash('sha256').update(gguf).digest('hex')
    let served = 0
    const server = createServer((_req, res) => {
      served++
      res.end(gguf)
    })
    await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok))
    t.teardown(() => server.close())
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/llama.gguf#sha256=${sum}`

    const dir = stubDir()
    t.teardown(() => rmSync(dir, { recursive: true, force: true }))
    const env = {
      CHAT_MODEL: 'llama3.2',
      EMBED_MODEL: 'nomic-embed-text',
      MODEL_SOURCES: `llama3.2=${url}`,
      MODEL_DOWNLOAD_DIR: join(dir, 'downloads'),
    }
    const fetched = await runScript('services/worker/src/fetch-models.ts', [], {
      env: { ...env, OLLAMA_MODELS: join(dir, 'models') },
    })
    t.equal(fetched.code, 0, fetched.stderr)
    t.equal(served, 1)

    const run = await runInit(
      script,
      dir,
      { ...env, PATH: stockTools(dir) },
      {
        present: ['nomic-embed-text'],
      },
    )
    t.equal(run.status, 0, run.stderr)
    t.strictSame(pulls(run), [])
    t.strictSame(creates(run).length, 1)
    t.equal(run.modelfiles['llama3.2'], `FROM ${dir}/downloads/llama3.2.gguf\n`)
    t.match(run.stderr, 'init-models: llama3.2 was downloaded by fetch-models')
    t.strictSame(downloadsLeft(run), [], 'the download is removed once the model exists')
    t.equal(served, 1, 'the script itself downloads nothing')
    t.notOk(readFileSync(join(dir, 'calls'), 'utf8').includes('pull'))
  },
)
