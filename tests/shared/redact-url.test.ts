import { redactUrl } from '@confluence-bot/shared'
import t from 'tap'

t.test('redactUrl hides the user info and every query value', async (t) => {
  t.equal(redactUrl('http://user:pa55@ollama:11434'), 'http://***:***@ollama:11434')
  t.equal(redactUrl('http://ollama:11434/?token=abc'), 'http://ollama:11434/?token=***')
  t.equal(
    redactUrl('https://u:p%40ss@gw.example/ollama?token=abc&region=eu&token=def'),
    'https://***:***@gw.example/ollama?token=***&region=***&token=***',
  )
  // A bare part may be the secret itself; an empty part stays empty.
  t.equal(redactUrl('http://h/p?s3cret&&k='), 'http://h/p?***&&k=***')
  t.equal(redactUrl('http://h:1/'), 'http://h:1', 'no query: unchanged')
  t.equal(redactUrl('http://user@h:1'), 'http://***@h:1', 'a user name alone is hidden too')
})
