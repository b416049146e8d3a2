import type { WorkerConfig } from '@confluence-bot/shared'
import type { Redis } from 'ioredis'
import type { Logger } from 'pino'
import { createCloudSource } from './cloud.ts'
import { createDataCenterSource } from './datacenter.ts'
import { ConfluenceError } from './errors.ts'
import { createHttp, type RetryOptions } from './http.ts'
import { createLimiter } from './limiter.ts'
import type { ConfluenceSource, SourceAuth, SourceSpec } from './types.ts'

// Opens a REST source (Cloud or Data Center). Nothing is sent until the first call: the base_url
// check (CONFLUENCE_ALLOWED_HOSTS) runs before the first request.

export type RestSourceDeps = {
  redis: Redis
  log?: Logger
  config: Pick<
    WorkerConfig,
    'CONFLUENCE_ALLOWED_HOSTS' | 'CONFLUENCE_REQUESTS_PER_SECOND' | 'CONFLUENCE_TIMEOUT_MS'
  >
  /** Retry knobs; tests shorten the backoff. */
  retry?: Partial<RetryOptions>
}

export function openRestSource(
  spec: SourceSpec,
  auth: SourceAuth | undefined,
  deps: RestSourceDeps,
): ConfluenceSource {
  if (spec.kind !== 'cloud' && spec.kind !== 'datacenter') {
    throw new ConfluenceError(
      'config',
      `Source ${spec.id} is a ${spec.kind} source, not a REST one`,
    )
  }
  const rps = spec.rate_limit?.requests_per_second ?? deps.config.CONFLUENCE_REQUESTS_PER_SECOND
  const http = createHttp({
    baseUrl: spec.base_url,
    auth,
    tls: spec.tls,
    timeoutMs: deps.config.CONFLUENCE_TIMEOUT_MS,
    allowedHosts: deps.config.CONFLUENCE_ALLOWED_HOSTS,
    // Keyed by source id: every worker process reading this source shares one pace.
    limiter: createLimiter(deps.redis, spec.id, rps),
    source: spec.id,
    log: deps.log?.child({ sourceId: spec.id, sourceKind: spec.kind }),
    retry: deps.retry,
  })
  return spec.kind === 'cloud' ? createCloudSource(spec, http) : createDataCenterSource(spec, http)
}
