import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join, relative, resolve } from 'node:path'
import {
  ApiEnvSchema,
  loadApiConfig,
  loadWorkerConfig,
  WorkerEnvSchema,
} from '@confluence-bot/shared'
import type { IIngress } from 'kubernetes-models/networking.k8s.io/v1/Ingress'
import type { INetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy'
import type { IContainer, IPersistentVolumeClaim, IService } from 'kubernetes-models/v1'
import t from 'tap'
import {
  allContainers,
  colocatedWith,
  container,
  environment,
  find,
  has,
  ingressAllowed,
  type Pod,
  podOf,
  quantity,
  redisBytes,
  resolvePort,
  selects,
  validateObject,
  workload,
  workloads,
} from './kube.ts'
import {
  build,
  hasKubectl,
  type K8sObject,
  kubectlKustomize,
  loadYamlFile,
  splitImage,
} from './render.ts'

// Renders every kustomization of k8s/ offline and checks the objects against the Kubernetes
// schemas and the invariants the product relies on (DESIGN.md §6, STYLE.md §2.3 item 16).

const k8s = resolve(import.meta.dirname, '../../k8s')
const OVERLAYS = ['dev', 'staging', 'production', 's3', 'airgap']
const TARGETS = ['base', ...OVERLAYS.map((o) => `overlays/${o}`)]
const rendered = new Map(TARGETS.map((target) => [target, build(join(k8s, target))]))
const render = (target: string) => rendered.get(target) as K8sObject[]

const PART_OF = 'app.kubernetes.io/part-of'
const API_SECRET = 'confluence-bot-secrets'
const LANCEDB_PATH = '/data/lancedb'

function yamlFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((entry) => {
    const path = join(dir, entry)
    if (statSync(path).isDirectory()) return yamlFiles(path)
    return entry.endsWith('.yaml') ? [path] : []
  })
}

const kustomizationFiles = yamlFiles(k8s).filter((f) => f.endsWith('/kustomization.yaml'))

function preStopSeconds(c: IContainer): number {
  const preStop = c.lifecycle?.preStop
  if (preStop?.sleep) return preStop.sleep.seconds
  const command = preStop?.exec?.command ?? []
  const sleep = command.indexOf('sleep')
  return sleep >= 0 ? Number(command[sleep + 1]) : 0
}

t.test('every overlay is rendered and checked', async (t) => {
  const present = readdirSync(join(k8s, 'overlays')).sort()
  t.strictSame(present, [...OVERLAYS].sort(), 'a new overlay must be added to OVERLAYS')
  // ... and so is every component, through at least one overlay.
  const used = new Set(
    kustomizationFiles.flatMap((file) =>
      ((loadYamlFile(file)[0] as { components?: string[] }).components ?? []).map((c) =>
        relative(k8s, resolve(file, '..', c)),
      ),
    ),
  )
  // Opt-in components no overlay needs, each rendered on top of one by its own test.
  const optIn: Record<string, string> = {
    'ingress-host-network': 'network-policies.test.ts, with production',
    'model-downloads': 'model-downloads.test.ts, with production and airgap',
  }
  for (const component of readdirSync(join(k8s, 'components'))) {
    if (optIn[component]) continue
    t.ok(used.has(`components/${component}`), `components/${component} is used by an overlay`)
  }
})

t.test('every rendered object is valid against the Kubernetes schemas', async (t) => {
  for (const [target, objects] of rendered) {
    const errors = (await Promise.all(objects.map(validateObject))).flat()
    t.strictSame(errors, [], `${target}: ${objects.length} objects`)
  }
})

t.test('the schema check catches mistakes', async (t) => {
  const api = structuredClone(workload(render('base'), 'api'))
  const c = container(api) as IContainer & Record<string, unknown>
  c.readinesProbe = c.readinessProbe
  c.resources = { requests: { cpu: 'lots' } }
  const errors = await validateObject(api)
  t.match(errors.join('\n'), /readinesProbe: unknown field/)
  t.match(errors.join('\n'), /requests\/cpu must match format "quantity"/)
})

t.test('base composes ollama, redis, api, worker, the index volume and the config', async (t) => {
  const ids = render('base')
    .map((o) => `${o.kind}/${o.metadata.name}`)
    .sort()
  t.strictSame(ids, [
    'ConfigMap/confluence-bot-config',
    'ConfigMap/ollama-init',
    'Deployment/api',
    'Deployment/ollama',
    'Deployment/worker',
    'PersistentVolumeClaim/exports',
    'PersistentVolumeClaim/lancedb',
    'PersistentVolumeClaim/ollama-models',
    'PodDisruptionBudget/api',
    'PodDisruptionBudget/worker',
    'Service/api',
    'Service/ollama-service',
    'Service/redis',
    'ServiceAccount/api',
    'ServiceAccount/worker',
    'StatefulSet/redis',
  ])
  const config = find(render('base'), 'ConfigMap', 'confluence-bot-config').data
  t.strictSame(config, {
    OLLAMA_URL: 'http://ollama-service:11434',
    CHAT_MODEL: 'llama3.2',
    EMBED_MODEL: 'nomic-embed-text',
    MODEL_SOURCES: 'llama3.2=registry nomic-embed-text=registry',
    MODEL_REGISTRY: 'on',
    LANCEDB_URI: '/data/lancedb',
    EXPORTS_DIR: '/data/exports',
    EXPORT_UPLOAD_LIMIT: '2147483648',
    MODEL_IMPORT_DIR: '/data/model-imports',
    MODEL_IMPORT_LIMIT: '8589934592',
    REQUEST_TIMEOUT_MS: '3600000',
    LOG_LEVEL: 'info',
  })
  // Uploaded export zips: written by the api, read and deleted by the worker.
  for (const name of ['api', 'worker']) {
    const deployment = find(render('base'), 'Deployment', name) as unknown as {
      spec: {
        template: {
          spec: { containers: Array<{ volumeMounts: Array<{ name: string; readOnly?: boolean }> }> }
        }
      }
    }
    const pod = deployment.spec.template.spec
    const mount = pod.containers[0]?.volumeMounts.find((m) => m.name === 'exports')
    t.match(mount, { mountPath: '/data/exports' }, name)
    t.notOk(mount?.readOnly, `${name} writes the exports volume`)
  }
})

