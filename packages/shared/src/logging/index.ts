import type { LoggerOptions } from 'pino'

// Paths pino blanks out wherever they appear in a log line: credentials in request headers,
// tokens and passwords in any logged object, and the configured API keys.
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-api-key"]',
  'res.headers["set-cookie"]',
  'headers.authorization',
  'authorization',
  'password',
  'token',
  'apiKey',
  'apiKeys',
  '*.password',
  '*.token',
  '*.apiKey',
  '*.apiKeys',
  '*.authorization',
  'auth.*',
  '*.auth.*',
]

export function loggerOptions(opts: { level: string; service: string }): LoggerOptions {
  return {
    level: opts.level,
    base: { service: opts.service },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    timestamp: () => `,"time":"${new Date().toISOString()}"`,
  }
}
