import type { ChatTurn } from '@confluence-bot/index'
import { AppError, ErrorCode } from '@confluence-bot/shared'
import type { ChatCompletionMessage, ContentPart } from '../../schemas/openai.ts'

// OpenAI's chat messages as Ollama's. A conversation a client continues may hold whatever the
// client's earlier turns held: an assistant turn that only called tools (content null), the
// tools' results, images. Those become Ollama's own fields (`tool_calls`, the `tool` role,
// `images`); what Ollama cannot take is refused with a 400 that names the field, since
// dropping it would answer a different conversation than the one sent.

const refuse = (field: string, why: string) =>
  new AppError(400, ErrorCode.validation, `body/${field} ${why}`)

// The only image source accepted: the bytes are in the request. A link is never fetched, since
// the server would then reach any address a client names (its own network included).
const DATA_IMAGE = /^data:image\/[\w.+-]+;base64,/i

type Content = { text: string; images: string[] }

function readParts(parts: readonly ContentPart[], at: string): Content {
  const texts: string[] = []
  const images: string[] = []
  parts.forEach((part, j) => {
    const field = `${at}/content/${j}`
    switch (part.type) {
      case 'text':
      case 'refusal': {
        const text = part[part.type]
        if (typeof text !== 'string') {
          throw refuse(`${field}/${part.type}`, `must be a string (the ${part.type} part's text)`)
        }
        texts.push(text)
        return
      }
      case 'image_url': {
        const url = (part.image_url as { url?: unknown } | undefined)?.url
        const data = typeof url === 'string' ? DATA_IMAGE.exec(url) : null
        if (data === null) {
          throw refuse(
            `${field}/image_url/url`,
            'must be a data: URL (data:image/png;base64,…): only data: URLs are accepted, ' +
              'the server never fetches an image from a link',
          )
        }
        images.push((url as string).slice(data[0].length))
        return
      }
      case 'input_audio':
      case 'file':
        throw refuse(
          `${field}/type`,
          `'${part.type}': audio and file parts are not accepted here (send their text; images as data: URLs)`,
        )
      default:
        throw refuse(
          `${field}/type`,
          `'${part.type}' is not a content part this server reads (text, image_url)`,
        )
    }
  })
  return { text: texts.join('\n'), images }
}

/** A tool call's arguments: OpenAI writes a JSON object as a string, Ollama takes the object. */
function argumentsOf(text: string, field: string): Record<string, unknown> {
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    parsed = undefined
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw refuse(field, 'must be a JSON object written as a string, as OpenAI sends it')
  }
  return parsed as Record<string, unknown>
}

/** The i-th message as Ollama reads it; OpenAI's newer `developer` role is the system prompt. */
export function toTurn(message: ChatCompletionMessage, i: number): ChatTurn {
  const at = `messages/${i}`
  const { content } = message
  const { text, images } =
    typeof content === 'string' || content == null
      ? { text: content ?? '', images: [] }
      : readParts(content as ContentPart[], at)
  const turn: ChatTurn = {
    role: message.role === 'developer' ? 'system' : message.role,
    content: text,
  }
  if (images.length > 0) turn.images = images
  if (message.tool_calls !== undefined) {
    turn.tool_calls = message.tool_calls.map((call, k) => ({
      function: {
        name: call.function.name,
        arguments: argumentsOf(call.function.arguments, `${at}/tool_calls/${k}/function/arguments`),
      },
    }))
  }
  return turn
}