t.test('every container has cpu and memory requests and limits, requests ≤ limits', async (t) => {
  for (const [target, objects] of rendered) {
    for (const w of workloads(objects)) {
      for (const c of allContainers(w)) {
        const where = `${target} ${w.metadata.name}/${c.name}`
        for (const resource of ['cpu', 'memory']) {
          const request = c.resources?.requests?.[resource]
          const limit = c.resources?.limits?.[resource]
          t.ok(request !== undefined && limit !== undefined, `${where}: ${resource} set`)
          t.ok(quantity(request) <= quantity(limit), `${where}: ${resource} request ≤ limit`)
        }
      }
    }
  }
})

t.test('api and worker run locked down', async (t) => {
  for (const [target, objects] of rendered) {
    for (const name of ['api', 'worker']) {
      const w = workload(objects, name)
      const pod = w.spec.template.spec
      const c = container(w)
      const where = `${target} ${name}`
      t.equal(pod.securityContext?.runAsNonRoot, true, `${where}: runAsNonRoot`)
      t.ok((pod.securityContext?.runAsUser ?? 0) > 0, `${where}: numeric non-root uid`)
      t.equal(pod.securityContext?.seccompProfile?.type, 'RuntimeDefault', `${where}: seccomp`)
      t.equal(c.securityContext?.readOnlyRootFilesystem, true, `${where}: read-only root`)
      t.equal(c.securityContext?.allowPrivilegeEscalation, false, `${where}: no escalation`)
      t.strictSame(c.securityContext?.capabilities?.drop, ['ALL'], `${where}: drop ALL`)
      t.notOk(c.securityContext?.privileged, `${where}: not privileged`)
      t.equal(pod.automountServiceAccountToken, false, `${where}: no API token`)
      t.equal(pod.serviceAccountName, name, `${where}: own ServiceAccount`)
      t.ok(has(objects, 'ServiceAccount', name), `${where}: ServiceAccount exists`)
      // A read-only root needs a writable /tmp.
      const tmp = c.volumeMounts?.find((m) => m.mountPath === '/tmp')
      const volume = pod.volumes?.find((v) => v.name === tmp?.name)
      t.ok(volume?.emptyDir, `${where}: /tmp is an emptyDir`)
    }
  }
})

t.test('api: probes, port, drain on shutdown, rolling update, Service, PDB', async (t) => {
  for (const [target, objects] of rendered) {
    const w = workload(objects, 'api')
    const c = container(w)
    const env = environment(objects, c)
    const config = loadApiConfig(env) // the app's own schema accepts what the manifests set
    const where = target
    t.equal(config.HOST, '0.0.0.0', `${where}: listens on all interfaces`)
    t.equal(resolvePort(c, 'http'), 3000, `${where}: containerPort 3000 named http`)
    t.equal(config.PORT, 3000, `${where}: PORT matches the container port`)
    t.strictSame(c.envFrom, [
      { configMapRef: { name: 'confluence-bot-config' } },
      { secretRef: { name: API_SECRET } },
    ])
    t.equal(c.readinessProbe?.httpGet?.path, '/api/health', `${where}: readiness`)
    t.equal(c.readinessProbe?.httpGet?.port, 'http', `${where}: readiness on http`)
    t.equal(c.livenessProbe?.httpGet?.path, '/api/health/live', `${where}: liveness`)
    t.equal(c.livenessProbe?.httpGet?.port, 'http', `${where}: liveness on http`)
    const preStop = preStopSeconds(c)
    t.ok(preStop >= 3 && preStop <= 10, `${where}: preStop sleeps a few seconds (${preStop})`)
    const grace = w.spec.template.spec.terminationGracePeriodSeconds ?? 30
    t.ok(grace > 10, `${where}: grace period above 10 s`)
    t.ok(
      grace * 1000 > preStop * 1000 + config.SHUTDOWN_GRACE_MS,
      `${where}: ${grace} s > preStop ${preStop} s + SHUTDOWN_GRACE_MS ${config.SHUTDOWN_GRACE_MS}`,
    )
    t.equal(w.spec.strategy?.type, 'RollingUpdate')
    if (where.endsWith('s3')) {
      // Co-located on one node (components/lancedb-s3): a surge pod would never fit there, so a
      // rollout takes one of several replicas down at a time instead.
      t.equal(w.spec.strategy?.rollingUpdate?.maxSurge, 0, `${where}: maxSurge 0`)
      t.equal(w.spec.strategy?.rollingUpdate?.maxUnavailable, 1, `${where}: maxUnavailable 1`)
      t.ok((w.spec.replicas ?? 1) >= 2, `${where}: other replicas serve meanwhile`)
    } else {
      t.equal(w.spec.strategy?.rollingUpdate?.maxUnavailable, 0, `${where}: maxUnavailable 0`)
    }
    if (target !== 'overlays/dev') t.ok((w.spec.replicas ?? 1) >= 2, `${where}: ≥ 2 replicas`)

    const service = find<K8sObject & IService>(objects, 'Service', 'api')
    const port = service.spec?.ports?.[0]
    t.equal(port?.port, 80)
    t.equal(resolvePort(c, port?.targetPort), 3000, `${where}: Service 80 → http`)
    const pdb = find(objects, 'PodDisruptionBudget', 'api') as K8sObject & {
      spec: { selector: { matchLabels: Record<string, string> } }
    }
    t.ok(selects(pdb.spec.selector, podOf(w).labels), `${where}: PDB covers the api pods`)
  }
})

