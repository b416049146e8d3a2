// The LanceDB chunk index as a package: the connection (bounded caches), the index settings the
// writer builds with and the reader queries with, and the read side (search) used by the api,
// the CLI and the bench.
export { lancedbConnect } from './connect.ts'
