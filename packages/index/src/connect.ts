import { type Connection, connect, Session } from '@lancedb/lancedb'

/**
 * A connection whose reads see other processes' commits at once (writers live elsewhere), with
 * bounded caches: LanceDB's defaults (6 GB of index cache, 1 GB of file metadata) let a process
 * grow far past its memory limit. The writer (the worker) and every reader (the api, the CLI,
 * the bench) open the index through here.
 *
 * On object storage (`s3://bucket/prefix`) no storage options are passed on purpose: LanceDB
 * takes the bucket's keys, region, endpoint and `AWS_ALLOW_HTTP` from the standard AWS_*
 * variables of the process itself (tests/s3 runs that way), so a process configured like the
 * others opens the same index, an IAM role works without keys, and no secret passes through our
 * settings, logs or the admin settings view.
 */
export function lancedbConnect(uri: string, cacheMb = 128): Promise<Connection> {
  const mb = BigInt(cacheMb) * 1024n * 1024n
  return connect(uri, { readConsistencyInterval: 0 }, new Session(mb, mb / 4n))
}