t.test('worker: health probes, no Service, drains jobs within the grace period', async (t) => {
  for (const [target, objects] of rendered) {
    const w = workload(objects, 'worker')
    const c = container(w)
    const config = loadWorkerConfig(environment(objects, c))
    const where = target
    t.equal(config.WORKER_HEALTH_HOST, '0.0.0.0', `${where}: health endpoint reachable`)
    t.equal(config.WORKER_HEALTH_PORT, 3001)
    t.equal(c.livenessProbe?.httpGet?.path, '/health/live')
    t.equal(c.readinessProbe?.httpGet?.path, '/health/ready')
    t.equal(resolvePort(c, c.livenessProbe?.httpGet?.port), config.WORKER_HEALTH_PORT)
    t.equal(resolvePort(c, c.readinessProbe?.httpGet?.port), config.WORKER_HEALTH_PORT)
    const grace = w.spec.template.spec.terminationGracePeriodSeconds ?? 30
    t.ok(
      grace * 1000 > config.SHUTDOWN_GRACE_MS && grace > 10,
      `${where}: ${grace} s > SHUTDOWN_GRACE_MS ${config.SHUTDOWN_GRACE_MS}`,
    )
    const services = objects.filter((o) => o.kind === 'Service') as (K8sObject & IService)[]
    t.notOk(
      services.some((s) => selects({ matchLabels: s.spec?.selector }, podOf(w).labels)),
      `${where}: no Service selects the worker`,
    )
    const pdb = find(objects, 'PodDisruptionBudget', 'worker') as K8sObject & {
      spec: { selector: { matchLabels: Record<string, string> } }
    }
    t.ok(selects(pdb.spec.selector, podOf(w).labels), `${where}: PDB covers the worker pods`)
  }
})

t.test('labels never touch selectors', async (t) => {
  const baseSelectors = new Map(
    workloads(render('base')).map((w) => [w.metadata.name, w.spec.selector.matchLabels]),
  )
  for (const [target, objects] of rendered) {
    for (const o of objects) {
      t.equal(o.metadata.labels?.[PART_OF], 'confluence-bot', `${target} ${o.kind}: part-of`)
    }
    for (const w of workloads(objects)) {
      const where = `${target} ${w.metadata.name}`
      const selector = w.spec.selector.matchLabels ?? {}
      t.strictSame(Object.keys(selector).sort(), [
        'app.kubernetes.io/component',
        'app.kubernetes.io/name',
      ])
      const inBase = baseSelectors.get(w.metadata.name)
      if (inBase) t.strictSame(selector, inBase, `${where}: selector as in base`)
      // The one workload a component adds, with a selector of its own.
      else t.equal(w.metadata.name, 'ollama-models-loader', `${where}: the airgap loader`)
      t.ok(selects(w.spec.selector, podOf(w).labels), `${where}: selector ⊆ template labels`)
      t.equal(podOf(w).labels[PART_OF], 'confluence-bot', `${where}: pods carry part-of`)
    }
    // Services, PDBs and NetworkPolicies select by name + component, never by part-of, and each
    // Service/PDB selects the pods of exactly one workload.
    for (const o of objects) {
      const spec = (o.spec ?? {}) as {
        selector?: Record<string, string> & { matchLabels?: Record<string, string> }
      }
      const selectors: Record<string, string>[] = []
      if (o.kind === 'Service') selectors.push(spec.selector ?? {})
      if (o.kind === 'PodDisruptionBudget') selectors.push(spec.selector?.matchLabels ?? {})
      for (const selector of selectors) {
        t.notOk(PART_OF in selector, `${target} ${o.kind}/${o.metadata.name}: no part-of`)
        const matching = workloads(objects).filter((w) =>
          selects({ matchLabels: selector }, podOf(w).labels),
        )
        t.equal(matching.length, 1, `${target} ${o.kind}/${o.metadata.name} selects one workload`)
      }
    }
  }
  for (const file of kustomizationFiles) {
    const k = loadYamlFile(file)[0] as Record<string, unknown>
    t.notOk('commonLabels' in k, `${relative(k8s, file)}: no commonLabels`)
  }
})

