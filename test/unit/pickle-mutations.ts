// Mutations of a pickle stream for the fuzz tests (pickle.test.ts, torch-checkpoint.test.ts).
import type { rng } from '../helpers.js'

const OPCODES = [
  0x28, 0x2e, 0x30, 0x31, 0x32, 0x4a, 0x4b, 0x4d, 0x4e, 0x51, 0x52, 0x58, 0x5d, 0x61, 0x62, 0x63, 0x65, 0x68, 0x69,
  0x6a, 0x71, 0x72, 0x73, 0x74, 0x75, 0x7d, 0x80, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x8b, 0x8c, 0x8d, 0x93, 0x94,
  0x95,
]

/** One mutation of a pickle: a byte changed, an opcode put in, bytes removed, repeated or cut off. */
export function mutatePickle(original: Uint8Array, r: ReturnType<typeof rng>): { bytes: Uint8Array; kind: string } {
  const pick = <T>(values: readonly T[]): T => values[r.int(0, values.length - 1)]
  const at = r.int(0, original.length - 1)
  const kind = pick(['byte', 'opcode', 'delete', 'insert', 'truncate', 'repeat', 'global', 'length'])
  const bytes = Array.from(original)
  switch (kind) {
    case 'byte':
      for (let i = r.int(1, 3); i > 0; i--) bytes[r.int(0, bytes.length - 1)] = r.int(0, 255)
      break
    case 'opcode':
      bytes[at] = pick(OPCODES)
      break
    case 'delete':
      bytes.splice(at, r.int(1, 8))
      break
    case 'insert':
      bytes.splice(at, 0, pick(OPCODES), ...Array.from({ length: r.int(0, 4) }, () => r.int(0, 255)))
      break
    case 'truncate':
      bytes.length = at
      break
    case 'repeat': {
      const end = Math.min(bytes.length, at + r.int(1, 64))
      bytes.splice(at, 0, ...bytes.slice(at, end))
      break
    }
    case 'global': {
      const text = new TextDecoder('latin1').decode(original)
      const starts = [...text.matchAll(/c[a-z_.]+\n[A-Za-z_0-9]+\n/g)].map((m) => m.index!)
      if (starts.length === 0) break
      const start = pick(starts)
      const end = text.indexOf('\n', text.indexOf('\n', start) + 1) + 1
      const name = pick([
        'cposix\nsystem\n',
        'cbuiltins\neval\n',
        'ctorch\nLongStorage\n',
        'ccollections\nOrderedDict\n',
      ])
      bytes.splice(start, end - start, ...new TextEncoder().encode(name))
      break
    }
    case 'length': {
      // A BININT1 / BINUNICODE / BINPUT operand set to a boundary value.
      bytes[at] = pick([0, 1, 0x7f, 0x80, 0xff])
      break
    }
  }
  return { bytes: Uint8Array.from(bytes), kind }
}
