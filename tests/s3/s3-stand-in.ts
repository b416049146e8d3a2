import { randomBytes } from 'node:crypto'
import S3rver from 's3rver'
import account from 's3rver/lib/models/account.js'
import { tempDir } from '../helpers/api.ts'

// An S3-compatible server for the tests: s3rver, in this process, on a free port, its objects in
// a temp directory, one bucket created up front. LanceDB reaches it through the standard AWS_*
// variables, as a MinIO or Ceph deployment would (README: LanceDB on S3).
//
// What s3rver lacks, and what the tests therefore do not prove:
// - It ignores `If-None-Match: *` on PUT. LanceDB commits a table version by writing its
//   manifest with that header (put-if-absent), so against s3rver two writers committing the same
//   version at once would both "succeed" where S3, MinIO and R2 refuse the second with 412. Our
//   writers never race (one writer lock in Redis), so the single-writer path is what runs here.
// - Its delimiter listing (ListObjectsV2 with `delimiter=/`) drops every "folder" whose objects
//   all sit one level deeper, instead of reporting it as a common prefix: LanceDB lists tables
//   that way (`prefix/chunks.lance/` holds only `_versions/`, `data/`, … folders), so against
//   plain s3rver `tableNames()` is always empty. `listObjects` below is wrapped to answer as S3
//   does (a key below a delimiter is rolled up into its common prefix); nothing else is changed.
// - It checks the access key id of a SigV4-signed request but not the signature itself, so a
//   wrong secret goes unnoticed (an unknown key id is refused).

export const S3_BUCKET = 'cnfl-index'

export type S3StandIn = {
  endpoint: string
  /** The standard AWS_* variables that point LanceDB at this server, with a key pair of its own. */
  env(): Record<string, string>
  /** The HTTP methods requests signed with this key id have used so far, sorted. */
  methods(accessKeyId: string): string[]
}

export async function startS3StandIn(t: { teardown(fn: () => unknown): void }) {
  const server = new S3rver({
    address: '127.0.0.1',
    port: 0,
    silent: true,
    directory: await tempDir(t, 'cnfl-s3-'),
    configureBuckets: [{ name: S3_BUCKET, configs: [] }],
  })
  const list = server.store.listObjects.bind(server.store)
  server.store.listObjects = async (bucket, options) => {
    const { delimiter } = options
    if (!delimiter) return list(bucket, options)
    // Every key under the prefix, then rolled up the way S3 does. Test tables are small: one
    // listing answers it (no pagination of a delimited listing).
    const all = await list(bucket, { ...options, delimiter: undefined, maxKeys: Infinity })
    const prefix = options.prefix ?? ''
    const common = new Set<string>()
    const objects = all.objects.filter(({ key }) => {
      const at = key.indexOf(delimiter, prefix.length)
      if (at === -1) return true
      common.add(key.slice(0, at + delimiter.length))
      return false
    })
    return { objects, commonPrefixes: [...common].sort(), isTruncated: false }
  }
  const { port } = await server.run()
  t.teardown(() => server.close())
  // Which key did what: SigV4 names the key id in the Authorization header's Credential.
  const used = new Map<string, Set<string>>()
  server.httpServer.prependListener('request', (req) => {
    const key = /Credential=([^/]+)\//.exec(req.headers.authorization ?? '')?.[1] ?? 'anonymous'
    used.set(key, (used.get(key) ?? new Set()).add(req.method ?? '?'))
  })
  const endpoint = `http://127.0.0.1:${port}`
  return {
    endpoint,
    env() {
      // A key pair of this run (s3rver refuses any other key id), so a test can look for the
      // secret in logs and responses, and tell one process's requests from another's.
      const accessKeyId = `CNFL${randomBytes(8).toString('hex').toUpperCase()}`
      const secretAccessKey = randomBytes(20).toString('base64url')
      account.DUMMY_ACCOUNT.createKeyPair(accessKeyId, secretAccessKey)
      return {
        AWS_ENDPOINT: endpoint,
        AWS_REGION: 'us-east-1',
        AWS_ALLOW_HTTP: 'true',
        AWS_ACCESS_KEY_ID: accessKeyId,
        AWS_SECRET_ACCESS_KEY: secretAccessKey,
      }
    },
    methods: (accessKeyId) => [...(used.get(accessKeyId) ?? [])].sort(),
  } satisfies S3StandIn
}