t.test('ollama: service, model volume, CPU sizing, probes', async (t) => {
  for (const [target, objects] of rendered) {
    const w = workload(objects, 'ollama')
    const c = container(w)
    const where = target
    t.equal(w.spec.replicas, 1)
    t.match(c.image, /^ollama\/ollama:\d+\.\d+\.\d+$/, `${where}: pinned ollama image`)
    const service = find<K8sObject & IService>(objects, 'Service', 'ollama-service')
    t.equal(service.spec?.ports?.[0]?.port, 11434)
    t.equal(resolvePort(c, service.spec?.ports?.[0]?.targetPort), 11434)
    t.ok(selects({ matchLabels: service.spec?.selector }, podOf(w).labels), `${where}: selects`)
    for (const probe of [c.readinessProbe, c.livenessProbe]) {
      t.equal(probe?.httpGet?.path, '/')
      t.equal(resolvePort(c, probe?.httpGet?.port), 11434)
    }
    const mount = c.volumeMounts?.find((m) => m.mountPath === '/root/.ollama')
    const volume = w.spec.template.spec.volumes?.find((v) => v.name === mount?.name)
    const claim = volume?.persistentVolumeClaim?.claimName as string
    const pvc = find<K8sObject & IPersistentVolumeClaim>(objects, 'PersistentVolumeClaim', claim)
    const size = quantity(pvc.spec?.resources?.requests?.storage)
    t.ok(size >= quantity('10Gi'), `${where}: model volume ≥ 10Gi`)
    // CPU sizing against a node: tests/k8s/deployability.test.ts.
    if (target !== 'overlays/dev') {
      t.ok(quantity(c.resources?.requests?.cpu) >= 3, `${where}: 3 CPU requested`)
      t.ok(quantity(c.resources?.requests?.memory) >= quantity('5Gi'), `${where}: 5Gi requested`)
    }
  }
})

// The init container's script (k8s/base/ollama/init-models.sh) is tested in ollama-init.test.ts.

t.test('redis: AOF, noeviction, probes, persistent volume, reachable at REDIS_URL', async (t) => {
  for (const [target, objects] of rendered) {
    const w = workload(objects, 'redis')
    const c = container(w)
    const where = target
    t.equal(w.kind, 'StatefulSet')
    t.match(c.image, /^redis:7(\.\d+)*$/, `${where}: redis 7`)
    const args = [...(c.command ?? []), ...(c.args ?? [])]
    const option = (name: string) => args[args.indexOf(`--${name}`) + 1]
    t.equal(option('appendonly'), 'yes', `${where}: AOF on`)
    t.equal(option('maxmemory-policy'), 'noeviction', `${where}: noeviction`)
    t.notOk(
      args.some((a) => /allkeys|volatile/.test(a)),
      `${where}: no eviction policy anywhere in the args`,
    )
    const maxmemory = redisBytes(option('maxmemory') as string)
    t.ok(maxmemory < quantity(c.resources?.limits?.memory), `${where}: maxmemory < memory limit`)
    for (const probe of [c.readinessProbe, c.livenessProbe]) {
      t.match(probe?.exec?.command?.join(' '), /redis-cli ping/, `${where}: redis-cli ping probe`)
    }
    const data = c.volumeMounts?.find((m) => m.mountPath === '/data')
    t.ok(
      w.spec.volumeClaimTemplates?.some((v) => v.metadata?.name === data?.name),
      `${where}: /data on a volumeClaimTemplate`,
    )
    t.equal(option('dir'), '/data', `${where}: AOF written to the volume`)
    t.equal(w.spec.template.spec.securityContext?.runAsNonRoot, true)

    const service = find<K8sObject & IService>(objects, 'Service', 'redis')
    t.equal(service.spec?.clusterIP, 'None', `${where}: headless`)
    const url = new URL(environment(objects, container(workload(objects, 'api'))).REDIS_URL ?? '')
    t.equal(url.hostname, service.metadata?.name)
    t.equal(Number(url.port), service.spec?.ports?.[0]?.port)
    t.equal(resolvePort(c, service.spec?.ports?.[0]?.targetPort), 6379)
  }
})

t.test('OLLAMA_URL points at the ollama Service', async (t) => {
  for (const [target, objects] of rendered) {
    for (const name of ['api', 'worker']) {
      const env = environment(objects, container(workload(objects, name)))
      const url = new URL(env.OLLAMA_URL ?? '')
      t.equal(url.hostname, 'ollama-service', `${target} ${name}`)
      t.equal(url.port, '11434', `${target} ${name}`)
    }
  }
})

