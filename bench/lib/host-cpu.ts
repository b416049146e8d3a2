import { readFileSync } from 'node:fs'

// CPU time the whole machine spent busy (user, nice, system, irq, softirq; not idle, iowait or
// steal), from /proc/stat. Subtracting what the benchmark's own processes used gives the CPU
// other programs took during a run: on a shared machine, the reason a run came out low.

/** Busy CPU seconds since boot, all cores together; undefined where /proc/stat is missing. */
export function hostBusySeconds(): number | undefined {
  let stat: string
  try {
    stat = readFileSync('/proc/stat', 'utf8')
  } catch {
    return undefined
  }
  const fields = stat.slice(0, stat.indexOf('\n')).trim().split(/\s+/).slice(1).map(Number)
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0] = fields
  return (user + nice + system + irq + softirq) / 100 // USER_HZ is 100 on Linux
}
