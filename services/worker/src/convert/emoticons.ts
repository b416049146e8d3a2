// Confluence emoticons → emoji. Cloud pages name the emoji by code point (`ac:emoji-id`) and
// carry a fallback; older pages only have a name.

const NAMED: Record<string, string> = {
  smile: '🙂',
  sad: '🙁',
  cheeky: '😛',
  laugh: '😀',
  wink: '😉',
  'thumbs-up': '👍',
  'thumbs-down': '👎',
  information: 'ℹ️',
  tick: '✅',
  cross: '❌',
  warning: '⚠️',
  plus: '➕',
  minus: '➖',
  question: '❓',
  'light-on': '💡',
  'light-off': '💡',
  'yellow-star': '⭐',
  'red-star': '⭐',
  'green-star': '⭐',
  'blue-star': '⭐',
  heart: '❤️',
  'broken-heart': '💔',
}

export function emoticon(attribs: Record<string, string | undefined>): string {
  const id = attribs['ac:emoji-id']
  if (id && /^[0-9a-f]{2,6}(-[0-9a-f]{2,6})*$/i.test(id)) {
    return id
      .split('-')
      .map((cp) => String.fromCodePoint(Number.parseInt(cp, 16)))
      .join('')
  }
  const fallback = attribs['ac:emoji-fallback']
  if (fallback && !/^:.*:$/.test(fallback)) return fallback
  const name = attribs['ac:name'] ?? ''
  return NAMED[name] ?? fallback ?? attribs['ac:emoji-shortname'] ?? `:${name}:`
}
