// Page text is put in the prompt as data, between tags named with a random fence. Two things
// could still let a page reach outside its excerpt:
//
// - Chat-template control tokens spelt out in the text (`<|eot_id|>`, `<|im_start|>`, `[INST]`,
//   `<end_of_turn>`, `</think>`…). Ollama renders the messages into one prompt and tokenizes it
//   with special tokens parsed everywhere, content included, so such a literal becomes a real
//   turn boundary: a page could end the user's turn and open a system one. Their brackets are
//   swapped for look-alikes, which no tokenizer reads as a control token; the words stay.
// - A tag shaped like the fence (`</excerpt-…>`): it cannot match the random one, but it is
//   broken the same way so that a model is not misled into reading the excerpt as closed.
// - A code fence (``` or ~~~) the excerpt opens and never closes would turn the rest of the
//   message, the question included, into "code" for the model: it is closed at the excerpt's
//   end.

const CONTROL = new RegExp(
  [
    // `<|…|>`: Llama 3, ChatML (Qwen, Phi, Granite), Harmony, DeepSeek (full-width bars too).
    '<[|｜][^<>\\s]{1,48}?[|｜]>',
    // Gemma, Llama 2 / Mistral sentence marks, thinking and tool tags of several families.
    '</?(?:s|bos|eos|pad|unk|start_of_turn|end_of_turn|think|tool_call|tool_response|tools)>',
    // Llama 2 / Mistral instruction and system markers.
    '\\[/?(?:INST|SYS|TOOL_CALLS|AVAILABLE_TOOLS|TOOL_RESULTS|SYSTEM_PROMPT)\\]',
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

/** Text with every control token and fence-like tag broken (a title or a breadcrumb: one line). */
export const defuseControlTokens = (text: string): string =>
  text.replace(CONTROL, (token) => token.replace(/[<>[\]]/g, (c) => LOOK_ALIKE[c] as string))

/** A chunk's text made safe to place inside the prompt's fence: tokens broken, fences closed. */
export function defusePageText(text: string): string {
  const defused = defuseControlTokens(text)
  const fence = openFence(defused)
  return fence === '' ? defused : `${defused}\n${fence}`
}
