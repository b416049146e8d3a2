import type { ErrorBody } from '@confluence-bot/shared'
import { ErrorCode } from '@confluence-bot/shared'
import type { OpenAIError } from '../../schemas/openai.ts'

// The API's errors ({error, message, statusCode}) in OpenAI's shape ({error:{message, type,
// param, code}}), which the openai SDKs read to raise AuthenticationError, NotFoundError… The
// api's own error handler, the auth hook and the body parser keep producing one shape; the /v1
// scope rewrites it just before serialization, so no failure can leave /v1 in the other shape.

/** The request field a validation message names: `body/messages/0/role must…` → messages[0].role. */
export function paramOf(message: string): string | null {
  const missing = /^body must have required property '([^']+)'/.exec(message)
  if (missing) return missing[1] as string
  const at = /^body\/(\S+) /.exec(message)
  if (!at) return null
  return (at[1] as string).replace(/\/(\d+)(?=\/|$)/g, '[$1]').replaceAll('/', '.')
}

export function toOpenAIError(
  body: Pick<ErrorBody, 'error' | 'message' | 'statusCode'>,
): OpenAIError {
  const validation = body.error === ErrorCode.validation
  return {
    error: {
      message: body.message,
      type: body.statusCode >= 500 ? 'server_error' : 'invalid_request_error',
      param: validation ? paramOf(body.message) : null,
      // OpenAI's code for a missing or wrong key; the SDKs raise AuthenticationError on the 401.
      code: body.error === ErrorCode.unauthorized ? 'invalid_api_key' : body.error,
    },
  }
}
