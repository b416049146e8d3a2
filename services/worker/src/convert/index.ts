import { parseDocument } from 'htmlparser2'
import { normalizeWhitespace, toMarkdown } from './markdown.ts'
import { type ConvertOptions, prepare, textOf } from './storage.ts'

// Confluence storage format (XHTML) → GitHub-flavoured markdown. A pure function: no I/O.
// It never throws on bad markup: malformed or truncated pages still convert, and if the markdown
// pass itself fails the page's text is returned with a warning, so one bad page cannot kill a
// job. Only input over `maxBytes` is refused, with a ConversionError that says so.

export type { ConvertOptions, PageTarget, UserTarget } from './storage.ts'

export type ConvertResult = { markdown: string; warnings: string[] }

export class ConversionError extends Error {
  override name = 'ConversionError'
}

export const DEFAULT_MAX_BYTES = 16 * 1024 * 1024

export function convertStorage(
  storage: string,
  options: ConvertOptions & { maxBytes?: number } = {},
): ConvertResult {
  const bytes = Buffer.byteLength(storage)
  const max = options.maxBytes ?? DEFAULT_MAX_BYTES
  if (bytes > max) {
    throw new ConversionError(`page body is ${bytes} bytes, over the ${max}-byte limit`)
  }
  const prepared = prepare(storage, options)
  try {
    const markdown = normalizeWhitespace(toMarkdown(prepared.html, prepared.code))
    return { markdown, warnings: prepared.warnings }
  } catch (err) {
    const text = parseDocument(storage, { recognizeCDATA: true }).children.map(textOf).join('')
    return {
      markdown: normalizeWhitespace(text),
      warnings: [...prepared.warnings, `converted as plain text: ${(err as Error).message}`],
    }
  }
}
