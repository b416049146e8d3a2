import t from 'tap'
import { convertStorage } from '../../../services/worker/src/convert/index.ts'

// Converter bugs found while killing mutants (issue 10, item 12): each test failed before its fix.

const md = (storage: string) => convertStorage(storage).markdown
const nest = (n: number, open: string, close: string, inner = 'deep text') =>
  open.repeat(n) + inner + close.repeat(n)

t.test('task lists nested in tasks are bounded like any nesting (no stack overflow)', async (t) => {
  // A task list inside an ac:task (not inside its body) recursed in taskList() without the depth
  // check: 5000 levels (390 KB, far below maxBytes) threw a RangeError out of convertStorage.
  const tasks = (n: number) =>
    nest(n, '<ac:task-list><ac:task><ac:task-body>t</ac:task-body>', '</ac:task></ac:task-list>')
  t.doesNotThrow(() => convertStorage(tasks(5000)))
  // 1000 levels did not throw, but the markdown pass overflowed and the page became plain text.
  const { markdown, warnings } = convertStorage(tasks(1000))
  t.notMatch(warnings.join('\n'), /converted as plain text/)
  t.match(markdown, /^- \[ \] t\n {2}- \[ \] t\n/)
})
