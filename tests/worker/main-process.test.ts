import t from 'tap'
import { request } from 'undici'
import { runService } from '../helpers/process.ts'
import { startRedis } from '../helpers/redis.ts'

const ENTRY = 'services/worker/src/main.ts'

t.test('a bad setting stops the worker with a message naming the variable', async (t) => {
  const worker = runService(t, ENTRY, { WORKER_CONCURRENCY: 'many' })
  t.equal((await worker.exit).code, 1)
  t.match(worker.output(), /WORKER_CONCURRENCY must be integer/)
})

t.test('the worker connects, reports ready, and stops cleanly on SIGTERM', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const worker = runService(t, ENTRY, {
    REDIS_URL: redis.url,
    WORKER_HEALTH_PORT: '0',
    LOG_LEVEL: 'info',
  })
  const line = await worker.waitFor(/worker started/)
  const port = JSON.parse(line).healthPort as number
  let ready = 0
  for (let i = 0; i < 50 && ready !== 200; i++) {
    const res = await request(`http://127.0.0.1:${port}/health/ready`)
    ready = res.statusCode
    await res.body.dump()
    if (ready !== 200) await new Promise((r) => setTimeout(r, 100))
  }
  t.equal(ready, 200)
  worker.child.kill('SIGTERM')
  t.equal((await worker.exit).code, 0)
  t.match(worker.output(), /worker stopped/)
})
