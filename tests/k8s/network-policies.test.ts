import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, relative, resolve } from 'node:path'
import type { INetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy'
import t from 'tap'
import {
  type Destination,
  egressAllowed,
  egressPoliciesOf,
  inCidr,
  ingressAllowed,
  type Pod,
  parseIp,
  podOf,
  validateObject,
  workload,
  workloads,
} from './kube.ts'
import { build, hasKubectl, type K8sObject, kubectlKustomize, overlayOnTop } from './render.ts'

// The NetworkPolicies of every overlay, as a cluster would enforce them: every workload's egress
// is restricted, the internet is reached over both address families or not at all, never a cloud
// metadata endpoint; each pod reaches only what it needs (the api HTTPS only in `s3`, Ollama
// nothing outside the cluster in `airgap`); Prometheus and an ingress controller on hostNetwork
// can be let in as k8s/README.md says.

const k8s = resolve(import.meta.dirname, '../../k8s')
const OVERLAYS = readdirSync(join(k8s, 'overlays')).sort()
const rendered = new Map(OVERLAYS.map((o) => [o, build(join(k8s, 'overlays', o))]))
const policiesOf = (objects: readonly K8sObject[]) =>
  objects.filter((o) => o.kind === 'NetworkPolicy') as (K8sObject & INetworkPolicy)[]

// Cloud metadata endpoints (node credentials): AWS, GCP and Azure on IPv4, AWS and GCP on IPv6,
// and IPv6 link-local.
const METADATA = ['169.254.169.254', 'fd00:ec2::254', 'fd20:ce::254', 'fe80::a9fe:a9fe']
// Somewhere on the internet (documentation ranges): Confluence Cloud, a registry, a bucket.
const PUBLIC = ['203.0.113.7', '2001:db8::7']
// The cluster's DNS: the kube-dns/CoreDNS pods in kube-system (a policy sees the pod a Service
// address is translated to), NodeLocal DNSCache's link-local address, and GKE's Cloud DNS, which
// pods query at the metadata server's address (port 53 only: its metadata API is HTTP).
const KUBE_SYSTEM = { 'kubernetes.io/metadata.name': 'kube-system' }
const NODE_LOCAL_DNS = '169.254.20.10'
const CLOUD_DNS = '169.254.169.254'
const DNS: Destination[] = [
  { pod: { 'k8s-app': 'kube-dns' }, namespace: KUBE_SYSTEM, port: 53, protocol: 'UDP' },
  { pod: { 'k8s-app': 'kube-dns' }, namespace: KUBE_SYSTEM, port: 53, protocol: 'TCP' },
  ...[NODE_LOCAL_DNS, CLOUD_DNS].flatMap((ip) =>
    ['UDP', 'TCP'].map((protocol) => ({ ip, port: 53, protocol })),
  ),
]
// Port 53 anywhere else: a public resolver, any internet host (a tunnel), the other metadata
// endpoints and their network, a VPC resolver, a pod of another namespace.
const NOT_DNS: Destination[] = [
  ...[
    '8.8.8.8',
    ...PUBLIC,
    ...METADATA.filter((ip) => ip !== CLOUD_DNS),
    '169.254.169.253',
    '169.254.20.11',
    '10.0.0.2',
  ].flatMap((ip) => ['UDP', 'TCP'].map((protocol) => ({ ip, port: 53, protocol }))),
  {
    pod: { 'app.kubernetes.io/name': 'dnsmasq' },
    namespace: { 'kubernetes.io/metadata.name': 'tenant' },
    port: 53,
    protocol: 'UDP',
  },
]

t.test('parseIp and inCidr read both families', async (t) => {
  t.ok(inCidr('fd00:ec2::254', 'fd00:ec2::254/128'))
  t.ok(inCidr('fe80::1', 'fe80::/10'))
  t.notOk(inCidr('fec0::1', 'fe80::/10'))
  t.ok(inCidr('2001:db8::7', '::/0'))
  t.notOk(inCidr('203.0.113.7', '::/0'), 'families never mix')
  t.ok(inCidr('169.254.169.254', '169.254.0.0/16'))
  t.notOk(inCidr('203.0.113.7', '169.254.0.0/16'))
  t.equal(parseIp('::1').value, 1n)
  t.equal(parseIp('1::').value, 1n << 112n)
  t.throws(() => parseIp('1:2:3'), /not an IPv6/)
  t.throws(() => parseIp('1.2.3.256'), /not an IPv4/)
})

t.test('every workload of every overlay is selected by an egress policy', async (t) => {
  for (const [overlay, objects] of rendered) {
    const policies = policiesOf(objects)
    for (const w of workloads(objects)) {
      t.ok(
        egressPoliciesOf(policies, podOf(w).labels).length > 0,
        `${overlay}: ${w.kind}/${w.metadata.name} has its egress restricted`,
      )
    }
  }
})

t.test('internet rules cover both families and except every metadata endpoint', async (t) => {
  for (const [overlay, objects] of rendered) {
    for (const policy of policiesOf(objects)) {
      for (const [i, rule] of (policy.spec?.egress ?? []).entries()) {
        const where = `${overlay} ${policy.metadata.name} egress[${i}]`
        const blocks = (rule.to ?? []).flatMap((peer) => (peer.ipBlock ? [peer.ipBlock] : []))
        const reaches = (ip: string) =>
          blocks.some((b) => inCidr(ip, b.cidr) && !(b.except ?? []).some((e) => inCidr(ip, e)))
        // A rule without peers reaches every address, on its ports: none may be that open (DNS
        // included: port 53 anywhere is a tunnel out).
        t.ok(rule.to && rule.to.length > 0, `${where}: names where it goes`)
        if (!rule.to || rule.to.length === 0) continue
        if (!PUBLIC.some(reaches)) continue
        t.ok(
          PUBLIC.every(reaches),
          `${where}: the internet over IPv4 and IPv6 (${blocks.map((b) => b.cidr).join(', ')})`,
        )
        for (const ip of METADATA) t.notOk(reaches(ip), `${where}: never ${ip}`)
      }
    }
  }
})

t.test('each pod reaches only what it needs', async (t) => {
  for (const [overlay, objects] of rendered) {
    const policies = policiesOf(objects)
    const labels = (name: string) => podOf(workload(objects, name)).labels
    const reaches = (from: string, to: Destination) => egressAllowed(policies, labels(from), to)
    const toPod = (name: string, port: number): Destination => ({ pod: labels(name), port })
    const internet = (from: string) =>
      PUBLIC.map((ip) => reaches(from, { ip, port: 443 })).every(Boolean)
    const nowhere = (from: string) =>
      PUBLIC.every((ip) => [80, 443, 8080].every((port) => !reaches(from, { ip, port })))

    for (const name of ['api', 'worker', 'ollama']) {
      for (const dns of DNS) {
        t.ok(reaches(name, dns), `${overlay} ${name}: DNS ${dns.protocol} ${dns.ip ?? 'kube-dns'}`)
      }
      // The metadata API (HTTP) stays out of reach, though Cloud DNS's port 53 there is open.
      for (const ip of METADATA) {
        for (const port of [80, 443, 8080]) {
          t.notOk(reaches(name, { ip, port }), `${overlay} ${name} ↛ ${ip}:${port}`)
        }
      }
      t.notOk(reaches(name, { ip: PUBLIC[0] as string, port: 22 }), `${overlay} ${name}: no SSH`)
    }
    // The api: Redis and Ollama; HTTPS only where the index is in a bucket.
    t.ok(reaches('api', toPod('redis', 6379)), `${overlay}: api → redis`)
    t.ok(reaches('api', toPod('ollama', 11434)), `${overlay}: api → ollama`)
    t.notOk(reaches('api', toPod('worker', 3001)), `${overlay}: api ↛ worker`)
    if (overlay === 's3') t.ok(internet('api'), 's3: api → the bucket over HTTPS, v4 and v6')
    else t.ok(nowhere('api'), `${overlay}: api reaches nothing outside the cluster`)
    // The worker: Confluence (and the bucket) over HTTPS.
    t.ok(internet('worker'), `${overlay}: worker → Confluence over HTTPS, v4 and v6`)
    // Ollama: the registry, except air-gapped.
    if (overlay === 'airgap') t.ok(nowhere('ollama'), 'airgap: ollama reaches nothing outside')
    else t.ok(internet('ollama'), `${overlay}: ollama → the registry, v4 and v6`)
    // Redis: nothing at all, not even DNS.
    for (const to of [...DNS, { ip: PUBLIC[0] as string, port: 443 }, toPod('api', 3000)]) {
      t.notOk(reaches('redis', to), `${overlay}: redis ↛ ${to.ip ?? 'api'}:${to.port}`)
    }
    if (overlay === 'airgap') {
      const loader = (to: Destination) =>
        egressAllowed(policies, labels('ollama-models-loader'), to)
      t.notOk(
        [...DNS, { ip: PUBLIC[0] as string, port: 443 }, toPod('ollama', 11434)].some(loader),
        'airgap: the loader reaches nothing',
      )
      t.notOk(
        ingressAllowed(
          policies,
          podOf(workload(objects, 'api')),
          podOf(workload(objects, 'ollama-models-loader')),
          80,
        ),
        'airgap: nothing reaches the loader',
      )
    }
  }
})

t.test('port 53 reaches the cluster DNS only, from every pod', async (t) => {
  for (const [overlay, objects] of rendered) {
    const policies = policiesOf(objects)
    for (const w of workloads(objects)) {
      const from = podOf(w).labels
      for (const to of NOT_DNS) {
        t.notOk(
          egressAllowed(policies, from, to),
          `${overlay} ${w.metadata.name} ↛ ${to.ip ?? 'a pod of another namespace'}:53/${to.protocol}`,
        )
      }
    }
  }
})

t.test(
  "a cluster DNS elsewhere: the README's patch points every overlay's DNS rule at it",
  { skip: hasKubectl ? false : 'kubectl is not installed (the patch is a JSON patch)' },
  async (t) => {
    const readme = readFileSync(join(k8s, 'README.md'), 'utf8')
    const step = readme.slice(readme.indexOf('**A cluster DNS outside `kube-system`**'))
    const patches = /```yaml\n([\s\S]*?)```/.exec(step)?.[1] ?? ''
    t.match(patches, /openshift-dns/, 'the README shows the patch')
    const openshiftDns = { 'kubernetes.io/metadata.name': 'openshift-dns' }
    const dnsPod = { 'dns.operator.openshift.io/daemonset-dns': 'default' }
    for (const overlay of ['production', 'airgap']) {
      const dir = overlayOnTop(t, overlay, [], patches)
      const objects = await kubectlKustomize(dir)
      const policies = policiesOf(objects)
      for (const name of ['api', 'worker', 'ollama']) {
        const from = podOf(workload(objects, name)).labels
        for (const protocol of ['UDP', 'TCP']) {
          const to = { pod: dnsPod, namespace: openshiftDns, port: 5353, protocol }
          t.ok(egressAllowed(policies, from, to), `${overlay} ${name} → openshift-dns ${protocol}`)
        }
        t.notOk(
          egressAllowed(policies, from, { ip: '8.8.8.8', port: 5353, protocol: 'UDP' }),
          `${overlay} ${name}: still no resolver outside`,
        )
      }
    }
  },
)

t.test(
  'Prometheus: a namespace labelled confluence-bot/scrape=true reaches the api port',
  async (t) => {
    const readme = readFileSync(join(k8s, 'README.md'), 'utf8')
    t.match(readme, /kubectl label namespace \S+ confluence-bot\/scrape=true/, 'documented')
    for (const [overlay, objects] of rendered) {
      const policies = policiesOf(objects)
      const api = podOf(workload(objects, 'api'))
      const prometheus = (namespace: Record<string, string>): Pod => ({
        labels: { 'app.kubernetes.io/name': 'prometheus' },
        ports: {},
        namespace: { 'kubernetes.io/metadata.name': 'monitoring', ...namespace },
      })
      const labelled = prometheus({ 'confluence-bot/scrape': 'true' })
      t.ok(ingressAllowed(policies, labelled, api, 3000), `${overlay}: labelled → api:3000`)
      t.notOk(ingressAllowed(policies, labelled, api, 9229), `${overlay}: only that port`)
      t.notOk(ingressAllowed(policies, prometheus({}), api, 3000), `${overlay}: unlabelled ↛ api`)
    }
  },
)

// The README's hostNetwork step, as an operator would add it to production.
function hostNetworkFixture(): { dir: string; patch: string } {
  const readme = readFileSync(join(k8s, 'README.md'), 'utf8')
  const step = readme.slice(readme.indexOf('Ingress controller on hostNetwork'))
  const patch = /```yaml\n([\s\S]*?)```/.exec(step)?.[1] ?? ''
  const dir = mkdtempSync(join(tmpdir(), 'host-network-'))
  writeFileSync(join(dir, 'node-cidr.yaml'), patch)
  writeFileSync(
    join(dir, 'kustomization.yaml'),
    [
      'apiVersion: kustomize.config.k8s.io/v1beta1',
      'kind: Kustomization',
      'resources:',
      // Relative: kustomize refuses an absolute root.
      `  - ${relative(dir, join(k8s, 'overlays/production'))}`,
      'components:',
      `  - ${relative(dir, join(k8s, 'components/ingress-host-network'))}`,
      'patches:',
      '  - path: node-cidr.yaml',
      '',
    ].join('\n'),
  )
  return { dir, patch }
}

t.test('an ingress controller on hostNetwork: the documented component and patch', async (t) => {
  const { dir, patch } = hostNetworkFixture()
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  t.match(patch, /name: api-from-nodes/, 'the README shows the patch')
  const objects = build(dir)
  t.strictSame((await Promise.all(objects.map(validateObject))).flat(), [])
  const policies = policiesOf(objects)
  const api = podOf(workload(objects, 'api'))
  const node = (ip: string): Pod => ({ labels: {}, ports: {}, namespace: {}, ip })
  const cidr = /cidr: (\S+)/.exec(patch)?.[1] as string
  const [base] = cidr.split('/') as [string]
  const nodeIp = base.replace(/\.0$/, '.17')
  t.ok(inCidr(nodeIp, cidr), `${nodeIp} is a node address`)
  t.ok(ingressAllowed(policies, node(nodeIp), api, 3000), `node ${nodeIp} → api:3000`)
  t.notOk(ingressAllowed(policies, node(nodeIp), api, 3001), 'only the api port')
  t.notOk(ingressAllowed(policies, node('198.51.100.9'), api, 3000), 'not from elsewhere')
  // The component alone opens nothing: its placeholder is a documentation range.
  const unpatched = build(join(k8s, 'overlays/production'))
  t.notOk(
    ingressAllowed(policiesOf(unpatched), node(nodeIp), podOf(workload(unpatched, 'api')), 3000),
    'production without the component: nodes ↛ api',
  )
  const component = readFileSync(
    join(k8s, 'components/ingress-host-network/network-policy.yaml'),
    'utf8',
  )
  t.match(component, /cidr: 192\.0\.2\.0\/24/, 'placeholder: TEST-NET-1')
})

t.test(
  'kubectl kustomize renders the hostNetwork fixture the same',
  { skip: hasKubectl ? false : 'kubectl is not installed' },
  async (t) => {
    const { dir } = hostNetworkFixture()
    t.teardown(() => rmSync(dir, { recursive: true, force: true }))
    const theirs = await kubectlKustomize(dir)
    const key = (o: K8sObject) => `${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`
    const byKey = (list: K8sObject[]) => Object.fromEntries(list.map((o) => [key(o), o]))
    t.strictSame(byKey(build(dir)), byKey(theirs))
  },
)