t.test('secrets are referenced, never rendered or committed', async (t) => {
  for (const [target, objects] of rendered) {
    const secrets = objects.filter((o) => o.kind === 'Secret')
    t.strictSame(secrets, [], `${target}: renders no Secret`)
  }
  const secretFiles = yamlFiles(k8s).filter((file) =>
    loadYamlFile(file).some((o) => (o as K8sObject).kind === 'Secret'),
  )
  t.strictSame(
    secretFiles.map((f) => relative(k8s, f)),
    ['secret.example.yaml'],
    'the only Secret manifest is the example',
  )
  const example = loadYamlFile(join(k8s, 'secret.example.yaml'))[0] as K8sObject & {
    stringData: Record<string, string>
  }
  t.equal(example.metadata.name, API_SECRET)
  t.strictSame(await validateObject(example), [], 'the example is a valid Secret')
  t.ok('API_KEYS' in example.stringData && 'ADMIN_API_KEYS' in example.stringData)
  for (const file of kustomizationFiles) {
    t.notMatch(readFileSync(file, 'utf8'), /secret\.example/, `${relative(k8s, file)}`)
  }
  t.match(readFileSync(join(k8s, 'README.md'), 'utf8'), /kubectl .*create secret generic/)
})

t.test(
  'api and worker get SECRETS_KEY from the Secret, required; the previous key optional',
  async (t) => {
    for (const [target, objects] of rendered) {
      for (const name of ['api', 'worker']) {
        const c = container(workload(objects, name))
        const ref = (key: string) => c.env?.find((e) => e.name === key)?.valueFrom?.secretKeyRef
        t.strictSame(
          ref('SECRETS_KEY'),
          { name: API_SECRET, key: 'SECRETS_KEY' },
          `${target} ${name}: SECRETS_KEY from the Secret, not optional`,
        )
        t.strictSame(
          ref('SECRETS_KEY_PREVIOUS'),
          { name: API_SECRET, key: 'SECRETS_KEY_PREVIOUS', optional: true },
          `${target} ${name}: SECRETS_KEY_PREVIOUS from the Secret when it is there`,
        )
        t.equal(
          environment(objects, c).SECRETS_KEY,
          undefined,
          `${target} ${name}: never a literal`,
        )
      }
    }
    const example = loadYamlFile(join(k8s, 'secret.example.yaml'))[0] as K8sObject & {
      stringData: Record<string, string>
    }
    t.ok('SECRETS_KEY' in example.stringData, 'the example Secret has the key')
  },
)

t.test("the walkthrough's Secret holds only settings the services read", async (t) => {
  const readme = readFileSync(join(k8s, 'README.md'), 'utf8')
  // The command that creates the services' Secret, through its continuation lines.
  const command = new RegExp(`create secret generic ${API_SECRET}(?:[^\\n]*\\\\\\n)*[^\\n]*`).exec(
    readme,
  )?.[0]
  t.ok(command, 'the walkthrough creates the Secret')
  const keys = [...String(command).matchAll(/--from-literal=([A-Z_][A-Z0-9_]*)=/g)].map((m) => m[1])
  t.ok(keys.length >= 3, `keys: ${keys.join(', ')}`)
  const known = new Set([
    ...Object.keys(ApiEnvSchema.properties),
    ...Object.keys(WorkerEnvSchema.properties),
  ])
  for (const key of keys)
    t.ok(known.has(key as string), `${key} is a setting of the api or the worker`)
  t.ok(keys.includes('CONFLUENCE_TOKEN'), 'the default Confluence token is among them')
  t.ok(keys.includes('SECRETS_KEY'), 'the key of source credentials is among them')
})

t.test('LanceDB: RWX volume, or RWO with the pods co-located', async (t) => {
  for (const target of ['base', 'overlays/dev', 'overlays/staging', 'overlays/production']) {
    const objects = render(target)
    const pvc = find<K8sObject & IPersistentVolumeClaim>(
      objects,
      'PersistentVolumeClaim',
      'lancedb',
    )
    const modes = pvc.spec?.accessModes ?? []
    const users = ['api', 'worker'].map((name) => workload(objects, name))
    for (const w of users) {
      const c = container(w)
      const mount = c.volumeMounts?.find((m) => m.mountPath === LANCEDB_PATH)
      const volume = w.spec.template.spec.volumes?.find((v) => v.name === mount?.name)
      t.equal(volume?.persistentVolumeClaim?.claimName, 'lancedb', `${target} ${w.metadata.name}`)
      t.equal(environment(objects, c).LANCEDB_URI, LANCEDB_PATH, `${target}: URI = mount path`)
      const readOnly = w.metadata.name === 'api'
      t.equal(mount?.readOnly ?? false, readOnly, `${target} ${w.metadata.name}: readOnly`)
    }
    if (modes.includes('ReadWriteMany')) continue
    t.strictSame(modes, ['ReadWriteOnce'], `${target}: RWO otherwise`)
    // Every pod mounting the RWO volume must land on the node of the worker pods.
    const worker = podOf(workload(objects, 'worker'))
    for (const w of users) {
      t.ok(
        colocatedWith(w, worker.labels),
        `${target} ${w.metadata.name}: co-located with the worker`,
      )
    }
  }
})

