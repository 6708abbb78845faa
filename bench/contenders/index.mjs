// Every contender variant, side by side. Each has: id, label, family, threads, optional
// missing() (why it cannot run here) and notExpressible(cfg), and open(workload) -> session with
// output(), time(plan), close() (and forwardOnce() for the event-loop stall probe).

import { birnnVariants } from './birnn.mjs'
import { ortVariants } from './onnxruntime.mjs'
import { torchVariants } from './pytorch.mjs'
import { tfjsVariants } from './tfjs.mjs'

export function allVariants() {
  return [...birnnVariants(), ...ortVariants(), ...torchVariants(), ...tfjsVariants()]
}
