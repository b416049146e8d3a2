// Every error a client can see has a stable snake_case `error` code, a human `message` and the
// HTTP `statusCode`. The codes are defined once here and used by both services.

export const ErrorCode = {
  validation: 'validation_failed',
  missingBody: 'missing_request_body',
  unsupportedMediaType: 'unsupported_media_type',
  payloadTooLarge: 'payload_too_large',
  requestTimeout: 'request_timeout',
  headersTooLarge: 'headers_too_large',
  malformedRequest: 'malformed_request',
  unauthorized: 'unauthorized',
  forbidden: 'forbidden',
  hostNotAllowed: 'host_not_allowed',
  originNotAllowed: 'origin_not_allowed',
  notFound: 'not_found',
  modelNotFound: 'model_not_found',
  sourceNotFound: 'source_not_found',
  jobNotFound: 'job_not_found',
  sourceExists: 'source_exists',
  sourceRefused: 'source_refused',
  invalidExport: 'invalid_export',
  notAnExportSource: 'not_an_export_source',
  syncRunning: 'sync_running',
  modelExists: 'model_exists',
  notGguf: 'not_gguf',
  digestMismatch: 'digest_mismatch',
  importInProgress: 'import_in_progress',
  importsBusy: 'imports_busy',
  importDirFull: 'import_dir_full',
  importDirUnwritable: 'import_dir_unwritable',
  ollamaUnavailable: 'ollama_unavailable',
  ollamaTimeout: 'ollama_timeout',
  ollamaError: 'ollama_error',
  ollamaStreamInterrupted: 'ollama_stream_interrupted',
  redisUnavailable: 'redis_unavailable',
  indexUnavailable: 'index_unavailable',
  conversationNotFound: 'conversation_not_found',
  shuttingDown: 'shutting_down',
  rateLimited: 'rate_limited',
  tooManyAnswers: 'too_many_answers',
  answersBusy: 'answers_busy',
  answerTooLong: 'answer_too_long',
  overloaded: 'overloaded',
  internal: 'internal_error',
} as const

export type ErrorCodeName = (typeof ErrorCode)[keyof typeof ErrorCode]

export type ErrorBody = { error: string; message: string; statusCode: number }

export class AppError extends Error {
  override name = 'AppError'
  readonly statusCode: number
  readonly code: ErrorCodeName
  constructor(statusCode: number, code: ErrorCodeName, message: string, options?: ErrorOptions) {
    super(message, options)
    this.statusCode = statusCode
    this.code = code
  }

  toBody(): ErrorBody {
    return { error: this.code, message: this.message, statusCode: this.statusCode }
  }
}
