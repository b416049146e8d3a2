import type { LoggerOptions } from 'pino'

// Paths pino blanks out in a log line: credentials in request headers and in the objects that
// can carry them. Concrete paths only: wildcard paths cost a walk of every logged object on every
// line (measured by bench/gateway), and nothing is logged where a secret could hide deeper.
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
  'auth.token',
  'auth.password',
  'source.auth.token',
  'source.auth.password',
  'config.apiKeys',
  // Secret settings, should a config object ever be logged whole.
  'SECRETS_KEY',
  'SECRETS_KEY_PREVIOUS',
  'CONFLUENCE_TOKEN',
  'config.SECRETS_KEY',
  'config.SECRETS_KEY_PREVIOUS',
  'config.CONFLUENCE_TOKEN',
]

export function loggerOptions(opts: { level: string; service: string }): LoggerOptions {
  return {
    level: opts.level,
    base: { service: opts.service },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    timestamp: () => `,"time":"${new Date().toISOString()}"`,
  }
}
