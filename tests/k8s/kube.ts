import { existsSync, readFileSync, realpathSync } from 'node:fs'
import { basename, dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { IStatefulSet } from 'kubernetes-models/apps/v1/StatefulSet'
import type { INetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy'
import type { IConfigMap, IContainer, IPodSpec, IPodTemplateSpec } from 'kubernetes-models/v1'
import type { K8sObject } from './render.ts'

// What Kubernetes would make of rendered objects, for the tests: schema validation, typed views,
// quantities, effective container environment, label selectors and NetworkPolicy ingress rules.

// ---- Schema validation ----------------------------------------------------------------------
//
// Offline, in two parts:
//  1. kubernetes-models: validators compiled from the official OpenAPI definitions (types,
//     required fields, enums, formats such as quantities) — what the API server would reject.
//  2. unknown fields: the OpenAPI schemas allow extra properties, but `kubectl apply` rejects
//     them (strict field validation), and a misspelt field (`readinesProbe`, `fsGroup` on a
//     container) would otherwise be dropped silently. The known fields come from the
//     TypeScript declarations kubernetes-models generates from the same definitions.

type Validatable = { validate(): void }
type ModelClass = new (data: unknown) => Validatable

const modelsDir = dirname(realpathSync(fileURLToPath(import.meta.resolve('kubernetes-models'))))

/** The validation errors of one object; empty when it is valid. */
export async function validateObject(o: K8sObject): Promise<string[]> {
  const where = `${o.kind}/${o.metadata?.name}`
  const group = o.apiVersion // 'v1', 'apps/v1', 'networking.k8s.io/v1', ...
  if (!existsSync(join(modelsDir, group, `${o.kind}.d.ts`))) {
    return [`${where}: no schema for ${o.apiVersion} ${o.kind}`]
  }
  const mod = (await import(`kubernetes-models/${group}/${o.kind}`)) as Record<string, ModelClass>
  const Model = mod[o.kind]
  if (!Model) return [`${where}: kubernetes-models has no class ${o.kind}`]
  const errors: string[] = []
  try {
    new Model(o).validate()
  } catch (err) {
    errors.push(`${where}: ${(err as Error).message}`)
  }
  const declaration = loadDeclaration(join(modelsDir, group, `${o.kind}.d.ts`))
  unknownFields(o, { kind: 'ref', name: `I${o.kind}` }, declaration, '', errors)
  return errors.map((e) => (e.startsWith(where) ? e : `${where}: ${e}`))
}

type TypeExpr =
  | { kind: 'ref'; name: string }
  | { kind: 'array'; of: TypeExpr }
  | { kind: 'map'; of: TypeExpr }
  | { kind: 'object'; props: Map<string, TypeExpr> }
  | { kind: 'leaf' }

type Declaration = {
  /** The file's interface (name and properties), if it declares one. */
  iface?: { name: string; props: Map<string, TypeExpr> }
  /** Imported type name → declaration file it comes from. */
  imports: Map<string, string>
}

const declarations = new Map<string, Declaration>()

function loadDeclaration(file: string): Declaration {
  const cached = declarations.get(file)
  if (cached) return cached
  const text = readFileSync(file, 'utf8')
  const imports = new Map<string, string>()
  for (const m of text.matchAll(/^import \{ ([^}]+) \} from "([^"]+)";$/gm)) {
    const target = resolveImport(file, m[2] as string)
    if (!target) continue
    for (const name of (m[1] as string).split(',')) imports.set(name.trim(), target)
  }
  const decl: Declaration = { imports }
  const head = text.match(/^export interface (\w+)(?: extends [\w, ]+)? /m)
  if (head?.index !== undefined) {
    const parser = new TypeParser(text.slice(head.index + head[0].length))
    const body = parser.type()
    if (body.kind !== 'object') throw new Error(`${file}: cannot read interface ${head[1]}`)
    decl.iface = { name: head[1] as string, props: body.props }
  }
  declarations.set(file, decl)
  return decl
}

/**
 * Reads the subset of TypeScript type syntax the generated declarations use: references,
 * `Array<T>`, `{ [key: string]: T; }` maps, inline `{ "field"?: T; ... }` objects, literal unions
 * and indexed types (the last two only matter as leaves).
 */
class TypeParser {
  private readonly tokens: string[]
  private at = 0