t.test('s3 variant: LanceDB on object storage, no volume', async (t) => {
  const objects = render('overlays/s3')
  t.notOk(has(objects, 'PersistentVolumeClaim', 'lancedb'), 'no lancedb PVC')
  for (const name of ['api', 'worker']) {
    const w = workload(objects, name)
    const c = container(w)
    t.notOk(
      c.volumeMounts?.some((m) => m.mountPath === LANCEDB_PATH),
      `${name}: no mount at ${LANCEDB_PATH}`,
    )
    t.notOk(
      w.spec.template.spec.volumes?.some((v) => v.persistentVolumeClaim?.claimName === 'lancedb'),
      `${name}: no lancedb volume`,
    )
    t.ok(
      c.volumeMounts?.some((m) => m.mountPath === '/tmp'),
      `${name}: keeps /tmp`,
    )
    t.match(environment(objects, c).LANCEDB_URI, /^s3:\/\/[^/]+\/.+/, `${name}: s3:// URI`)
    for (const key of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY']) {
      const ref = c.env?.find((e) => e.name === key)?.valueFrom?.secretKeyRef
      t.strictSame(ref, { name: 'confluence-bot-s3', key }, `${name}: ${key} from a Secret`)
    }
    // LanceDB reads the region from the environment; S3-compatible stores need one as well.
    t.ok(environment(objects, c).AWS_REGION, `${name}: AWS_REGION set`)
  }
  // The credentials only ever come from that Secret, which is created out of band: neither the
  // ConfigMap nor any rendered object carries them.
  const config = find(objects, 'ConfigMap', 'confluence-bot-config').data ?? {}
  t.strictSame(
    Object.keys(config).filter((key) => /SECRET|ACCESS_KEY|SESSION_TOKEN/.test(key)),
    [],
    'no credentials in the ConfigMap',
  )
  t.notOk(has(objects, 'Secret', 'confluence-bot-s3'), 'the S3 Secret is not in the manifests')
  // Otherwise production: same policies, ingress and scale.
  const production = render('overlays/production')
  for (const [kind, added] of [
    ['NetworkPolicy', 1],
    ['Ingress', 0],
  ] as const) {
    t.equal(
      objects.filter((o) => o.kind === kind).length,
      production.filter((o) => o.kind === kind).length + added,
      `${kind} as in production (+ the api's egress to the bucket)`,
    )
  }
  t.equal(workload(objects, 'api').spec.replicas, workload(production, 'api').spec.replicas)
})

t.test('production: NetworkPolicies let only api and worker reach Ollama and Redis', async (t) => {
  for (const target of ['overlays/dev', 'overlays/staging', 'overlays/production', 'overlays/s3']) {
    const objects = render(target)
    const policies = objects.filter((o) => o.kind === 'NetworkPolicy') as (K8sObject &
      INetworkPolicy)[]
    // s3 adds a policy of its own: the api's HTTPS to the bucket (network-policies.test.ts).
    const extra = target === 'overlays/s3' ? ['api-object-storage'] : []
    t.strictSame(
      policies.map((p) => p.metadata.name).sort(),
      ['api', 'ollama', 'redis', 'worker', ...extra].sort(),
    )
    const [api, worker, ollama, redis] = ['api', 'worker', 'ollama', 'redis'].map((name) =>
      podOf(workload(objects, name)),
    ) as [Pod, Pod, Pod, Pod]
    const stranger: Pod = { labels: { 'app.kubernetes.io/name': 'debug' }, ports: {} }
    const sameApp: Pod = { labels: { [PART_OF]: 'confluence-bot' }, ports: {} }
    const allowed = (from: Pod | 'outside', to: Pod, port: number) =>
      ingressAllowed(policies, from, to, port)

    t.ok(allowed(api, ollama, 11434), `${target}: api → ollama`)
    t.ok(allowed(worker, ollama, 11434), `${target}: worker → ollama`)
    for (const [label, from] of [
      ['redis', redis],
      ['another pod', stranger],
      ['a pod with only part-of', sameApp],
      ['outside', 'outside'],
    ] as const) {
      t.notOk(allowed(from, ollama, 11434), `${target}: ${label} ↛ ollama`)
      t.notOk(allowed(from, redis, 6379), `${target}: ${label} ↛ redis`)
    }
    t.ok(allowed(api, redis, 6379), `${target}: api → redis`)
    t.ok(allowed(worker, redis, 6379), `${target}: worker → redis`)
    t.notOk(allowed(api, ollama, 22), `${target}: only the Ollama port`)
    // The api: from the ingress controller's namespace only.
    const controller: Pod = {
      labels: { 'app.kubernetes.io/name': 'ingress-nginx' },
      ports: {},
      namespace: { 'kubernetes.io/metadata.name': 'ingress-nginx' },
    }
    t.ok(allowed(controller, api, 3000), `${target}: ingress controller → api:3000`)
    t.notOk(allowed('outside', api, 3000), `${target}: another namespace ↛ api:3000`)
    t.notOk(allowed(stranger, api, 3000), `${target}: another pod of the namespace ↛ api:3000`)
    t.notOk(allowed(controller, api, 9229), `${target}: nothing else on the api pods`)
    t.notOk(allowed('outside', worker, 3000), `${target}: worker takes no traffic`)
  }
})

