import type { ErrorBody } from '@confluence-bot/shared'
import { ErrorCode } from '@confluence-bot/shared'
import type { OpenAIError } from '../../schemas/openai.ts'

// The API's errors ({error, message, statusCode}) in OpenAI's shape ({error:{message, type,
// param, code}}), which the openai SDKs read to raise AuthenticationError, NotFoundError… The
// api's own error handler, the auth hook and the body parser keep producing one shape; the /v1
// scope rewrites it just before serialization, so no failure can leave /v1 in the other shape.

/** The request field a validation message names: `body/messages/0/role must…` → messages[0].role. */
export function paramOf(message: string): string | null {
  const at = /^body\/(\S+) /.exec(message)
  if (!at) return null
  return (at[1] as string).replace(/\/(\d+)(?=\/|$)/g, '[$1]').replaceAll('/', '.')
}

/** One schema error as Ajv reports it (the fields read here). */
export type SchemaError = {
  instancePath: string
  schemaPath: string
  keyword: string
  params: Record<string, unknown>
  message?: string
}

const A_TYPE: Record<string, string> = {
  string: 'a string',
  number: 'a number',
  integer: 'an integer',
  boolean: 'a boolean',
  null: 'null',
  array: 'an array',
  object: 'an object',
}

const either = (words: string[]) =>
  words.length === 1 ? words[0] : `${words.slice(0, -1).join(', ')} or ${words.at(-1)}`

function plainError(error: SchemaError, dataVar: string): string {
  const field = `${dataVar}${error.instancePath}`
  switch (error.keyword) {
    case 'required':
      return `${field}/${error.params.missingProperty} is required`
    case 'additionalProperties':
      return `${field}/${error.params.additionalProperty} is not a field this server knows (check its spelling)`
    case 'type':
      return `${field} must be ${A_TYPE[String(error.params.type)]}`
    default:
      return `${field} ${error.message}`
  }
}

/**
 * A schema failure in plain words. Ajv reports a value that fits none of a union (`anyOf`) as
 * one error per branch plus "must match a schema in anyOf", which reads as noise; this says
 * instead what the value may be (`must be a string, null or an array`), or, when the value has
 * the type of one branch and fails deeper inside it, that branch's own error.
 */
export function schemaErrorMessage(errors: readonly SchemaError[], dataVar: string): string {
  const last = errors.at(-1) as SchemaError
  if (last.keyword !== 'anyOf') return plainError(last, dataVar)
  const branches = errors.slice(0, -1)
  // The error that got furthest into the value; ties go to the later one (a nested anyOf
  // follows its own branches' errors).
  const deepest = branches.reduce((a, b) =>
    b.instancePath.length >= a.instancePath.length ? b : a,
  )
  if (deepest.instancePath !== last.instancePath) {
    const inside = branches.filter((e) => e.schemaPath.startsWith(`${deepest.schemaPath}/`))
    return schemaErrorMessage([...inside, deepest], dataVar)
  }
  const fitting = branches.find((e) => e.keyword !== 'type' && e.keyword !== 'const')
  if (fitting !== undefined) return plainError(fitting, dataVar)
  const field = `${dataVar}${last.instancePath}`
  const words = branches.map((e) =>
    e.keyword === 'const'
      ? `'${e.params.allowedValue}'`
      : (A_TYPE[String(e.params.type)] as string),
  )
  if (branches.every((e) => e.keyword === 'const'))
    return `${field} must be one of ${words.join(', ')}`
  return `${field} must be ${either([...new Set(words)])}`
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
