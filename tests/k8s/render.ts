import { execFile, spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { basename, join, relative, resolve } from 'node:path'
import { promisify } from 'node:util'
import { parseAllDocuments } from 'yaml'

// A small, offline `kustomize build` for the tests: kubectl/kustomize are not installed on every
// machine and cannot be downloaded. It implements exactly the features k8s/ uses and throws on
// any other field, so a kustomization that grows a feature fails loudly here instead of being
// rendered wrongly. When kubectl is installed, manifests.test.ts checks that this renderer and
// `kubectl kustomize` produce the same objects.
//
// Supported: resources (files and directories), components (kind: Component), patches (strategic
// merge, `path:` only, target taken from the patch's kind + name), namespace, labels (pairs with
// includeSelectors: false, optional includeTemplates), replicas, images, and configMapGenerator
// with `files:` only and disableNameSuffixHash (no hash suffix to compute or references to rename),
// and replacements selected by kind + name, on field paths of keys and `[name=x]` list items.

export type K8sObject = {
  apiVersion: string
  kind: string
  metadata: {
    name: string
    namespace?: string
    labels?: Record<string, string>
    annotations?: Record<string, string>
  }
  [field: string]: unknown
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json }
type JsonObject = { [key: string]: Json }

type Kustomization = {
  kind?: 'Kustomization' | 'Component'
  resources?: string[]
  components?: string[]
  patches?: { path: string }[]
  namespace?: string
  labels?: {
    pairs: Record<string, string>
    includeSelectors?: boolean
    includeTemplates?: boolean
  }[]
  replicas?: { name: string; count: number }[]
  images?: { name: string; newName?: string; newTag?: string; digest?: string }[]
  configMapGenerator?: { name: string; files: string[] }[]
  generatorOptions?: { disableNameSuffixHash: boolean }
  replacements?: Replacement[]
}

type Selector = { kind: string; name: string }
type Replacement = {
  source: Selector & { fieldPath: string }
  targets: { select: Selector; fieldPaths: string[] }[]
}

const KNOWN_FIELDS = new Set([
  'apiVersion',
  'kind',
  'resources',
  'components',
  'patches',
  'namespace',
  'labels',
  'replicas',
  'images',
  'configMapGenerator',
  'generatorOptions',
  'replacements',
])

const CLUSTER_SCOPED = new Set([
  'Namespace',
  'ClusterRole',
  'ClusterRoleBinding',
  'CustomResourceDefinition',
  'PersistentVolume',
  'StorageClass',
  'IngressClass',
  'PriorityClass',
])

const POD_TEMPLATE_KINDS = new Set(['Deployment', 'StatefulSet', 'DaemonSet', 'ReplicaSet', 'Job'])
const SCALABLE_KINDS = new Set(['Deployment', 'StatefulSet', 'ReplicaSet'])

// Strategic-merge keys of the lists k8s/ patches (from the Kubernetes API's patchMergeKey).
// Any other list is replaced by the patch's list, as strategic merge does.
const MERGE_KEYS: Record<string, string> = {
  containers: 'name',
  initContainers: 'name',
  env: 'name',
  volumes: 'name',
  volumeMounts: 'mountPath',
  imagePullSecrets: 'name',
}

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

const idOf = (o: K8sObject) => `${o.kind}/${o.metadata.namespace ?? '~'}/${o.metadata.name}`

export function loadYamlFile(file: string): K8sObject[] {
  const objects: K8sObject[] = []
  for (const doc of parseAllDocuments(readFileSync(file, 'utf8'))) {
    if (doc.errors.length > 0) throw new Error(`${file}: ${doc.errors[0]?.message}`)
    const value = doc.toJS() as unknown
    if (value === null || value === undefined) continue
    if (!isObject(value)) throw new Error(`${file}: a document is not a mapping`)
    objects.push(value as unknown as K8sObject)
  }
  return objects
}

function loadObjects(file: string): K8sObject[] {
  const objects = loadYamlFile(file)
  for (const o of objects) {
    if (!o.apiVersion || !o.kind || !o.metadata?.name) {
      throw new Error(`${file}: every object needs apiVersion, kind and metadata.name`)
    }
  }
  return objects
}

function loadKustomization(dir: string): Kustomization {
  const file = join(dir, 'kustomization.yaml')
  if (!existsSync(file)) throw new Error(`${dir}: no kustomization.yaml`)
  const [k, ...rest] = loadYamlFile(file) as unknown as Kustomization[]
  if (!k || rest.length > 0) throw new Error(`${file}: expected exactly one document`)
  for (const field of Object.keys(k)) {
    if (!KNOWN_FIELDS.has(field)) throw new Error(`${file}: unsupported field "${field}"`)
  }
  return k
}

/**
 * A kustomization in a temp directory (removed when the test ends) that builds on
 * `k8s/overlays/<overlay>`, as an operator's own overlay would: with the given components of
 * k8s/, then `extra` (more kustomization YAML, e.g. patches). Returns its directory.
 */
export function overlayOnTop(
  t: { teardown(fn: () => unknown): void },
  overlay: string,
  components: string[] = [],
  extra = '',
): string {
  const k8s = resolve(import.meta.dirname, '../../k8s')
  const dir = mkdtempSync(join(tmpdir(), `on-${overlay}-`))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const lines = [
    'apiVersion: kustomize.config.k8s.io/v1beta1',
    'kind: Kustomization',
    'resources:',
    `  - ${relative(dir, join(k8s, 'overlays', overlay))}`,
    ...(components.length > 0 ? ['components:'] : []),
    ...components.map((c) => `  - ${relative(dir, join(k8s, 'components', c))}`),
    extra,
  ]
  writeFileSync(join(dir, 'kustomization.yaml'), lines.join('\n'))
  return dir
}

/** Whether `kubectl` is installed here: its built-in kustomize is the reference this follows. */
export const hasKubectl =
  spawnSync('kubectl', ['version', '--client'], { encoding: 'utf8' }).status === 0

/** `kubectl kustomize dir`, parsed: what a cluster would be given. */
export async function kubectlKustomize(dir: string): Promise<K8sObject[]> {
  const { stdout } = await promisify(execFile)('kubectl', ['kustomize', dir], { timeout: 30_000 })
  return parseAllDocuments(stdout).map((d) => d.toJS() as K8sObject)
}

/** Renders a kustomization directory (base or overlay) to its list of objects. */
export function build(dir: string): K8sObject[] {
  return buildKustomization(resolve(dir), 'Kustomization')
}

function buildKustomization(dir: string, expected: 'Kustomization' | 'Component'): K8sObject[] {
  const k = loadKustomization(dir)
  const kind = k.kind ?? 'Kustomization'
  if (kind !== expected) throw new Error(`${dir}: expected a ${expected}, found ${kind}`)
  return transform(k, dir, accumulate(k, dir, []))
}

function accumulate(k: Kustomization, dir: string, initial: K8sObject[]): K8sObject[] {
  let objects = [...initial]
  for (const entry of k.resources ?? []) {
    const path = resolve(dir, entry)
    const loaded = statSync(path).isDirectory()
      ? buildKustomization(path, 'Kustomization')
      : loadObjects(path)
    objects.push(...loaded)
  }
  objects.push(...generated(k, dir))
  const seen = new Set<string>()
  for (const o of objects) {
    const id = idOf(o)
    if (seen.has(id)) throw new Error(`${dir}: ${id} is defined twice`)
    seen.add(id)
  }
  for (const entry of k.components ?? []) {
    const path = resolve(dir, entry)
    const component = loadKustomization(path)
    if (component.kind !== 'Component') throw new Error(`${path}: not a kind: Component`)
    objects = transform(component, path, accumulate(component, path, objects))
  }
  return objects
}

// ConfigMaps from files, as kustomize writes them: one data key per file, named by its basename.
function generated(k: Kustomization, dir: string): K8sObject[] {
  const generators = k.configMapGenerator ?? []
  if (generators.length > 0 && k.generatorOptions?.disableNameSuffixHash !== true) {
    throw new Error(`${dir}: configMapGenerator needs generatorOptions.disableNameSuffixHash`)
  }
  return generators.map(({ name, files, ...rest }) => {
    if (Object.keys(rest).length > 0 || !Array.isArray(files)) {
      throw new Error(`${dir}: configMapGenerator ${name}: only \`files:\` is supported`)
    }
    const data = Object.fromEntries(
      files.map((file) => [basename(file), readFileSync(resolve(dir, file), 'utf8')]),
    )
    return { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name }, data }
  })
}

