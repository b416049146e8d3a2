import { AppError, ErrorCode } from '@confluence-bot/shared'

// How many model calls (answers from the chat model, and embeddings asked for by clients) run
// at once. Each holds one of the api's connections to Ollama for as long as it runs (the pool
// has 128, lib/ollama-upstream.ts): without a cap one key opening a few hundred slow streams,
// or slow embeddings of large inputs, would take them all and every other user would wait.
// Two caps, counted in this process (each replica has its own pool):
// - per caller (API key, or IP address without keys): over it, 429, the caller's own doing;
// - overall, below the pool's size so searches and model lists still get a connection: over
//   it, 503, the server is busy for everybody.
// The settings keep their first names (ANSWER_CONCURRENCY…): an embedding counts as an answer.

/** Seconds a refused caller is told to wait: answers take seconds, the exact moment is unknown. */
export const RETRY_AFTER_S = { perCaller: 2, overall: 5 } as const

/** A refusal, with the Retry-After it is answered with. */
export class AnswerRefused extends AppError {
  override name = 'AnswerRefused'
  readonly retryAfterS: number
  constructor(status: 429 | 503, message: string) {
    super(status, status === 429 ? ErrorCode.tooManyAnswers : ErrorCode.answersBusy, message)
    this.retryAfterS = status === 429 ? RETRY_AFTER_S.perCaller : RETRY_AFTER_S.overall
  }
}

/** Gives a slot back; calling it again does nothing, so every way an answer ends may call it. */
export type Release = () => void

export class AnswerSlots {
  readonly overall: number
  readonly perCaller: number
  #running = 0
  readonly #byCaller = new Map<string, number>()

  constructor(limits: { overall: number; perCaller: number }) {
    this.overall = limits.overall
    this.perCaller = limits.perCaller
  }

  /** Model calls running now, in all, or for one caller. */
  running(caller?: string): number {
    return caller === undefined ? this.#running : (this.#byCaller.get(caller) ?? 0)
  }

  /** A slot for one of `caller`'s model calls, or the refusal to answer with. */
  take(caller: string): Release | AnswerRefused {
    const mine = this.running(caller)
    if (mine >= this.perCaller) {
      return new AnswerRefused(
        429,
        `This API key already has ${mine} answers or embeddings running, the most it may have at once (ANSWER_CONCURRENCY_PER_KEY); retry in ${RETRY_AFTER_S.perCaller} s or when one has finished`,
      )
    }
    if (this.#running >= this.overall) {
      return new AnswerRefused(
        503,
        `The server is running ${this.#running} answers and embeddings at once, its most (ANSWER_CONCURRENCY); retry in ${RETRY_AFTER_S.overall} s`,
      )
    }
    this.#running += 1
    this.#byCaller.set(caller, mine + 1)
    let released = false
    return () => {
      if (released) return
      released = true
      this.#running -= 1
      const left = this.running(caller) - 1
      if (left === 0) this.#byCaller.delete(caller)
      else this.#byCaller.set(caller, left)
    }
  }
}