  constructor(text: string) {
    const token = /\s+|\/\*[\s\S]*?\*\/|\/\/[^\n]*|"(?:[^"\\]|\\.)*"|[\w$]+|[^\s]/g
    this.tokens = (text.match(token) ?? []).filter((t) => !/^(\s|\/\*|\/\/)/.test(t))
  }

  private peek(): string | undefined {
    return this.tokens[this.at]
  }

  private take(expected?: string): string {
    const t = this.tokens[this.at++]
    if (t === undefined || (expected !== undefined && t !== expected)) {
      throw new Error(`type parser: expected ${expected ?? 'a token'}, found ${t}`)
    }
    return t
  }

  type(): TypeExpr {
    const first = this.primary()
    if (this.peek() !== '|') return first
    while (this.peek() === '|') {
      this.take('|')
      this.primary()
    }
    return { kind: 'leaf' }
  }

  private primary(): TypeExpr {
    const t = this.take()
    if (t === '{') return this.objectBody()
    if (t === 'Array' && this.peek() === '<') {
      this.take('<')
      const of = this.type()
      this.take('>')
      return { kind: 'array', of }
    }
    let result: TypeExpr = /^[A-Z]\w*$/.test(t) ? { kind: 'ref', name: t } : { kind: 'leaf' }
    while (this.peek() === '[') {
      this.take('[')
      this.take()
      this.take(']')
      result = { kind: 'leaf' }
    }
    return result
  }

  private objectBody(): TypeExpr {
    if (this.peek() === '[') {
      this.take('[')
      this.take('key')
      this.take(':')
      this.take('string')
      this.take(']')
      this.take(':')
      const of = this.type()
      this.take(';')
      this.take('}')
      return { kind: 'map', of }
    }
    const props = new Map<string, TypeExpr>()
    while (this.peek() !== '}') {
      const name = JSON.parse(this.take()) as string
      if (this.peek() === '?') this.take('?')
      this.take(':')
      props.set(name, this.type())
      this.take(';')
    }
    this.take('}')
    return { kind: 'object', props }
  }
}

function resolveImport(from: string, spec: string): string | undefined {
  if (spec.startsWith('.')) return resolve(dirname(from), spec.replace(/\.js$/, '.d.ts'))
  // A package path such as @kubernetes-models/apimachinery/apis/meta/v1/ObjectMeta, found the
  // way Node finds packages: in the node_modules folders above kubernetes-models.
  const parts = spec.split('/')
  const pkg = spec.startsWith('@') ? parts.slice(0, 2).join('/') : (parts[0] as string)
  const sub = parts.slice(pkg.split('/').length).join('/')
  for (let dir = modelsDir; dir !== dirname(dir); dir = dirname(dir)) {
    const root = basename(dir) === 'node_modules' ? dir : join(dir, 'node_modules')
    const file = join(root, pkg, `${sub}.d.ts`)
    if (existsSync(file)) return file
  }
  return undefined
}

function unknownFields(
  value: unknown,
  type: TypeExpr,
  decl: Declaration,
  path: string,
  errors: string[],
): void {
  if (value === null || value === undefined || typeof value !== 'object') return
  const at = (k: string | number) =>
    typeof k === 'number' ? `${path}[${k}]` : path ? `${path}.${k}` : k
  switch (type.kind) {
    case 'array':
      if (Array.isArray(value)) {
        value.forEach((v, i) => {
          unknownFields(v, type.of, decl, at(i), errors)
        })
      }
      return
    case 'map':
      for (const [k, v] of Object.entries(value)) unknownFields(v, type.of, decl, at(k), errors)
      return
    case 'object':
      if (Array.isArray(value)) return
      for (const [k, v] of Object.entries(value)) {
        const prop = type.props.get(k)
        if (prop === undefined) errors.push(`${at(k)}: unknown field`)
        else unknownFields(v, prop, decl, at(k), errors)
      }
      return
    case 'ref': {
      const target = decl.iface?.name === type.name ? decl : lookup(decl, type.name)
      if (target?.iface) {
        unknownFields(value, { kind: 'object', props: target.iface.props }, target, path, errors)
      }
      return
    }
    case 'leaf':
      return
  }
}

function lookup(decl: Declaration, type: string): Declaration | undefined {
  const file = decl.imports.get(type)
  return file ? loadDeclaration(file) : undefined
}

