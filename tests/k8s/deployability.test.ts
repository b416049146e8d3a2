import { join, resolve } from 'node:path'
import type { IPersistentVolumeClaim } from 'kubernetes-models/v1'
import t from 'tap'
import { container, podOf, selects, workload } from './kube.ts'
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
