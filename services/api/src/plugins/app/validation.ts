import { Ajv, type Options } from 'ajv'
import addFormats from 'ajv-formats'
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'

// Bodies are validated strictly: a JSON body already has its types, and coercing them would let
// `"content": ["a"]` pass as "a" or `"stream": "true"` as true, which Ollama itself refuses.
// Query strings, params and headers arrive as text, so those are coerced to the schema's types.
// A field a closed schema does not know is refused, not dropped: `{"space": ["ENG"]}` for
// `spaces` would otherwise search every space without a word.
const common: Options = {
  removeAdditional: false,
  useDefaults: true,
  allErrors: false,
  strict: false,
}

async function validation(fastify: FastifyInstance) {
  const body = new Ajv({ ...common, coerceTypes: false })
  const text = new Ajv({ ...common, coerceTypes: 'array' })
  for (const ajv of [body, text]) addFormats.default(ajv)
  fastify.setValidatorCompiler(({ schema, httpPart }) =>
    (httpPart === 'body' ? body : text).compile(schema),
  )
}

export default fp(validation, { name: 'validation', fastify: '5.x' })