t.test('production: cert-manager Ingress that does not buffer streams', async (t) => {
  const hosts: Record<string, string> = {
    'overlays/staging': 'confluence-bot.staging.example.com',
    'overlays/production': 'confluence-bot.example.com',
    'overlays/s3': 'confluence-bot.example.com',
  }
  for (const [target, host] of Object.entries(hosts)) {
    const objects = render(target)
    const ingress = find<K8sObject & IIngress>(objects, 'Ingress', 'api')
    const annotations = ingress.metadata.annotations ?? {}
    t.match(annotations['cert-manager.io/cluster-issuer'], /^letsencrypt/, `${target}: issuer`)
    t.equal(annotations['nginx.ingress.kubernetes.io/proxy-buffering'], 'off')
    t.ok(Number(annotations['nginx.ingress.kubernetes.io/proxy-read-timeout']) >= 3600)
    t.ok(Number(annotations['nginx.ingress.kubernetes.io/proxy-send-timeout']) >= 3600)
    t.strictSame(ingress.spec?.tls?.[0]?.hosts, [host], `${target}: TLS for ${host}`)
    t.ok(ingress.spec?.tls?.[0]?.secretName, `${target}: certificate secret named`)
    const rule = ingress.spec?.rules?.[0]
    t.equal(rule?.host, host)
    const backend = rule?.http?.paths[0]?.backend.service
    const service = find<K8sObject & IService>(objects, 'Service', backend?.name ?? '')
    t.ok(
      service.spec?.ports?.some((p) => p.name === backend?.port?.name),
      `${target}: backend port exists on the Service`,
    )
  }
  for (const target of ['base', 'overlays/dev']) {
    t.notOk(has(render(target), 'Ingress', 'api'), `${target}: no Ingress`)
  }
  t.notOk(
    render('base').some((o) => o.kind === 'NetworkPolicy'),
    'base: no NetworkPolicy (dev and the others add them)',
  )
})

t.test('overlays set namespace, images and replicas, and only patch the base', async (t) => {
  const expected: Record<string, { namespace: string; api: number; worker: number }> = {
    dev: { namespace: 'confluence-bot-dev', api: 1, worker: 1 },
    staging: { namespace: 'confluence-bot-staging', api: 2, worker: 1 },
    production: { namespace: 'confluence-bot', api: 3, worker: 2 },
    s3: { namespace: 'confluence-bot', api: 3, worker: 2 },
    airgap: { namespace: 'confluence-bot', api: 3, worker: 2 },
  }
  for (const overlay of OVERLAYS) {
    const want = expected[overlay] as (typeof expected)[string]
    const objects = render(`overlays/${overlay}`)
    t.strictSame(
      objects.filter((o) => o.kind === 'Namespace').map((o) => o.metadata.name),
      [want.namespace],
      `${overlay}: creates its namespace`,
    )
    for (const o of objects) {
      if (o.kind === 'Namespace') continue
      t.equal(o.metadata.namespace, want.namespace, `${overlay}: ${o.kind}/${o.metadata.name}`)
    }
    t.equal(workload(objects, 'api').spec.replicas, want.api, `${overlay}: api replicas`)
    t.equal(workload(objects, 'worker').spec.replicas, want.worker, `${overlay}: worker replicas`)
    for (const w of workloads(objects)) {
      for (const c of allContainers(w)) {
        const image = splitImage(c.image ?? '')
        t.ok(image.tag && image.tag !== 'latest', `${overlay}: ${c.image} has a pinned tag`)
      }
    }
    for (const name of ['api', 'worker']) {
      const image = splitImage(container(workload(objects, name)).image ?? '')
      t.match(image.name, new RegExp(`/confluence-bot.*${name}$`), `${overlay}: ${name} image`)
    }
  }
  // Overlays hold a kustomization, their Namespace and patches; no copied base YAML.
  for (const overlay of OVERLAYS) {
    const dir = join(k8s, 'overlays', overlay)
    const k = loadYamlFile(join(dir, 'kustomization.yaml'))[0] as {
      resources?: string[]
      patches?: { path: string }[]
    }
    const patches = (k.patches ?? []).map((p) => p.path)
    const local = (k.resources ?? []).filter((r) => !r.startsWith('..'))
    // New objects: the Namespace, and NetworkPolicies that open more for this overlay (policies
    // add up, so opening needs no copy of the base's).
    for (const file of local) {
      const kinds = loadYamlFile(join(dir, file)).map((o) => o.kind)
      t.ok(
        kinds.length === 1 && ['Namespace', 'NetworkPolicy'].includes(kinds[0] as string),
        `${overlay}/${file}: only a Namespace or a NetworkPolicy is new (${kinds})`,
      )
    }
    const files = readdirSync(dir).filter((f) => f !== 'kustomization.yaml')
    t.strictSame(files.sort(), [...local, ...patches].sort(), `${overlay}: no stray files`)
  }
})

// kubectl bundles kustomize; where it is installed, the offline renderer must agree with it.
const noKubectl = 'kubectl is not installed; the renderer is not compared'

// The renderer's semantics on small fixtures, as `kubectl kustomize` (kustomize v5) renders them.
function fixture(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'kustomize-'))
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(join(dir, name, '..'), { recursive: true })
    writeFileSync(join(dir, name), text)
  }
  return dir
}

