import { buildApp } from '@confluence-bot/api'
import { AppError, ErrorCode } from '@confluence-bot/shared'
import t from 'tap'
import { testConfig } from '../helpers/api.ts'

// Shedding load must not cost what it saves: under a flood every refused request would be a
// warn line (thousands a second, written while the event loop is already saturated). Sheds are
// counted by /metrics; their log lines are debug. A dependency that is down still warns.

t.test('load shedding logs at debug, a dependency failure at warn', async (t) => {
  const lines: Array<{ level: number; msg: string; error?: string }> = []
  const app = buildApp({
    config: await testConfig(t),
    logger: { level: 'debug', stream: { write: (line: string) => lines.push(JSON.parse(line)) } },
  })
  t.teardown(() => app.close())
  const refusals = {
    overloaded: new AppError(503, ErrorCode.overloaded, 'The api is overloaded'),
    busy: new AppError(503, ErrorCode.answersBusy, 'Too many answers under way'),
    many: new AppError(429, ErrorCode.tooManyAnswers, 'This key has too many answers'),
    limited: new AppError(429, ErrorCode.rateLimited, 'Rate limit reached'),
    down: new AppError(503, ErrorCode.redisUnavailable, 'Redis is unreachable'),
  }
  for (const [name, error] of Object.entries(refusals)) {
    app.get(`/refuse/${name}`, async () => {
      throw error
    })
  }
  const levelOf = async (name: string) => {
    const res = await app.inject({ url: `/refuse/${name}` })
    t.equal(res.statusCode, refusals[name as keyof typeof refusals].statusCode)
    return lines.find((line) => line.error === res.json().error)?.level
  }
  const DEBUG = 20
  const WARN = 40
  t.equal(await levelOf('overloaded'), DEBUG)
  t.equal(await levelOf('busy'), DEBUG)
  t.equal(await levelOf('many'), DEBUG)
  t.equal(await levelOf('limited'), DEBUG)
  t.equal(await levelOf('down'), WARN, 'a dependency that is down is worth a warning')
})
