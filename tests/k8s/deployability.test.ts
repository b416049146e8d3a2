import { join, resolve } from 'node:path'
import { loadApiConfig } from '@confluence-bot/shared'
import type { IPersistentVolumeClaim } from 'kubernetes-models/v1'
import t from 'tap'
import { container, find, podOf, quantity, selects, workload } from './kube.ts'
import { build, type K8sObject } from './render.ts'

// Invariants an operator relies on when applying an overlay to a real cluster (issue 14): storage
// the cluster can provide, an ingress that lets uploads through, requests that fit a node,
// a password on Redis, egress limits, pinned images.

const root = resolve(import.meta.dirname, '../..')
const k8s = join(root, 'k8s')
const OVERLAYS = ['dev', 'staging', 'production', 's3']
const rendered = new Map(OVERLAYS.map((o) => [o, build(join(k8s, 'overlays', o))]))
const render = (overlay: string) => rendered.get(overlay) as K8sObject[]
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
    const terms =
      w.spec.template.spec.affinity?.podAffinity?.requiredDuringSchedulingIgnoredDuringExecution
    t.ok(
      terms?.some(
        (term) =>
          term.topologyKey === 'kubernetes.io/hostname' &&
          selects(term.labelSelector ?? {}, worker.labels),
      ),
      `${name}: co-located with the worker`,
    )
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
    const config = find(objects, 'ConfigMap', 'confluence-bot-config').data ?? {}
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