// ---- Typed views and semantics -------------------------------------------------------------

export type Workload = K8sObject & {
  spec: {
    replicas?: number
    selector: { matchLabels?: Record<string, string> }
    template: IPodTemplateSpec & { spec: IPodSpec; metadata: { labels: Record<string, string> } }
    strategy?: {
      type?: string
      rollingUpdate?: { maxUnavailable?: number | string; maxSurge?: number | string }
    }
    volumeClaimTemplates?: NonNullable<IStatefulSet['spec']>['volumeClaimTemplates']
  }
}

export function find<T extends K8sObject = K8sObject>(
  objects: readonly K8sObject[],
  kind: string,
  name: string,
): T {
  const found = objects.filter((o) => o.kind === kind && o.metadata.name === name)
  if (found.length !== 1) throw new Error(`expected one ${kind}/${name}, found ${found.length}`)
  return found[0] as T
}

export function has(objects: readonly K8sObject[], kind: string, name: string): boolean {
  return objects.some((o) => o.kind === kind && o.metadata.name === name)
}

export const WORKLOAD_KINDS = new Set(['Deployment', 'StatefulSet'])

export function workloads(objects: readonly K8sObject[]): Workload[] {
  return objects.filter((o) => WORKLOAD_KINDS.has(o.kind)) as Workload[]
}

export function workload(objects: readonly K8sObject[], name: string): Workload {
  const found = workloads(objects).filter((w) => w.metadata.name === name)
  if (found.length !== 1) throw new Error(`expected one workload ${name}, found ${found.length}`)
  return found[0] as Workload
}

export function container(w: Workload, name = w.metadata.name): IContainer {
  const c = w.spec.template.spec.containers.find((c) => c.name === name)
  if (!c) throw new Error(`${w.metadata.name} has no container ${name}`)
  return c
}

export function allContainers(w: Workload): IContainer[] {
  return [...(w.spec.template.spec.initContainers ?? []), ...w.spec.template.spec.containers]
}

/** The containerPort a probe/Service port refers to, by number or by name. */
export function resolvePort(c: IContainer, port: number | string | undefined): number | undefined {
  if (typeof port === 'number') return port
  return c.ports?.find((p) => p.name === port)?.containerPort
}

/**
 * Environment the process sees, without Secrets: envFrom ConfigMaps first, then `env` entries
 * (plain values and configMapKeyRef), as the kubelet resolves them.
 */
export function environment(objects: readonly K8sObject[], c: IContainer): Record<string, string> {
  const configMap = (name: string) => find<K8sObject & IConfigMap>(objects, 'ConfigMap', name).data
  const env: Record<string, string> = {}
  for (const source of c.envFrom ?? []) {
    if (source.configMapRef) Object.assign(env, configMap(source.configMapRef.name as string))
  }
  for (const e of c.env ?? []) {
    const ref = e.valueFrom?.configMapKeyRef
    if (e.value !== undefined) env[e.name] = e.value
    else if (ref) {
      const value = configMap(ref.name as string)?.[ref.key]
      if (value !== undefined) env[e.name] = value
    }
  }
  return env
}

const QUANTITY_UNITS: Record<string, number> = {
  m: 1e-3,
  '': 1,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
}

/** A Kubernetes quantity ("500m", "2", "12Gi") as a number (cores or bytes). */
export function quantity(q: string | number | undefined): number {
  if (typeof q === 'number') return q
  const m = /^(\d+(?:\.\d+)?)(m|k|M|G|T|Ki|Mi|Gi|Ti)?$/.exec(q ?? '')
  if (!m) throw new Error(`not a quantity: ${q}`)
  return Number(m[1]) * (QUANTITY_UNITS[m[2] ?? ''] as number)
}

/** A Redis memory size ("768mb", "1gb", "100000") in bytes. */
export function redisBytes(size: string): number {
  const m = /^(\d+)(k|kb|m|mb|g|gb)?$/i.exec(size)
  if (!m) throw new Error(`not a Redis size: ${size}`)
  const units: Record<string, number> = {
    '': 1,
    k: 1e3,
    kb: 1024,
    m: 1e6,
    mb: 1024 ** 2,
    g: 1e9,
    gb: 1024 ** 3,
  }
  return Number(m[1]) * (units[(m[2] ?? '').toLowerCase()] as number)
}