// Same order as kustomize's built-in transformers: patches, namespace, labels, replicas, images.
function transform(k: Kustomization, dir: string, input: K8sObject[]): K8sObject[] {
  let objects = input.map((o) => structuredClone(o))
  for (const patch of k.patches ?? []) {
    if (Object.keys(patch).join() !== 'path') {
      throw new Error(`${dir}: only \`patches: - path: FILE\` is supported`)
    }
    for (const doc of loadObjects(resolve(dir, patch.path))) objects = applyPatch(objects, doc)
  }
  if (k.namespace !== undefined) {
    for (const o of objects) {
      if (!CLUSTER_SCOPED.has(o.kind)) o.metadata.namespace = k.namespace
    }
  }
  for (const label of k.labels ?? []) {
    if (label.includeSelectors !== false) {
      throw new Error(`${dir}: labels must set includeSelectors: false (selectors are immutable)`)
    }
    for (const o of objects) {
      o.metadata.labels = { ...o.metadata.labels, ...label.pairs }
      if (!label.includeTemplates) continue
      const spec = o.spec as JsonObject | undefined
      if (POD_TEMPLATE_KINDS.has(o.kind) && isObject(spec?.template)) {
        addLabels(spec.template, label.pairs)
      }
      if (o.kind === 'StatefulSet' && Array.isArray(spec?.volumeClaimTemplates)) {
        for (const claim of spec.volumeClaimTemplates) {
          if (isObject(claim)) addLabels(claim, label.pairs)
        }
      }
    }
  }
  for (const { name, count } of k.replicas ?? []) {
    const targets = objects.filter((o) => SCALABLE_KINDS.has(o.kind) && o.metadata.name === name)
    if (targets.length === 0) throw new Error(`${dir}: replicas: nothing named ${name}`)
    for (const o of targets) (o.spec as JsonObject).replicas = count
  }
  for (const image of k.images ?? []) {
    for (const o of objects) {
      for (const container of containersOf(o)) {
        if (typeof container.image === 'string') {
          container.image = setImage(container.image, image)
        }
      }
    }
  }
  for (const { source, targets, ...rest } of k.replacements ?? []) {
    const { fieldPath, ...selector } = source
    if (Object.keys(rest).length > 0) throw new Error(`${dir}: replacements: only source, targets`)
    const value = field(selected(objects, selector, dir), fieldPath)
    if (value === undefined) throw new Error(`${dir}: replacements: nothing at ${fieldPath}`)
    for (const { select, fieldPaths } of targets) {
      for (const path of fieldPaths) field(selected(objects, select, dir), path, value)
    }
  }
  return objects
}

