// A token estimate that errs on the high side for the tokenizers our text meets: the embedding
// model's (nomic-embed-text: BERT WordPiece, uncased) and the chat model's (llama-family BPE). It
// is one cheap pass over the UTF-16 code units, with no vocabulary:
// - a run of ASCII letters costs ceil(length / 3): both tokenizers keep common words whole and
//   cut rare ones into pieces of about 3–4 letters (`tokenizer` = 3, BERT says 2);
// - every ASCII digit costs 1 (llama 2 splits numbers into single digits);
// - every other visible ASCII character costs 1: BERT makes each punctuation character a token of
//   its own, so a table rule `| --- |` is 5 tokens and `foo(bar);` is 5;
// - a newline, carriage return or tab costs 1; a single space 0 (BPE glues it to the next word);
//   a run of n ≥ 2 spaces ceil(n / 4) (indentation);
// - a Hangul syllable costs the number of jamo it decomposes into — 2, or 3 with a final
//   consonant: BERT's uncased normalizer (NFD) splits it so and emits a WordPiece per jamo, and
//   byte-fallback BPE spends at most its 3 UTF-8 bytes;
// - half of a surrogate pair (emoji and other astral characters) costs 2, so 4 per character,
//   the most a byte-fallback BPE spends;
// - any other character (CJK ideographs, kana, accented Latin, Cyrillic…) costs 1: BERT makes
//   each CJK ideograph a token of its own.
// English prose comes out at about 1.5–1.9 tokens per word (BERT: about 1.3), code and tables at
// about one per symbol. The estimate is additive: for texts a and b that neither end nor start
// with whitespace, estimateTokens(a + sep + b) = estimateTokens(a) + estimateTokens(sep) +
// estimateTokens(b) for sep '\n', '\n\n' or ' ', which lets the packer add up costs instead of
// re-measuring text.
export function estimateTokens(text: string): number {
  let tokens = 0
  let letters = 0
  let spaces = 0
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if ((c >= 97 && c <= 122) || (c >= 65 && c <= 90)) {
      letters++
      if (spaces > 0) {
        tokens += spaceRunCost(spaces)
        spaces = 0
      }
      continue
    }
    if (letters > 0) {
      tokens += Math.ceil(letters / 3)
      letters = 0
    }
    if (c === 32) {
      spaces++
      continue
    }
    if (spaces > 0) {
      tokens += spaceRunCost(spaces)
      spaces = 0
    }
    tokens += charCost(c)
  }
  return tokens + Math.ceil(letters / 3) + spaceRunCost(spaces)
}

function spaceRunCost(spaces: number): number {
  return spaces > 1 ? Math.ceil(spaces / 4) : 0
}

function charCost(c: number): number {
  if (c >= 0xac00 && c <= 0xd7a3) return (c - 0xac00) % 28 === 0 ? 2 : 3
  if (c >= 0xd800 && c <= 0xdfff) return 2
  return 1
}
