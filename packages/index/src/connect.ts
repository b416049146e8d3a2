import { type Connection, connect, Session } from '@lancedb/lancedb'

/**
 * A connection whose reads see other processes' commits at once (writers live elsewhere), with
 * bounded caches: LanceDB's defaults (6 GB of index cache, 1 GB of file metadata) let a process
 * grow far past its memory limit. The writer (the worker) and every reader (the api, the CLI,
 * the bench) open the index through here.
 */
export function lancedbConnect(uri: string, cacheMb = 128): Promise<Connection> {
  const mb = BigInt(cacheMb) * 1024n * 1024n
  return connect(uri, { readConsistencyInterval: 0 }, new Session(mb, mb / 4n))
}
