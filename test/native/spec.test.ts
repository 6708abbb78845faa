// lib/spec.ts and native/spec.h state the same contract; the addon exports its table, and this
// test fails when either side changes alone.
import { describe, expect, it } from 'vitest'
import { loadAddon } from '../../lib/engines/addon.js'
import { GATES, ISAS, MAX_THREADS, MODES } from '../../lib/spec.js'
import { nativeMissing } from '../helpers.js'

const missing = nativeMissing()

describe.skipIf(missing)(`the TS/C++ contract${missing ? ` (skipped: ${missing})` : ''}`, () => {
  it('native/spec.h, as exported by the addon, equals lib/spec.ts', () => {
    const spec = loadAddon().addon!.spec()
    expect(spec).toEqual({
      modes: MODES.map((name, id) => ({ name, id, gates: GATES[name] })),
      isas: ISAS.map((name, id) => ({ name, id })),
      maxThreads: MAX_THREADS,
    })
  })

  it("the addon's ISA report uses the spec's names", () => {
    const { best, supported } = loadAddon().addon!.isa()
    expect(ISAS).toContain(best)
    for (const isa of supported) expect(ISAS).toContain(isa)
    expect(supported.at(-1)).toBe('generic')
  })
})