function selected(objects: K8sObject[], { kind, name }: Selector, dir: string): JsonObject {
  const found = objects.filter((o) => o.kind === kind && o.metadata.name === name)
  if (found.length !== 1) throw new Error(`${dir}: replacements: ${found.length} ${kind}/${name}`)
  return found[0] as unknown as JsonObject
}

/** Reads (or, given `value`, sets) a field path such as `spec.containers.[name=x].image`. */
function field(o: JsonObject, path: string, value?: Json): Json | undefined {
  const steps = path.split('.')
  let at: Json = o
  for (const [i, step] of steps.entries()) {
    const item = /^\[(\w+)=(.+)\]$/.exec(step)
    const next: Json | undefined = item
      ? (Array.isArray(at) ? at : []).find((x) => isObject(x) && x[item[1] as string] === item[2])
      : isObject(at)
        ? at[step]
        : undefined
    if (next === undefined) throw new Error(`field path ${path}: nothing at ${step}`)
    if (i === steps.length - 1 && value !== undefined) {
      if (item) throw new Error(`field path ${path}: a list item cannot be replaced whole`)
      ;(at as JsonObject)[step] = value
    }
    at = next
  }
  return at
}

function addLabels(o: JsonObject, labels: Record<string, string>): void {
  const metadata = isObject(o.metadata) ? o.metadata : {}
  metadata.labels = { ...(isObject(metadata.labels) ? metadata.labels : {}), ...labels }
  o.metadata = metadata
}

