import { UnrecoverableError } from 'bullmq'
// One error type for everything that goes wrong talking to a Confluence source. `code` says what
// kind of failure it was, `fatal` whether running the same job again could help: a refused
// credential, a removed endpoint or a request Confluence calls malformed stays that way until
// someone changes the source, so the sync job should fail for good (BullMQ UnrecoverableError)
// instead of retrying into a DC CAPTCHA lock-out. Messages name the host and the thing to fix;
// they never carry credentials or request headers.

export type ConfluenceErrorCode =
  | 'auth'
  | 'forbidden'
  | 'not_found'
  | 'gone'
  | 'bad_request'
  | 'rate_limited'
  | 'unavailable'
  | 'network'
  | 'timeout'
  /** The source's settings are unusable (base_url refused, unknown space key, bad root page). */
  | 'config'

export type ConfluenceErrorOptions = { status?: number; fatal?: boolean; cause?: unknown }

const FATAL_BY_DEFAULT: ReadonlySet<ConfluenceErrorCode> = new Set([
  'auth',
  'forbidden',
  'gone',
  'bad_request',
  'config',
])

export class ConfluenceError extends Error {
  override name = 'ConfluenceError'
  readonly code: ConfluenceErrorCode
  readonly status?: number
  readonly fatal: boolean
  constructor(code: ConfluenceErrorCode, message: string, options: ConfluenceErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.code = code
    if (options.status !== undefined) this.status = options.status
    this.fatal = options.fatal ?? FATAL_BY_DEFAULT.has(code)
  }
}

/** True when retrying the job cannot help (see ConfluenceError.fatal); false for anything else. */
export function isFatal(err: unknown): boolean {
  return err instanceof ConfluenceError && err.fatal
}

/** What a job throws for a source error: fatal ones end the job at once (no retry storm). */
export function asJobError(err: unknown): unknown {
  return isFatal(err) ? new UnrecoverableError((err as Error).message) : err
}
