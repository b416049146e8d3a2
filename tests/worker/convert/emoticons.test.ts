import t from 'tap'
import { convertStorage } from '../../../services/worker/src/convert/index.ts'

// Confluence emoticons → emoji (issue 10, item 12: the mutation run found the emoticon table and
// its precedence unguarded). Cloud pages name the emoji by code point (`ac:emoji-id`) with a
// fallback and a shortname; older pages, Server and Data Center only name a legacy emoticon.

const md = (storage: string) => convertStorage(storage).markdown

/** One emoticon element in a paragraph, with the attributes given (undefined ones left out). */
const emoticon = (attributes: Record<string, string>) =>
  `<p>a <ac:emoticon${Object.entries(attributes)
    .map(([name, value]) => ` ${name}="${value}"`)
    .join('')}/> b</p>`

t.test('every legacy emoticon name becomes the emoji Confluence shows for it', async (t) => {
  const legacy: Array<[string, string]> = [
    ['smile', '🙂'],
    ['sad', '🙁'],
    ['cheeky', '😛'],
    ['laugh', '😀'],
    ['wink', '😉'],
    ['thumbs-up', '👍'],
    ['thumbs-down', '👎'],
    ['information', 'ℹ️'],
    ['tick', '✅'],
    ['cross', '❌'],
    ['warning', '⚠️'],
    ['plus', '➕'],
    ['minus', '➖'],
    ['question', '❓'],
    ['light-on', '💡'],
    ['light-off', '💡'],
    ['yellow-star', '⭐'],
    ['red-star', '⭐'],
    ['green-star', '⭐'],
    ['blue-star', '⭐'],
    ['heart', '❤️'],
    ['broken-heart', '💔'],
  ]
  for (const [name, emoji] of legacy) {
    t.equal(md(emoticon({ 'ac:name': name })), `a ${emoji} b\n`, name)
  }
})

t.test('a Cloud emoji id is decoded from its code points', async (t) => {
  t.equal(md(emoticon({ 'ac:emoji-id': '1f600' })), 'a 😀 b\n', 'one code point')
  t.equal(md(emoticon({ 'ac:emoji-id': '2705' })), 'a ✅ b\n', 'four hex digits')
  t.equal(md(emoticon({ 'ac:emoji-id': '1F44D' })), 'a 👍 b\n', 'upper-case hex')
  // Flags, keycaps and skin tones are several code points joined by '-'.
  t.equal(md(emoticon({ 'ac:emoji-id': '1f1f0-1f1f7' })), 'a 🇰🇷 b\n', 'a flag')
  t.equal(md(emoticon({ 'ac:emoji-id': '1f44d-1f3fd' })), 'a 👍🏽 b\n', 'a skin tone')
  t.equal(md(emoticon({ 'ac:emoji-id': '31-20e3' })), 'a 1⃣ b\n', 'a keycap')
})

t.test('the id wins over the fallback and the legacy name', async (t) => {
  t.equal(
    md(
      emoticon({
        'ac:name': 'sad',
        'ac:emoji-id': '1f600',
        'ac:emoji-fallback': '🙂',
        'ac:emoji-shortname': ':grinning:',
      }),
    ),
    'a 😀 b\n',
  )
})

t.test('an id that is not code points is never decoded: the fallback stands in', async (t) => {
  const invalid = [
    'atlassian-check_mark', // Atlassian's own emoji
    'smile',
    '1f600zz', // trailing garbage
    'zz1f600', // leading garbage
    '1f44d-zz', // a part that is not hex
    '1f44d-', // an empty part
    '1', // too short
    '1f6000a', // too long
  ]
  for (const id of invalid) {
    const { markdown, warnings } = convertStorage(
      emoticon({ 'ac:emoji-id': id, 'ac:emoji-fallback': '🎉', 'ac:name': 'sad' }),
    )
    t.equal(markdown, 'a 🎉 b\n', id)
    t.same(warnings, [], `${id}: no warning`)
  }
})

t.test('a fallback that is an emoji wins over the legacy name', async (t) => {
  t.equal(md(emoticon({ 'ac:name': 'smile', 'ac:emoji-fallback': '😄' })), 'a 😄 b\n')
  t.equal(md(emoticon({ 'ac:name': 'blue-star', 'ac:emoji-fallback': '🌟' })), 'a 🌟 b\n')
  t.equal(md(emoticon({ 'ac:emoji-fallback': '🚀' })), 'a 🚀 b\n', 'no name at all')
})

t.test('a fallback that is a :shortcode: gives way to the legacy name', async (t) => {
  t.equal(
    md(emoticon({ 'ac:name': 'smile', 'ac:emoji-fallback': ':slightly_smiling_face:' })),
    'a 🙂 b\n',
  )
  t.equal(md(emoticon({ 'ac:name': 'tick', 'ac:emoji-fallback': ':x:' })), 'a ✅ b\n')
  // With no emoji of our own, the shortcode is the best text there is.
  t.equal(md(emoticon({ 'ac:name': 'custom', 'ac:emoji-fallback': ':party:' })), 'a :party: b\n')
})

t.test('a fallback that only looks half like a :shortcode: is taken as written', async (t) => {
  // Text emoticons: a colon at one end only, or in the middle.
  for (const fallback of [':-)', '(:', ':D:)', 'x:y:', ':P :)']) {
    t.equal(
      md(emoticon({ 'ac:name': 'smile', 'ac:emoji-fallback': fallback })),
      `a ${fallback} b\n`,
    )
  }
})

t.test('with no id, fallback or known name: the shortname, then the name', async (t) => {
  t.equal(
    md(emoticon({ 'ac:name': 'rocket', 'ac:emoji-shortname': ':rocket:' })),
    'a :rocket: b\n',
    'an unknown legacy name with a shortname',
  )
  t.equal(md(emoticon({ 'ac:emoji-shortname': ':tada:' })), 'a :tada: b\n', 'a shortname only')
  t.equal(md(emoticon({ 'ac:name': 'rocket' })), 'a :rocket: b\n', 'an unknown name only')
  t.equal(
    md(emoticon({ 'ac:name': 'heart', 'ac:emoji-shortname': ':hearts:' })),
    'a ❤️ b\n',
    'a known name wins over the shortname',
  )
  t.equal(md(emoticon({})), 'a :: b\n', 'nothing at all: an empty shortcode')
})