function applyPatch(objects: K8sObject[], patch: K8sObject): K8sObject[] {
  const matches = objects.filter(
    (o) =>
      o.kind === patch.kind &&
      o.metadata.name === patch.metadata.name &&
      (patch.metadata.namespace === undefined || o.metadata.namespace === patch.metadata.namespace),
  )
  if (matches.length !== 1) {
    throw new Error(`patch ${patch.kind}/${patch.metadata.name}: ${matches.length} targets`)
  }
  const [target] = matches as [K8sObject]
  const directive = (patch as JsonObject).$patch
  if (directive === 'delete') return objects.filter((o) => o !== target)
  if (directive !== undefined) throw new Error(`unsupported $patch: ${String(directive)}`)
  const merged = mergeObject(target as unknown as JsonObject, patch as unknown as JsonObject)
  return objects.map((o) => (o === target ? (merged as unknown as K8sObject) : o))
}

/** Strategic merge of two mappings: maps merge, null deletes, lists merge by key or are replaced. */
export function mergeObject(base: JsonObject, patch: JsonObject): JsonObject {
  const out: JsonObject = { ...base }
  for (const [key, value] of Object.entries(patch)) {
    if (key === '$patch') throw new Error(`unsupported $patch directive inside ${key}`)
    const current = out[key]
    if (value === null) delete out[key]
    else if (Array.isArray(value) && Array.isArray(current))
      out[key] = mergeList(key, current, value)
    else if (isObject(value) && isObject(current)) out[key] = mergeObject(current, value)
    else out[key] = stripDirectives(value)
  }
  return out
}

function mergeList(field: string, base: Json[], patch: Json[]): Json[] {
  const key = MERGE_KEYS[field]
  if (!key) return stripDirectives(patch) as Json[]
  const keyOf = (item: Json) => {
    if (!isObject(item) || item[key] === undefined) {
      throw new Error(`list ${field}: every item needs its merge key ${key}`)
    }
    return item[key]
  }
  // Like kustomize: the patch's items first (merged with their original), in patch order, then
  // the untouched originals in their order; `$patch: delete` items remove their original.
  const touched = new Set<Json>()
  const head: Json[] = []
  for (const item of patch) {
    const k = keyOf(item)
    touched.add(k)
    const original = base.find((b) => keyOf(b) === k)
    const { $patch, ...rest } = item as JsonObject
    if ($patch === 'delete') continue
    if ($patch !== undefined) throw new Error(`unsupported $patch in ${field}: ${String($patch)}`)
    head.push(original ? mergeObject(original as JsonObject, rest) : stripDirectives(rest))
  }
  return [...head, ...base.filter((b) => !touched.has(keyOf(b)))]
}

function stripDirectives(value: Json): Json {
  if (Array.isArray(value)) return value.map(stripDirectives)
  if (!isObject(value)) return value
  if ('$patch' in value) throw new Error('a $patch directive with nothing to patch')
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, stripDirectives(v)]))
}

/** Pod spec of a workload (or a Pod), if it has one. */
export function podSpecOf(o: K8sObject): JsonObject | undefined {
  if (o.kind === 'Pod') return o.spec as JsonObject
  const template = (o.spec as JsonObject | undefined)?.template
  if (POD_TEMPLATE_KINDS.has(o.kind) && isObject(template) && isObject(template.spec)) {
    return template.spec
  }
  return undefined
}

function containersOf(o: K8sObject): JsonObject[] {
  const pod = podSpecOf(o)
  if (!pod) return []
  return [
    ...((pod.initContainers as JsonObject[]) ?? []),
    ...((pod.containers as JsonObject[]) ?? []),
  ]
}

/** name[:tag][@digest], where a registry host:port is part of the name. */
export function splitImage(image: string): { name: string; tag?: string; digest?: string } {
  const [rest = '', digest] = image.split('@') as [string, string | undefined]
  const colon = rest.lastIndexOf(':')
  const hasTag = colon > rest.lastIndexOf('/')
  return {
    name: hasTag ? rest.slice(0, colon) : rest,
    ...(hasTag ? { tag: rest.slice(colon + 1) } : {}),
    ...(digest ? { digest } : {}),
  }
}

function setImage(image: string, rule: NonNullable<Kustomization['images']>[number]): string {
  const current = splitImage(image)
  if (current.name !== rule.name) return image
  const name = rule.newName ?? current.name
  if (rule.digest) return `${name}@${rule.digest}`
  const tag = rule.newTag ?? current.tag
  return `${name}${tag ? `:${tag}` : ''}${current.digest && !rule.newTag ? `@${current.digest}` : ''}`
}
