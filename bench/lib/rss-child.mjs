// Peak RSS of one contender on one workload, in a process of its own:
//   node bench/lib/rss-child.mjs <variant id> <workload>
// Loads the model, runs one forward, prints {"baselineRss": bytes, "peakRss": bytes} where the
// baseline is the process after Node started and the bench modules loaded (before any library).

import { readFileSync } from 'node:fs'
import { allVariants } from '../contenders/index.mjs'
import { manifest, workload } from './workloads.mjs'

const baselineRss = process.memoryUsage.rss()
const [id, name] = process.argv.slice(2)
const v = allVariants().find((x) => x.id === id)
if (!v) throw new Error(`unknown contender ${id}`)
const w = workload(manifest(), name)
const s = await v.open(w)
await s.output()
s.close()
// VmHWM, not resourceUsage().maxRSS: Linux carries the parent's high-water mark across exec.
const hwm = readFileSync('/proc/self/status', 'utf8').match(/^VmHWM:\s+(\d+) kB/m)
const peakRss = hwm ? Number(hwm[1]) * 1024 : process.resourceUsage().maxRSS * 1024
process.stdout.write(`${JSON.stringify({ baselineRss, peakRss })}\n`)
process.exit(0)
