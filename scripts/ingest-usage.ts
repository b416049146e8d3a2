// The usage of `cnfl ingest`, apart from its code: `cnfl --help` and `cnfl convert` print it
// without loading the worker (LanceDB, BullMQ), which takes a while.

export const INGEST_USAGE = `Usage: cnfl ingest SOURCE_ID [--full] [--force]
       cnfl ingest --export FILE.zip [--name NAME] [--base-url URL] [--full] [--force]
       cnfl ingest --kind cloud|datacenter --base-url URL --space KEY [--space KEY…] [--name NAME]

Runs one sync of a source in the foreground (progress on stderr, a JSON summary on stdout).
A new source is registered first when --export or --kind is given (reused when one of that
name exists). Credentials come from CONFLUENCE_USERNAME / CONFLUENCE_TOKEN; Redis, LanceDB and
Ollama from the usual settings (REDIS_URL, LANCEDB_URI, OLLAMA_URL, EMBED_MODEL).

  --full      reconvert and re-embed every page, not only the changed ones
  --force     delete vanished pages even beyond SYNC_MAX_DELETE_SHARE
`

export class UsageError extends Error {}
