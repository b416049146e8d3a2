// The one output format of every benchmark (DESIGN.md §4): figures on stdout, one JSON object a
// line, `{"bench":NAME,"metric":NAME,"value":NUMBER,"unit":TEXT}`. Everything meant for a person
// (progress, explanations) goes to stderr, so stdout stays machine-readable.

export type Report = (metric: string, value: number, unit: string) => void

/** A printer for one benchmark's figures. Values are rounded to 3 decimals; NaN is refused. */
export function reporter(bench: string): Report {
  return (metric, value, unit) => {
    if (!Number.isFinite(value)) throw new Error(`${bench}: metric ${metric} is not a number`)
    const rounded = Math.round(value * 1000) / 1000
    process.stdout.write(`${JSON.stringify({ bench, metric, value: rounded, unit })}\n`)
  }
}

/** A progress/explanation line on stderr, prefixed with the benchmark's name. */
export function note(bench: string, message: string): void {
  process.stderr.write(`[${bench}] ${message}\n`)
}

/** A positive number from the environment (a benchmark's knob), or its default. */
export function setting(name: string, fallback: number, integer = false): number {
  const raw = process.env[name]
  if (raw === undefined || raw === '') return fallback
  const value = Number(raw)
  if (!(integer ? Number.isInteger(value) : Number.isFinite(value)) || value <= 0) {
    throw new Error(`${name} must be a positive ${integer ? 'integer' : 'number'}`)
  }
  return value
}
