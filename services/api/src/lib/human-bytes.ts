const UNITS = ['B', 'KB', 'MB', 'GB', 'TB', 'PB']

/** Bytes as a person reads them, in powers of 1000 like Ollama's own CLI: "2.0 GB", "274 MB". */
export function humanBytes(bytes: number): string {
  let value = Math.max(0, bytes)
  let unit = 0
  while (value >= 1000 && unit < UNITS.length - 1) {
    value /= 1000
    unit += 1
  }
  if (unit === 0) return `${value} B`
  const text = value >= 100 ? value.toFixed(0) : value.toFixed(1)
  return `${text} ${UNITS[unit]}`
}
