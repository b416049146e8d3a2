// Page text is put in the prompt as data, between tags named with a random fence. A few things
// could still let a page reach outside its excerpt, or hide what it says there:
//
// - Chat-template control tokens spelt out in the text (`<|eot_id|>`, `<|im_start|>`, `[INST]`,
//   `<end_of_turn>`, `[|endofturn|]`, `<extra_id_1>`, `[gMASK]`, `</think>`…). Ollama renders
//   the messages into one prompt and tokenizes it with special tokens parsed everywhere,
//   content included, so such a literal becomes a real turn boundary: a page could end the
//   user's turn and open a system one. Their brackets are swapped for look-alikes, which no
//   tokenizer reads as a control token; the words stay.
// - Text spelt in Unicode tag characters (U+E0000–U+E007F, an invisible copy of ASCII): a page
//   could carry instructions nobody reviewing it sees and a model reads. They are dropped; their
//   one real use, the subdivision flags (🏴 England, Scotland, Wales), falls back to a black flag.
// - A tag shaped like the fence (`</excerpt-…>`): it cannot match the random one, but it is
//   broken the same way so that a model is not misled into reading the excerpt as closed.
// - A code fence (``` or ~~~) the excerpt opens and never closes would turn the rest of the
//   message, the question included, into "code" for the model: it is closed at the excerpt's
//   end.

// The control tokens of the chat templates Ollama's models use (its template/*.gotmpl and the
// model cards), by shape where a family names them by a pattern, by name where the brackets
// alone are ordinary text. Each alternative needs its brackets, so the words themselves, and
// text that merely looks similar (`[|1; 2|]` arrays, `<T>`, `[ARGS]`, `<Enter>`), are left as
// they are (tests/index/page-text.test.ts holds both sides).
const CONTROL = new RegExp(
  [
    // `<|…|>`: Llama 3 / 4, ChatML (Qwen, Phi, Yi), Phi-3, Zephyr, Harmony, Granite, Command-R,
    // OpenChat, GLM roles; DeepSeek's with full-width bars (`<｜User｜>`).
    '<[|｜][^<>\\s]{1,48}?[|｜]>',
    // `[|…|]`: EXAONE's roles and turn end. A word only: F# and OCaml arrays are `[|1; 2|]`.
    '\\[\\|[a-z_]{2,24}\\|\\]',
    // Tags: Gemma, Llama 2 / Mistral sentence marks, GLM-4 (`<sop>`), Alfred, CodeLlama 70B
    // (`<step>`), thinking and tool tags of several families, Nemotron's `<extra_id_N>`.
    '</?(?:s|bos|eos|pad|unk|sop|eop|step|start_of_turn|end_of_turn|start_(?:system|user|assistant)|end_message|think|tool_call|tool_response|tools|extra_id_\\d{1,3})>',
    // Llama 2 / Mistral instruction, system, tool and thinking markers; GLM-4's `[gMASK]`.
    '\\[/?(?:INST|SYS|SYSTEM_PROMPT|AVAILABLE_TOOLS|TOOL_CALLS|TOOL_RESULTS|TOOL_CONTENT|THINK)\\]',
    '\\[[gs]MASK\\]',
    '<</?SYS>>',
    // Anything shaped like the fence's tags.
    '</?excerpt-[^\\s>]*',
  ].join('|'),
  'gi',
)

const LOOK_ALIKE: Record<string, string> = { '<': '‹', '>': '›', '[': '⁅', ']': '⁆' }

const FENCE_LINE = /^ {0,3}(`{3,}|~{3,})(.*)$/

/** The code fence left open at the end of `text` (its run of ` or ~), or '' when none is. */
function openFence(text: string): string {
  let open = ''
  for (const line of text.split('\n')) {
    const match = FENCE_LINE.exec(line)
    if (match === null) continue
    const run = match[1] as string
    if (open === '') open = run
    // A closer is a bare run of the opener's character, at least as long.
    else if (run[0] === open[0] && run.length >= open.length && (match[2] as string).trim() === '')
      open = ''
  }
  return open
}

const TAG_CHARACTERS = /[\u{E0000}-\u{E007F}]/gu

/** Text with every control token and fence-like tag broken (a title or a breadcrumb: one line). */
export const defuseControlTokens = (text: string): string =>
  text
    .replace(TAG_CHARACTERS, '')
    .replace(CONTROL, (token) => token.replace(/[<>[\]]/g, (c) => LOOK_ALIKE[c] as string))

/** A chunk's text made safe to place inside the prompt's fence: tokens broken, fences closed. */
export function defusePageText(text: string): string {
  const defused = defuseControlTokens(text)
  const fence = openFence(defused)
  return fence === '' ? defused : `${defused}\n${fence}`
}