type LabelSelector = {
  matchLabels?: Record<string, string>
  matchExpressions?: { key: string; operator: string; values?: string[] }[]
}

/** Whether a label selector selects a set of labels (an empty selector selects everything). */
export function selects(selector: LabelSelector, labels: Record<string, string>): boolean {
  const byLabels = Object.entries(selector.matchLabels ?? {}).every(([k, v]) => labels[k] === v)
  const byExpressions = (selector.matchExpressions ?? []).every(({ key, operator, values }) => {
    switch (operator) {
      case 'In':
        return key in labels && (values ?? []).includes(labels[key] as string)
      case 'NotIn':
        return !(key in labels) || !(values ?? []).includes(labels[key] as string)
      case 'Exists':
        return key in labels
      case 'DoesNotExist':
        return !(key in labels)
      default:
        throw new Error(`unknown selector operator ${operator}`)
    }
  })
  return byLabels && byExpressions
}

/** Whether a workload's pods must run on the node of pods with these labels (required podAffinity). */
export function colocatedWith(w: Workload, labels: Record<string, string>): boolean {
  const terms =
    w.spec.template.spec.affinity?.podAffinity?.requiredDuringSchedulingIgnoredDuringExecution
  return (terms ?? []).some(
    (term) =>
      term.topologyKey === 'kubernetes.io/hostname' && selects(term.labelSelector ?? {}, labels),
  )
}

/** A pod; `namespace` holds its namespace's labels when it runs in another namespace. */
export type Pod = {
  labels: Record<string, string>
  ports: Record<string, number>
  namespace?: Record<string, string>
  /** Its source address, for ipBlock peers (a pod on hostNetwork has its node's). */
  ip?: string
}

// ---- Addresses -----------------------------------------------------------------------------

/** An IPv4 or IPv6 address as its family and a 32/128-bit number. */
export function parseIp(ip: string): { family: 4 | 6; value: bigint } {
  if (ip.includes(':')) {
    const [head = '', tail] = ip.split('::') as [string, string | undefined]
    const groups = (part: string) => (part === '' ? [] : part.split(':'))
    const left = groups(head)
    const right = tail === undefined ? [] : groups(tail)
    const zeros = tail === undefined ? 0 : 8 - left.length - right.length
    const all = [...left, ...Array(zeros).fill('0'), ...right]
    if (all.length !== 8 || all.some((g) => !/^[0-9a-f]{1,4}$/i.test(g))) {
      throw new Error(`not an IPv6 address: ${ip}`)
    }
    return { family: 6, value: all.reduce((n, g) => (n << 16n) + BigInt(`0x${g}`), 0n) }
  }
  const parts = ip.split('.')
  if (parts.length !== 4 || parts.some((p) => !/^\d{1,3}$/.test(p) || Number(p) > 255)) {
    throw new Error(`not an IPv4 address: ${ip}`)
  }
  return { family: 4, value: parts.reduce((n, p) => (n << 8n) + BigInt(p), 0n) }
}

/** Whether an address lies in a CIDR block of its own family. */
export function inCidr(ip: string, cidr: string): boolean {
  const [base = '', bits = ''] = cidr.split('/')
  const address = parseIp(ip)
  const block = parseIp(base)
  if (address.family !== block.family) return false
  const shift = BigInt((address.family === 4 ? 32 : 128) - Number(bits))
  return address.value >> shift === block.value >> shift
}

type IpBlock = { cidr: string; except?: string[] }
const inBlock = (ip: string, { cidr, except = [] }: IpBlock) =>
  inCidr(ip, cidr) && !except.some((e) => inCidr(ip, e))

/** Where a pod connects to: an address (outside the cluster) or a pod of the namespace. */
export type Destination = {
  ip?: string
  pod?: Record<string, string>
  /** The labels of the pod's namespace, for peers with a namespaceSelector. */
  namespace?: Record<string, string>
  port: number
  protocol?: string
}

