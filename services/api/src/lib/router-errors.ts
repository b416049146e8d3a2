import { type ErrorBody, ErrorCode } from '@confluence-bot/shared'
import { toOpenAIError } from '../routes/v1/openai-errors.ts'

// A path the router cannot read (`%ff`, a parameter past maxParamLength) is refused before any
// route or scope runs, so the scopes' own rewrites of the error shape never see it. It is
// answered here in the shape of the surface its path names, as the scope would have: an OpenAI
// SDK reads only `error.message`, an Ollama client only `error`.

/** The 400 body for a path the router refused with `code`, in the shape of `url`'s surface. */
export function routerErrorBody(url: string, code: string): object {
  const body: ErrorBody = {
    error: ErrorCode.validation,
    message:
      code === 'FST_ERR_BAD_URL'
        ? 'The URL path is not valid (a %-escape that is not UTF-8?)'
        : 'A part of the URL path is too long',
    statusCode: 400,
  }
  if (url.startsWith('/v1/')) return toOpenAIError(body)
  if (url.startsWith('/ollama/')) return { error: body.message }
  return body
}