t.test('renderer: strategic merge, components, images, refusals', async (t) => {
  const dir = fixture({
    'base/kustomization.yaml': 'resources: [d.yaml, pvc.yaml]\n',
    'base/d.yaml': `apiVersion: apps/v1
kind: Deployment
metadata: {name: x, labels: {keep: me, drop: me}}
spec:
  selector: {matchLabels: {app: x}}
  template:
    metadata: {labels: {app: x}}
    spec:
      containers:
        - {name: a, image: localhost:5000/team/app, env: [{name: A, value: "1"}, {name: B, value: "2"}, {name: C, value: "3"}]}
        - {name: b, image: "redis:7@sha256:abc"}
      volumes: [{name: v1, emptyDir: {}}, {name: v2, emptyDir: {}}]
      tolerations: [{key: k1, operator: Exists}]
`,
    'base/pvc.yaml':
      'apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: gone}\nspec: {}\n',
    'component/kustomization.yaml': `apiVersion: kustomize.config.k8s.io/v1alpha1
kind: Component
patches: [{path: delete.yaml}]
`,
    'component/delete.yaml':
      '$patch: delete\napiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: gone}\n',
    'overlay/kustomization.yaml': `resources: [../base]
components: [../component]
namespace: ns
labels: [{pairs: {team: t}, includeSelectors: false, includeTemplates: true}]
replicas: [{name: x, count: 4}]
images:
  - {name: localhost:5000/team/app, newName: registry.example.com/app, newTag: "1.2"}
  - {name: redis, newTag: "7.4"}
patches: [{path: patch.yaml}]
`,
    'overlay/patch.yaml': `apiVersion: apps/v1
kind: Deployment
metadata: {name: x, labels: {drop: null}}
spec:
  template:
    spec:
      containers:
        - {name: c, image: k}
        - {name: a, env: [{name: Z, value: "9"}, {name: B, value: "20"}, {name: "Y", value: "8"}]}
      volumes: [{name: v3, emptyDir: {}}, {name: v1, $patch: delete}]
      tolerations: [{key: k2, operator: Exists}]
`,
  })
  try {
    const objects = build(join(dir, 'overlay'))
    const expected = [
      {
        apiVersion: 'apps/v1',
        kind: 'Deployment',
        metadata: { name: 'x', namespace: 'ns', labels: { keep: 'me', team: 't' } },
        spec: {
          replicas: 4,
          selector: { matchLabels: { app: 'x' } },
          template: {
            metadata: { labels: { app: 'x', team: 't' } },
            spec: {
              containers: [
                { name: 'c', image: 'k' },
                {
                  name: 'a',
                  image: 'registry.example.com/app:1.2',
                  env: [
                    { name: 'Z', value: '9' },
                    { name: 'B', value: '20' },
                    { name: 'Y', value: '8' },
                    { name: 'A', value: '1' },
                    { name: 'C', value: '3' },
                  ],
                },
                { name: 'b', image: 'redis:7.4' }, // a new tag replaces the digest
              ],
              volumes: [
                { name: 'v3', emptyDir: {} },
                { name: 'v2', emptyDir: {} },
              ],
              tolerations: [{ key: 'k2', operator: 'Exists' }],
            },
          },
        },
      },
    ]
    t.strictSame(objects, expected, 'merge keys, patch order, deletes, replaced lists')
    if (hasKubectl) {
      const theirs = await kubectlKustomize(join(dir, 'overlay'))
      t.strictSame(theirs, expected, 'kubectl kustomize agrees')
    }

    writeFileSync(
      join(dir, 'overlay/kustomization.yaml'),
      'resources: [../base]\ncommonLabels: {a: b}\n',
    )
    t.throws(() => build(join(dir, 'overlay')), /unsupported field "commonLabels"/)
    writeFileSync(
      join(dir, 'overlay/kustomization.yaml'),
      'resources: [../base]\nlabels: [{pairs: {a: b}}]\n',
    )
    t.throws(() => build(join(dir, 'overlay')), /includeSelectors: false/)
    writeFileSync(
      join(dir, 'overlay/kustomization.yaml'),
      'resources: [../base]\npatches: [{path: patch.yaml}]\n',
    )
    writeFileSync(
      join(dir, 'overlay/patch.yaml'),
      'apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: nope}\n',
    )
    t.throws(() => build(join(dir, 'overlay')), /0 targets/)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
  t.strictSame(splitImage('localhost:5000/team/app'), { name: 'localhost:5000/team/app' })
  t.strictSame(splitImage('redis:7.4@sha256:abc'), {
    name: 'redis',
    tag: '7.4',
    digest: 'sha256:abc',
  })
})

t.test(
  'the renderer matches kubectl kustomize',
  { skip: hasKubectl ? false : noKubectl },
  async (t) => {
    const key = (o: K8sObject) => `${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`
    const byKey = (list: K8sObject[]) => Object.fromEntries(list.map((o) => [key(o), o]))
    const outputs = await Promise.all(TARGETS.map((target) => kubectlKustomize(join(k8s, target))))
    TARGETS.forEach((target, i) => {
      const theirs = outputs[i] ?? []
      t.strictSame(byKey(render(target)), byKey(theirs), `${target}: same objects`)
    })
  },
)