/** Whether one policy's egress rules let the pods it selects open a connection to `to`. */
export function egressRuleAllows(policy: INetworkPolicy, to: Destination): boolean {
  return (policy.spec?.egress ?? []).some((rule) => {
    const portOk =
      !rule.ports ||
      rule.ports.length === 0 ||
      rule.ports.some(
        (p) => (p.protocol ?? 'TCP') === (to.protocol ?? 'TCP') && (p.port ?? to.port) === to.port,
      )
    const peerOk =
      !rule.to ||
      rule.to.length === 0 ||
      rule.to.some((peer) => {
        if (peer.ipBlock) return !!to.ip && inBlock(to.ip, peer.ipBlock)
        if (peer.podSelector && !peer.namespaceSelector) {
          return !!to.pod && selects(peer.podSelector, to.pod)
        }
        // Pods of the namespaces selected (a pod selector never matches an outside address).
        if (peer.namespaceSelector) {
          return (
            !!to.pod &&
            selects(peer.podSelector ?? {}, to.pod) &&
            selects(peer.namespaceSelector, to.namespace ?? {})
          )
        }
        throw new Error(`${policy.metadata?.name}: peer kind not modelled by the test`)
      })
    return portOk && peerOk
  })
}

/**
 * NetworkPolicy egress semantics: a pod selected by no Egress policy may connect anywhere;
 * otherwise some rule of some policy selecting it must allow the connection (policies add up).
 */
export function egressAllowed(
  policies: readonly INetworkPolicy[],
  from: Record<string, string>,
  to: Destination,
): boolean {
  const applying = egressPoliciesOf(policies, from)
  return applying.length === 0 || applying.some((p) => egressRuleAllows(p, to))
}

/** The policies that restrict the egress of pods with these labels. */
export function egressPoliciesOf(
  policies: readonly INetworkPolicy[],
  labels: Record<string, string>,
): INetworkPolicy[] {
  return policies.filter(
    (p) =>
      (p.spec?.policyTypes ?? []).includes('Egress') && selects(p.spec?.podSelector ?? {}, labels),
  )
}

export function podOf(w: Workload): Pod {
  const ports: Record<string, number> = {}
  for (const c of w.spec.template.spec.containers) {
    for (const p of c.ports ?? []) if (p.name) ports[p.name] = p.containerPort
  }
  return { labels: w.spec.template.metadata.labels, ports }
}

/**
 * NetworkPolicy ingress semantics for pods of one namespace: a pod selected by no policy accepts
 * everything; a selected pod accepts a connection when some rule of a selecting policy matches
 * both the peer and the port. `from: 'outside'` is a client outside the namespace with no
 * labels the policies name (another team's pod); a Pod with `namespace` is one in another
 * namespace with those labels (the ingress controller's); a Pod with `ip` also matches ipBlock
 * peers (a node, for a controller on hostNetwork). Peers other than ipBlocks, same-namespace
 * podSelectors and bare namespaceSelectors are refused here rather than guessed.
 */
export function ingressAllowed(
  policies: readonly INetworkPolicy[],
  from: Pod | 'outside',
  to: Pod,
  port: number,
): boolean {
  const applying = policies.filter(
    (p) =>
      (p.spec?.policyTypes ?? ['Ingress']).includes('Ingress') &&
      selects(p.spec?.podSelector ?? {}, to.labels),
  )
  if (applying.length === 0) return true
  return applying.some((p) =>
    (p.spec?.ingress ?? []).some((rule) => {
      const peerOk =
        !rule.from ||
        rule.from.length === 0 ||
        rule.from.some((peer) => {
          // A namespaceSelector alone admits every pod of the namespaces it selects.
          if (peer.namespaceSelector && !peer.podSelector && !peer.ipBlock) {
            return (
              from !== 'outside' &&
              !!from.namespace &&
              selects(peer.namespaceSelector, from.namespace)
            )
          }
          if (peer.ipBlock && !peer.namespaceSelector && !peer.podSelector) {
            return from !== 'outside' && !!from.ip && inBlock(from.ip, peer.ipBlock)
          }
          if (peer.namespaceSelector || peer.ipBlock || !peer.podSelector) {
            throw new Error(`${p.metadata?.name}: peer kind not modelled by the test`)
          }
          return from !== 'outside' && !from.namespace && selects(peer.podSelector, from.labels)
        })
      const portOk =
        !rule.ports ||
        rule.ports.length === 0 ||
        rule.ports.some((rp) => {
          if ((rp.protocol ?? 'TCP') !== 'TCP') return false
          if (rp.port === undefined) return true
          const start = typeof rp.port === 'number' ? rp.port : to.ports[rp.port]
          return start !== undefined && port >= start && port <= (rp.endPort ?? start)
        })
      return peerOk && portOk
    }),
  )
}
