// The usage of `cnfl ingest`, apart from its code: `cnfl --help` and `cnfl convert` print it
// without loading the worker (LanceDB, BullMQ), which takes a while.

export const INGEST_USAGE = `Usage: cnfl ingest SOURCE_ID [--full] [--force]
       cnfl ingest --export FILE.zip [--name NAME] [--base-url URL] [--full] [--force]
       cnfl ingest --kind cloud|datacenter --base-url URL --space KEY [--space KEY…] [--name NAME]

Runs one sync of a source in the foreground (progress on stderr, a JSON summary on stdout).
With --export or --kind the source is the registered one of that kind, base URL and spaces
(an export's space is read from its zip; its base URL is compared when --base-url is given):
an export source gets FILE.zip as its new export (kept under EXPORTS_DIR, replacing the old
zip) and syncs incrementally, so pages gone from the export leave the index. Without one, a
new source is registered (named --name, else the file name or the base URL). A --name of a
source that does not match, several matches, or a second source of a space already held are
refused, saying why. While a worker is connected to the queues (the service's), the sync runs
there, with that worker's settings; only when none is (or once it has gone) does this process
run a worker. Credentials come from CONFLUENCE_USERNAME / CONFLUENCE_TOKEN; Redis, LanceDB and
Ollama from the usual settings (REDIS_URL, LANCEDB_URI, OLLAMA_URL, EMBED_MODEL).

  --full      reconvert and re-embed every page, not only the changed ones
  --force     delete vanished pages even beyond SYNC_MAX_DELETE_SHARE
`

export class UsageError extends Error {}
