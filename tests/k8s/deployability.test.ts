import { readdirSync, readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { loadApiConfig } from '@confluence-bot/shared'
import type { INetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy'
import type { IContainer, IPersistentVolumeClaim } from 'kubernetes-models/v1'
import t from 'tap'
import {
  allContainers,
  colocatedWith,
  container,
  egressRuleAllows,
  environment,
  find,
  inCidr,
  podOf,
  quantity,
  selects,
  type Workload,
  workload,
  workloads,
} from './kube.ts'
import { build, type K8sObject, overlayOnTop, splitImage } from './render.ts'

// Invariants an operator relies on when applying an overlay to a real cluster (issue 14): storage
// the cluster can provide, an ingress that lets uploads through, requests that fit a node,
// a password on Redis, egress limits, pinned images.

const root = resolve(import.meta.dirname, '../..')
const k8s = join(root, 'k8s')
// Every overlay there is, so a new one meets these invariants too (and needs a row in NODES).
const OVERLAYS = readdirSync(join(k8s, 'overlays')).sort()
const rendered = new Map(OVERLAYS.map((o) => [o, build(join(k8s, 'overlays', o))]))
const render = (overlay: string) => rendered.get(overlay) as K8sObject[]
/** The overlay's `confluence-bot-config` data. */
const configOf = (objects: readonly K8sObject[]) =>
  find<K8sObject & { data?: Record<string, string> }>(objects, 'ConfigMap', 'confluence-bot-config')
    .data ?? {}
/** The settings the api reads from it (a key of its own, since keys live in the Secret). */
const apiConfigOf = (objects: readonly K8sObject[]) =>
  loadApiConfig({ ...configOf(objects), API_KEYS: 'k'.repeat(16) })
const claims = (objects: readonly K8sObject[]) =>
  objects.filter((o) => o.kind === 'PersistentVolumeClaim') as (K8sObject &
    IPersistentVolumeClaim)[]

t.test('s3: no claim needs a ReadWriteMany class; RWO users are co-located', async (t) => {
  const objects = render('s3')
  const all = [
    ...claims(objects),
    ...(workload(objects, 'redis').spec.volumeClaimTemplates ?? []),
  ] as IPersistentVolumeClaim[]
  t.ok(all.length >= 3, 'exports, ollama-models and redis data are claimed')
  for (const claim of all) {
    t.notOk(
      claim.spec?.accessModes?.includes('ReadWriteMany'),
      `${claim.metadata?.name}: no ReadWriteMany`,
    )
  }
  // Every pod that mounts the RWO exports claim lands on the node of the worker pods.
  const worker = podOf(workload(objects, 'worker'))
  for (const name of ['api', 'worker']) {
    const w = workload(objects, name)
    const mount = container(w).volumeMounts?.find((m) => m.mountPath === '/data/exports')
    const volume = w.spec.template.spec.volumes?.find((v) => v.name === mount?.name)
    t.equal(volume?.persistentVolumeClaim?.claimName, 'exports', `${name} mounts exports`)
    t.ok(colocatedWith(w, worker.labels), `${name}: co-located with the worker`)
  }
})

/** An nginx size ("32m", "2g", "1048576"; k/m/g are binary) in bytes. */
function nginxBytes(size: string): number {
  const m = /^(\d+)([kmg])?$/i.exec(size)
  if (!m) throw new Error(`not an nginx size: ${size}`)
  const unit = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30 }[(m[2] ?? '').toLowerCase()] as number
  return Number(m[1]) * unit
}

t.test('uploads: the ingress lets an export of EXPORT_UPLOAD_LIMIT through', async (t) => {
  t.equal(nginxBytes('32m'), 32 * 2 ** 20)
  t.throws(() => nginxBytes('2 GB'), /not an nginx size/)
  let ingresses = 0
  for (const [overlay, objects] of rendered) {
    const config = configOf(objects)
    const limit = Number(config.EXPORT_UPLOAD_LIMIT)
    // The value the api would use: the ConfigMap's, which must parse as the api's setting does.
    t.equal(loadApiConfig({ ...config, API_KEYS: 'k'.repeat(16) }).EXPORT_UPLOAD_LIMIT, limit)
    const exports = find<K8sObject & IPersistentVolumeClaim>(
      objects,
      'PersistentVolumeClaim',
      'exports',
    )
    t.ok(
      quantity(exports.spec?.resources?.requests?.storage) >= 2 * limit,
      `${overlay}: the exports claim holds an export and its replacement`,
    )
    const ingress = objects.find((o) => o.kind === 'Ingress')
    if (!ingress) continue
    ingresses++
    const size = ingress.metadata.annotations?.['nginx.ingress.kubernetes.io/proxy-body-size']
    t.ok(nginxBytes(size ?? '0') >= limit, `${overlay}: proxy-body-size ${size} ≥ ${limit}`)
  }
  t.ok(ingresses >= 3, 'staging, production and s3 have an ingress')
})

// The node each overlay is sized for, as k8s/README.md ("Node sizes") states it, with what is
// left for pods after the kubelet's reservations and the system pods (control plane on minikube).
// `disk` is the node's disk left for pods' ephemeral storage (emptyDirs, logs): what the node
// allocates to pods, which on a cloud node is far less than its boot disk (GKE: about 44 GiB of an
// e2-standard-4's 100 GB, after the system's reservation, the eviction threshold and the images);
// on minikube the disk less the kubelet's 10 % eviction threshold and room for the images.
type Node = {
  node: string
  cpu: number
  memory: string
  disk: string
  allOnOne: boolean
}
const CLOUD_NODE: Node = {
  node: '4 vCPU / 16 GiB / 40 GiB disk',
  cpu: 3.5,
  memory: '13Gi',
  disk: '40Gi',
  allOnOne: false,
}
const NODES: Record<string, Node> = {
  // Everything on one node: a single-node cluster (40 GB ≈ 37 GiB, less 10 % and ~8 GiB of images).
  dev: {
    node: 'minikube start --cpus 4 --memory 8g --disk-size 40g',
    cpu: 3.25,
    memory: '6.5Gi',
    disk: '25Gi',
    allOnOne: true,
  },
  staging: CLOUD_NODE,
  production: CLOUD_NODE,
  s3: CLOUD_NODE,
  airgap: CLOUD_NODE,
}

type Resource = 'cpu' | 'memory' | 'ephemeral-storage'

/** What the scheduler reserves for one pod: the larger of its init containers and the sum of its containers. */
function podRequests(w: Workload): { cpu: number; memory: number; disk: number } {
  const spec = w.spec.template.spec
  const sum = (cs: readonly IContainer[] | undefined, r: Resource) =>
    (cs ?? []).reduce((acc, c) => acc + quantity(c.resources?.requests?.[r] ?? '0'), 0)
  const initMax = (r: Resource) =>
    Math.max(
      0,
      ...(spec.initContainers ?? []).map((c) => quantity(c.resources?.requests?.[r] ?? '0')),
    )
  const pod = (r: Resource) => Math.max(sum(spec.containers, r), initMax(r))
  return { cpu: pod('cpu'), memory: pod('memory'), disk: pod('ephemeral-storage') }
}

t.test('requests: every pod fits the node its overlay is sized for', async (t) => {
  const readme = readFileSync(join(k8s, 'README.md'), 'utf8')
  for (const [overlay, objects] of rendered) {
    const node = NODES[overlay]
    if (!node) throw new Error(`${overlay}: add its node size to NODES and k8s/README.md`)
    t.ok(readme.includes(node.node), `${overlay}: k8s/README.md states "${node.node}"`)
    const memory = quantity(node.memory)
    const disk = quantity(node.disk)
    let total = { cpu: 0, memory: 0, disk: 0 }
    for (const w of workloads(objects)) {
      const pod = podRequests(w)
      const where = `${overlay} ${w.metadata.name}: ${pod.cpu} CPU / ${pod.memory / 2 ** 30} GiB / ${pod.disk / 2 ** 30} GiB disk`
      t.ok(
        pod.cpu <= node.cpu && pod.memory <= memory && pod.disk <= disk,
        `${where} fits ${node.node}`,
      )
      const replicas = w.spec.replicas ?? 1
      total = {
        cpu: total.cpu + replicas * pod.cpu,
        memory: total.memory + replicas * pod.memory,
        disk: total.disk + replicas * pod.disk,
      }
    }
    if (node.allOnOne) {
      t.ok(total.cpu <= node.cpu, `${overlay}: all pods together, ${total.cpu} CPU`)
      t.ok(total.memory <= memory, `${overlay}: all pods together, ${total.memory / 2 ** 30} GiB`)
      t.ok(total.disk <= disk, `${overlay}: all pods together, ${total.disk / 2 ** 30} GiB disk`)
    }
  }
  // s3: api and worker pods are co-located with the exports volume: together they fit a node.
  const objects = render('s3')
  const together = ['api', 'worker'].map((name) => {
    const w = workload(objects, name)
    const pod = podRequests(w)
    const replicas = w.spec.replicas ?? 1
    return { cpu: pod.cpu * replicas, memory: pod.memory * replicas, disk: pod.disk * replicas }
  })
  const cpu = together.reduce((a, p) => a + p.cpu, 0)
  const memory = together.reduce((a, p) => a + p.memory, 0)
  const disk = together.reduce((a, p) => a + p.disk, 0)
  const s3 = NODES.s3 as Node
  t.ok(cpu <= s3.cpu && memory <= quantity(s3.memory), `s3: co-located api + worker fit`)
  t.ok(disk <= quantity(s3.disk), `s3: their disk too (${disk / 2 ** 30} GiB of ${s3.disk})`)
  t.ok(
    readme.includes(`${disk / 2 ** 30} GiB disk)`),
    `k8s/README.md states the co-located set's ${disk / 2 ** 30} GiB disk`,
  )
  // Nothing else may take that node's room: a pod of another workload that fits beside a worker
  // pod (where the co-located set gathers) must be kept off it, or an api pod stays Pending.
  const workerPod = podRequests(workload(objects, 'worker'))
  const workerLabels = podOf(workload(objects, 'worker')).labels
  for (const w of workloads(objects)) {
    if (w.metadata.name === 'api' || w.metadata.name === 'worker') continue
    const pod = podRequests(w)
    const fitsBeside =
      pod.cpu + workerPod.cpu <= s3.cpu &&
      pod.memory + workerPod.memory <= quantity(s3.memory) &&
      pod.disk + workerPod.disk <= quantity(s3.disk)
    const keptOff = (
      w.spec.template.spec.affinity?.podAntiAffinity
        ?.requiredDuringSchedulingIgnoredDuringExecution ?? []
    ).some(
      (term) =>
        term.topologyKey === 'kubernetes.io/hostname' &&
        selects(term.labelSelector ?? {}, workerLabels),
    )
    t.ok(
      !fitsBeside || keptOff,
      `s3 ${w.metadata.name}: ${keptOff ? 'kept off' : 'cannot fit on'} the api/worker node`,
    )
  }
  // A rollout (the `rollout restart` a ConfigMap change asks for) adds its surge pods on the same
  // node: they must fit too, or the rollout stays Pending.
  let surgeCpu = 0
  let surgeMemory = 0
  for (const name of ['api', 'worker']) {
    const w = workload(objects, name)
    const strategy = (w.spec as { strategy?: { rollingUpdate?: { maxSurge?: number | string } } })
      .strategy
    const surge = Number(strategy?.rollingUpdate?.maxSurge ?? 1)
    const pod = podRequests(w)
    surgeCpu = Math.max(surgeCpu, surge * pod.cpu)
    surgeMemory = Math.max(surgeMemory, surge * pod.memory)
  }
  t.ok(
    cpu + surgeCpu <= s3.cpu && memory + surgeMemory <= quantity(s3.memory),
    `s3: a rollout's surge fits beside them (${cpu + surgeCpu} CPU)`,
  )
})

// `dev` with the model-downloads component: its scratch volume is requested from the node's disk
// too, so the single node needs a larger disk, as k8s/README.md says (50 GB ≈ 46.6 GiB, less 10 %
// and ~8 GiB of images).
const DEV_DOWNLOADS_NODE = { node: '--disk-size 50g', disk: '33Gi' }

t.test('dev with model-downloads: the whole stack fits the larger minikube disk', async (t) => {
  const readme = readFileSync(join(k8s, 'README.md'), 'utf8')
  const urlSources = readme.slice(readme.indexOf('**URL sources**'))
  t.ok(
    urlSources.slice(0, urlSources.indexOf('\n## ')).includes(DEV_DOWNLOADS_NODE.node),
    `k8s/README.md's URL sources state "${DEV_DOWNLOADS_NODE.node}"`,
  )
  const dir = overlayOnTop(t, 'dev', ['model-downloads'])
  const objects = build(dir)
  t.ok(
    allContainers(workload(objects, 'ollama')).some((c) => c.name === 'fetch-models'),
    'the component is in',
  )
  const disk = workloads(objects).reduce(
    (acc, w) => acc + (w.spec.replicas ?? 1) * podRequests(w).disk,
    0,
  )
  const room = quantity(DEV_DOWNLOADS_NODE.disk)
  t.ok(disk <= room, `all pods together, ${disk / 2 ** 30} GiB disk of ${DEV_DOWNLOADS_NODE.disk}`)
  t.ok(disk > quantity(NODES.dev?.disk), 'more than the plain dev node holds: hence the note')
})

t.test('ollama: the first rollout may take its time (image + models)', async (t) => {
  for (const [overlay, objects] of rendered) {
    const spec = workload(objects, 'ollama').spec as { progressDeadlineSeconds?: number }
    const deadline = spec.progressDeadlineSeconds ?? 600
    t.ok(deadline >= 1800, `${overlay}: progressDeadlineSeconds ${deadline} ≥ 1800`)
  }
})

t.test('redis: a password from a Secret reaches redis and every client', async (t) => {
  const secretRef = (c: IContainer, name: string) =>
    c.env?.find((e) => e.name === name)?.valueFrom?.secretKeyRef
  const REDIS_SECRET = { name: 'confluence-bot-redis', key: 'password' }
  for (const [overlay, objects] of rendered) {
    const redis = container(workload(objects, 'redis'))
    const args = [...(redis.command ?? []), ...(redis.args ?? [])]
    t.equal(args[args.indexOf('--requirepass') + 1], '$(REDIS_PASSWORD)', `${overlay}: requirepass`)
    t.strictSame(secretRef(redis, 'REDIS_PASSWORD'), REDIS_SECRET, `${overlay}: redis's password`)
    // The probes' redis-cli authenticates from the environment.
    t.strictSame(secretRef(redis, 'REDISCLI_AUTH'), REDIS_SECRET, `${overlay}: probes authenticate`)
    for (const name of ['api', 'worker']) {
      const c = container(workload(objects, name))
      const env = c.env ?? []
      t.strictSame(secretRef(c, 'REDIS_PASSWORD'), REDIS_SECRET, `${overlay} ${name}: password`)
      const url = env.find((e) => e.name === 'REDIS_URL')
      t.equal(url?.value, 'redis://:$(REDIS_PASSWORD)@redis:6379', `${overlay} ${name}: URL`)
      // The kubelet expands $(VAR) only from entries listed before.
      const order = (n: string) => env.findIndex((e) => e.name === n)
      t.ok(order('REDIS_PASSWORD') < order('REDIS_URL'), `${overlay} ${name}: password first`)
      // The URL a pod sees is the one in `env` (it overrides envFrom).
      t.equal(environment(objects, c).REDIS_URL, url?.value, `${overlay} ${name}: no other URL`)
    }
    for (const o of objects.filter((o) => o.kind === 'ConfigMap')) {
      const data = (o as K8sObject & { data?: Record<string, string> }).data ?? {}
      for (const [key, value] of Object.entries(data)) {
        t.notMatch(value, /^rediss?:\/\/[^/]*@/, `${overlay} ConfigMap ${o.metadata.name} ${key}`)
      }
      t.notOk('REDIS_URL' in data, `${overlay}: no REDIS_URL in ConfigMap ${o.metadata.name}`)
    }
    t.ok(
      objects.some((o) => o.kind === 'NetworkPolicy' && o.metadata.name === 'redis'),
      `${overlay}: Redis behind a NetworkPolicy`,
    )
  }
  // The walkthrough creates that Secret, and the example shows it.
  const readme = readFileSync(join(k8s, 'README.md'), 'utf8')
  t.match(readme, /create secret generic confluence-bot-redis \\\n\s+--from-literal=password=/)
  const example = readFileSync(join(k8s, 'secret.example.yaml'), 'utf8')
  t.match(example, /name: confluence-bot-redis[\s\S]*password:/)
})

t.test('images: patch releases or digests; a moving tag is pulled every time', async (t) => {
  const RELEASE = /^\d+\.\d+\.\d+(?:-[0-9A-Za-z.]+)?$/
  for (const [overlay, objects] of rendered) {
    for (const w of workloads(objects)) {
      const spec = w.spec.template.spec
      for (const c of [...(spec.initContainers ?? []), ...spec.containers]) {
        const image = splitImage(c.image ?? '')
        const where = `${overlay} ${w.metadata.name}/${c.name}: ${c.image}`
        if (image.digest || RELEASE.test(image.tag ?? '')) {
          t.pass(`${where} is pinned`)
          continue
        }
        // Only our own dev images follow a branch (`:main`), and then the node must not reuse
        // whatever it pulled before.
        t.match(image.name, /\/confluence-bot\/(api|worker)$/, `${where}: a moving tag of ours`)
        t.equal(c.imagePullPolicy, 'Always', `${where}: pulled on every start`)
      }
    }
  }
  t.equal(splitImage(container(workload(render('production'), 'redis')).image ?? '').tag, '7.4.6')
})

t.test('Dockerfile: pinned base, health checks, each image carries only its service', async (t) => {
  const dockerfile = readFileSync(join(root, 'Dockerfile'), 'utf8')
  const node = /^ARG NODE_IMAGE=node:(\d+\.\d+\.\d+)-bookworm-slim$/m.exec(dockerfile)
  t.ok(node, 'the base image is a patch release')
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
  t.equal(node?.[1], pkg.devDependencies.node, "the Node.js the project's tests run on")
  const froms = [...dockerfile.matchAll(/^FROM (\S+)/gm)].map((m) => m[1])
  for (const from of froms) {
    t.ok(
      ['$' + '{NODE_IMAGE}', 'runtime'].includes(from as string),
      `FROM ${from}: the pinned base`,
    )
  }
  t.match(dockerfile, /docker buildx imagetools inspect node:/, 'how to pin the digest')
  // Stages: the text from one FROM to the next.
  const stages = Object.fromEntries(
    dockerfile
      .split(/^(?=FROM )/m)
      .map((text) => [/ AS (\w+)/.exec(text)?.[1] ?? '', text] as const),
  )
  for (const [stage, path] of [
    ['api', '/api/health/live'],
    ['worker', '/health/live'],
  ] as const) {
    t.match(stages[stage], new RegExp(`HEALTHCHECK [^\\n]*\\\\\\n[^\\n]*${path}`), `${stage}`)
    t.match(stages[stage], new RegExp(`COPY --from=build --chown=node:node /out/${stage} /app`))
  }
  const build = stages.build ?? ''
  t.match(build, /prune \/out\/api api worker/, 'api image: no worker, no api copy, no sources')
  t.match(build, /prune \/out\/worker worker api/, 'worker image: no api')
  for (const gone of ['src', 'tsconfig', 'typescript@', 'tsbuildinfo']) {
    t.ok(build.includes(gone), `the pruning removes ${gone}`)
  }
  const ignore = readFileSync(join(root, '.dockerignore'), 'utf8').split('\n')
  for (const entry of ['**/node_modules', '**/dist', '**/*.tsbuildinfo', '.git', 'tests', 'k8s']) {
    t.ok(ignore.includes(entry), `.dockerignore: ${entry}`)
  }
})

/** Whether a policy's egress rules let its pods open a connection to a destination. */
const egressAllowed = egressRuleAllows

t.test('egress: Ollama and the worker reach what they need, never cloud metadata', async (t) => {
  t.ok(inCidr('169.254.169.254', '169.254.0.0/16'))
  t.notOk(inCidr('203.0.113.7', '169.254.0.0/16'))
  const METADATA = '169.254.169.254'
  const PUBLIC = '203.0.113.7' // Confluence Cloud, the Ollama registry, an S3 endpoint
  for (const overlay of OVERLAYS) {
    const objects = render(overlay)
    const policy = (name: string) =>
      find<K8sObject & INetworkPolicy>(objects, 'NetworkPolicy', name)
    const labels = (name: string) => podOf(workload(objects, name)).labels
    for (const name of ['ollama', 'worker']) {
      const p = policy(name)
      const where = `${overlay} ${name}`
      t.ok(p.spec?.policyTypes?.includes('Egress'), `${where}: egress is restricted`)
      t.ok(selects(p.spec?.podSelector ?? {}, labels(name)), `${where}: selects its pods`)
      for (const protocol of ['UDP', 'TCP']) {
        t.ok(
          egressAllowed(p, {
            pod: { 'k8s-app': 'kube-dns' },
            namespace: { 'kubernetes.io/metadata.name': 'kube-system' },
            port: 53,
            protocol,
          }),
          `${where}: DNS ${protocol}`,
        )
      }
      // Ollama needs the registry unless the overlay turned it off (air-gapped).
      if (name === 'worker' || configOf(objects).MODEL_REGISTRY !== 'off') {
        t.ok(egressAllowed(p, { ip: PUBLIC, port: 443 }), `${where}: HTTPS out`)
      }
      // GKE's Cloud DNS answers at the metadata server's address: DNS there, its HTTP API not.
      for (const protocol of ['UDP', 'TCP']) {
        t.ok(
          egressAllowed(p, { ip: METADATA, port: 53, protocol }),
          `${where}: Cloud DNS ${protocol}`,
        )
      }
      for (const port of [80, 443, 8080]) {
        t.notOk(egressAllowed(p, { ip: METADATA, port }), `${where}: no metadata on ${port}`)
      }
      t.notOk(egressAllowed(p, { ip: PUBLIC, port: 22 }), `${where}: nothing else out`)
      t.notOk(egressAllowed(p, { ip: PUBLIC, port: 53, protocol: 'TCP' }), `${where}: no DNS out`)
      t.notOk(egressAllowed(p, { pod: labels('api'), port: 3000 }), `${where}: ↛ api`)
    }
    const worker = policy('worker')
    t.ok(egressAllowed(worker, { pod: labels('redis'), port: 6379 }), `${overlay}: worker → redis`)
    t.ok(
      egressAllowed(worker, { pod: labels('ollama'), port: 11434 }),
      `${overlay}: worker → ollama`,
    )
    const ollama = policy('ollama')
    t.notOk(
      egressAllowed(ollama, { pod: labels('redis'), port: 6379 }),
      `${overlay}: ollama ↛ redis`,
    )
    // The api: from the ingress controller's namespace only, which an overlay may relabel.
    const api = policy('api')
    const peers = api.spec?.ingress?.flatMap((rule) => rule.from ?? []) ?? []
    t.ok(peers.length > 0, `${overlay}: api ingress names its sources`)
    for (const peer of peers) {
      t.ok(peer.namespaceSelector && !peer.podSelector, `${overlay}: api from a namespace`)
    }
  }
})

t.test('LanceDB: the images are built only where its native binary exists', async (t) => {
  const workspace = readFileSync(join(root, 'pnpm-workspace.yaml'), 'utf8')
  const version = /^\s+"@lancedb\/lancedb": (\S+)$/m.exec(workspace)?.[1]
  t.match(version, /^\d+\.\d+\.\d+$/, 'one exact LanceDB version')
  const lock = readFileSync(join(root, 'pnpm-lock.yaml'), 'utf8')
  const binary = (arch: string) => lock.includes(`'@lancedb/lancedb-linux-${arch}-gnu@${version}':`)
  t.ok(binary('x64'), `the lockfile carries the linux-x64 binary of ${version}`)
  const dockerfile = readFileSync(join(root, 'Dockerfile'), 'utf8')
  const readme = readFileSync(join(k8s, 'README.md'), 'utf8')
  // The build loads the binding, so a platform without one fails at build time, not in a pod.
  t.match(dockerfile, /import\('@lancedb\/lancedb'\)\.then\(\(m\) => m\.connect\('memory:\/\/'\)\)/)
  if (binary('arm64')) {
    t.match(dockerfile, /--platform linux\/amd64,linux\/arm64/, 'a multi-arch build line')
  } else {
    // No arm64 build of this version exists (LanceDB's linux-arm64 packages stop at 0.31.0): the
    // docs must not promise one.
    t.notMatch(dockerfile, /linux\/arm64/, 'the Dockerfile offers no arm64 build')
    t.match(readme, /linux\/amd64 only/, 'k8s/README.md says the images are amd64 only')
    for (const [overlay, objects] of rendered) {
      for (const name of ['api', 'worker']) {
        const selector = workload(objects, name).spec.template.spec.nodeSelector
        t.equal(selector?.['kubernetes.io/arch'], 'amd64', `${overlay} ${name}: amd64 nodes only`)
      }
    }
  }
})

t.test('the walkthrough runs as written from the repository root', async (t) => {
  const readme = readFileSync(join(k8s, 'README.md'), 'utf8')
  const deploy = readme.slice(
    readme.indexOf('## Deploy'),
    readme.indexOf('\n## ', readme.indexOf('## Deploy') + 1),
  )
  const commands = [...deploy.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1] as string)
  t.ok(commands.length >= 3, 'its steps have commands')
  const text = commands.join('\n')
  t.notMatch(text, /^\s*cd /m, 'no step changes directory: every path is from the root')
  t.notMatch(
    text.replace(/kubectl kustomize/g, ''),
    /\bkustomize\b/,
    'kubectl only, no standalone kustomize',
  )
  for (const path of text.matchAll(/-k (\S+)/g)) {
    t.ok(readFileSync(join(root, path[1] as string, 'kustomization.yaml')), `${path[1]} exists`)
  }
  // The images built are pushed, and are the ones the production overlay runs.
  const production = render('production')
  for (const name of ['api', 'worker']) {
    const image = container(workload(production, name)).image as string
    const build = new RegExp(
      `--target ${name} \\\\\\n\\s+-t ${image.replace(/[.]/g, '\\.')} --push`,
    )
    t.match(text, build, `${name}: built and pushed as ${image}`)
  }
  t.match(readme, /Requirements:[^#]*`kubectl`/, 'kubectl among the requirements')
  t.match(deploy, /rollout status deployment\/ollama --timeout=30m/, 'waits for the first pull')
  t.match(
    deploy,
    /`CHAT_MODEL` or `EMBED_MODEL`[^.]*rollout restart deployment\/ollama/,
    'model change',
  )
})

t.test(
  'model imports: MODEL_IMPORT_DIR is a writable volume in the api pod that holds the largest import',
  async (t) => {
    for (const [overlay, objects] of rendered) {
      const api = apiConfigOf(objects)
      const spec = find<Workload>(objects, 'Deployment', 'api').spec.template.spec
      const container = spec.containers.find((c) => c.name === 'api') ?? spec.containers[0]
      // The root file system is read-only: the directory must be a mount of its own, written to.
      const mount = container?.volumeMounts?.find(
        (m) =>
          api.MODEL_IMPORT_DIR === m.mountPath ||
          api.MODEL_IMPORT_DIR.startsWith(`${m.mountPath}/`),
      )
      t.ok(mount, `${overlay}: MODEL_IMPORT_DIR ${api.MODEL_IMPORT_DIR} is on a volume`)
      t.notOk(mount?.readOnly, `${overlay}: and written to`)
      const volume = spec.volumes?.find((v) => v.name === mount?.name)
      const room = volume?.emptyDir?.sizeLimit ?? '0'
      t.ok(
        quantity(room) >= api.MODEL_IMPORT_LIMIT,
        `${overlay}: its volume (${room}) holds an import of MODEL_IMPORT_LIMIT (${api.MODEL_IMPORT_LIMIT})`,
      )
      const ingress = objects.find((o) => o.kind === 'Ingress')
      if (!ingress) continue
      const size = ingress.metadata.annotations?.['nginx.ingress.kubernetes.io/proxy-body-size']
      t.ok(
        nginxBytes(size ?? '0') >= api.MODEL_IMPORT_LIMIT,
        `${overlay}: proxy-body-size ${size} ≥ MODEL_IMPORT_LIMIT`,
      )
    }
  },
)

// The slowest sustained upload k8s/README.md ("Importing a model into the cluster") promises an
// import of MODEL_IMPORT_LIMIT gets through at, in bits per second.
const IMPORT_MIN_BANDWIDTH = 20e6

t.test(
  'model imports: REQUEST_TIMEOUT_MS lets MODEL_IMPORT_LIMIT through at the stated bandwidth, and the Ingress waits as long',
  async (t) => {
    const readme = readFileSync(join(k8s, 'README.md'), 'utf8')
    t.match(
      readme,
      /## Importing a model into the cluster[\s\S]*20 Mbit\/s/,
      'the README states it',
    )
    for (const [overlay, objects] of rendered) {
      const api = apiConfigOf(objects)
      const seconds = api.REQUEST_TIMEOUT_MS / 1000
      t.ok(
        api.REQUEST_TIMEOUT_MS > 0 &&
          (seconds * IMPORT_MIN_BANDWIDTH) / 8 >= api.MODEL_IMPORT_LIMIT,
        `${overlay}: ${seconds} s at ${IMPORT_MIN_BANDWIDTH / 1e6} Mbit/s carry MODEL_IMPORT_LIMIT (${api.MODEL_IMPORT_LIMIT})`,
      )
      const ingress = objects.find((o) => o.kind === 'Ingress')
      if (!ingress) continue
      for (const name of ['proxy-read-timeout', 'proxy-send-timeout']) {
        const value = Number(ingress.metadata.annotations?.[`nginx.ingress.kubernetes.io/${name}`])
        t.ok(value >= seconds, `${overlay}: ${name} ${value} s ≥ REQUEST_TIMEOUT_MS (${seconds} s)`)
      }
    }
  },
)

t.test(
  'ephemeral storage: pods with emptyDirs request and cap the disk their volumes may fill',
  async (t) => {
    for (const [overlay, objects] of rendered) {
      for (const w of workloads(objects)) {
        const spec = w.spec.template.spec
        // Node disk only: a memory-backed emptyDir counts against memory instead.
        const onDisk = (spec.volumes ?? []).filter(
          (v) => v.emptyDir && v.emptyDir.medium !== 'Memory',
        )
        if (onDisk.length === 0) continue
        const where = `${overlay} ${w.metadata.name}`
        const sizes = onDisk.map((v) => quantity(v.emptyDir?.sizeLimit ?? 'none'))
        const volumes = sizes.reduce((a, b) => a + b, 0)
        const containers = allContainers(w)
        for (const c of containers) {
          const r = c.resources
          t.ok(
            r?.requests?.['ephemeral-storage'] && r.limits?.['ephemeral-storage'],
            `${where}/${c.name}: ephemeral-storage requested and limited`,
          )
        }
        const total = (r: 'requests' | 'limits') =>
          spec.containers.reduce(
            (a, c) => a + quantity(c.resources?.[r]?.['ephemeral-storage'] ?? '0'),
            0,
          )
        // The scheduler reserves what the volumes may hold (so a full import cannot push the node
        // into DiskPressure), and the pod's limit lets them fill up to their sizeLimits.
        t.ok(
          total('requests') >= volumes,
          `${where}: requests ${total('requests') / 2 ** 30} GiB ≥ its emptyDirs' ${volumes / 2 ** 30} GiB`,
        )
        t.ok(total('limits') >= total('requests'), `${where}: limits ≥ requests`)
      }
      // The import volume leaves room over MODEL_IMPORT_LIMIT for the file system's own blocks.
      const api = apiConfigOf(objects)
      const imports = workload(objects, 'api').spec.template.spec.volumes?.find(
        (v) => v.name === 'model-imports',
      )
      t.ok(
        quantity(imports?.emptyDir?.sizeLimit) >= api.MODEL_IMPORT_LIMIT + 2 ** 29,
        `${overlay}: model-imports (${imports?.emptyDir?.sizeLimit}) > MODEL_IMPORT_LIMIT + 512 MiB`,
      )
    }
  },
)
