// Grounded models are named by a suffix on a model Ollama has: `llama3.2+confluence` answers
// from the Confluence index with `llama3.2`. The suffix goes after the whole name, tag included
// (`llama3.2:1b+confluence`), which is how /ollama/api/tags lists it (`llama3.2:latest+confluence`
// beside `llama3.2:latest`). A tag written after the suffix is read as the base model's tag, so a
// client that appends `:latest` to a name it thinks has none (`llama3.2+confluence:latest`) still
// reaches `llama3.2:latest`. `+` never occurs in an Ollama model name, so no plain model is ever
// taken for an alias, and the suffix is matched without regard to case, as Ollama matches names.

export const ALIAS_SUFFIX = '+confluence'

const ALIAS = /^(.+)\+confluence(:[^:/+]+)?$/i

/** The model an alias grounds with, or undefined for a plain name (or none). */
export function baseOf(name: unknown): string | undefined {
  const match = typeof name === 'string' ? ALIAS.exec(name) : null
  return match === null ? undefined : `${match[1]}${match[2] ?? ''}`
}

/** The alias /ollama/api/tags lists beside a model. */
export const aliasOf = (name: string): string => `${name}${ALIAS_SUFFIX}`
