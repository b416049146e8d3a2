export * from './config/index.ts'
export * from './errors/index.ts'
export * from './logging/index.ts'
export * from './queues/index.ts'
