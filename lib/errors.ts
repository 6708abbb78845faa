// Every error the library throws, built here so each has the same shape and a stable `code`:
//   message  `<argument>: expected <what>, received <what came>`
//   class    TypeError for a value of the wrong kind, RangeError for the right kind but the wrong
//            size or value, Error for everything else (a bad file, a disposed model, ...)
//   code     what went wrong, stable across releases (the README lists them)
// The three classes are subclasses of the built-ins, so `instanceof TypeError` keeps working, and
// `instanceof BirnnError` is true for all three.

import type { Tensor } from './types.js'

export type ErrorCode =
  /** TypeError: an argument or option of the wrong kind. */
  | 'ERR_BIRNN_INVALID_ARG'
  /** TypeError: an options object with a key the function does not know (a typo must not pass). */
  | 'ERR_BIRNN_UNKNOWN_OPTION'
  /** RangeError: a tensor or array whose shape or length does not fit the model. */
  | 'ERR_BIRNN_SHAPE'
  /** RangeError: a number outside its range (threads, a sequence length). */
  | 'ERR_BIRNN_OUT_OF_RANGE'
  /** Error: bytes that are not a valid safetensors file. */
  | 'ERR_BIRNN_SAFETENSORS'
  /** Error or RangeError: tensors that do not describe a supported nn.RNN / GRU / LSTM. */
  | 'ERR_BIRNN_STATE_DICT'
  /** Error: the requested backend or instruction set is not available here. */
  | 'ERR_BIRNN_BACKEND'
  /** Error: the model was disposed. */
  | 'ERR_BIRNN_DISPOSED'
  /** Error: the native kernel failed (out of memory, or an internal check). */
  | 'ERR_BIRNN_NATIVE'
  /** Error: a torch.save checkpoint that is not valid, or holds what birnn refuses to unpickle. */
  | 'ERR_BIRNN_CHECKPOINT'
  /** Error: an ONNX file that is not valid, or a graph birnn cannot run exactly. */
  | 'ERR_BIRNN_ONNX'
  /** Error: a batcher's queue is full (`maxQueue` requests wait): try again later. */
  | 'ERR_BIRNN_QUEUE_FULL'
  /** Error: a request to a batcher that was closed. */
  | 'ERR_BIRNN_CLOSED'

export class BirnnError extends Error {
  readonly code: ErrorCode
  constructor(code: ErrorCode, message: string) {
    super(message)
    this.code = code
  }
  static override [Symbol.hasInstance](value: unknown): boolean {
    return (
      value instanceof Error &&
      typeof (value as { code?: unknown }).code === 'string' &&
      isCode((value as BirnnError).code)
    )
  }
}

export class BirnnTypeError extends TypeError {
  readonly code: ErrorCode
  constructor(code: ErrorCode, message: string) {
    super(message)
    this.code = code
  }
}

export class BirnnRangeError extends RangeError {
  readonly code: ErrorCode
  constructor(code: ErrorCode, message: string) {
    super(message)
    this.code = code
  }
}

const CODES: ReadonlySet<string> = new Set<ErrorCode>([
  'ERR_BIRNN_INVALID_ARG',
  'ERR_BIRNN_UNKNOWN_OPTION',
  'ERR_BIRNN_SHAPE',
  'ERR_BIRNN_OUT_OF_RANGE',
  'ERR_BIRNN_SAFETENSORS',
  'ERR_BIRNN_STATE_DICT',
  'ERR_BIRNN_BACKEND',
  'ERR_BIRNN_DISPOSED',
  'ERR_BIRNN_NATIVE',
  'ERR_BIRNN_CHECKPOINT',
  'ERR_BIRNN_ONNX',
  'ERR_BIRNN_QUEUE_FULL',
  'ERR_BIRNN_CLOSED',
])
const isCode = (code: string): code is ErrorCode => CODES.has(code)

// %TypedArray%.prototype's own getters, which read the array's internal slots.
const typedArrayGetter = (key: string) =>
  Object.getOwnPropertyDescriptor(Object.getPrototypeOf(Float32Array.prototype), key)!.get! as (
    this: Float32Array,
  ) => never
const BUFFER: (this: Float32Array) => ArrayBufferLike = typedArrayGetter('buffer')
const BYTE_OFFSET: (this: Float32Array) => number = typedArrayGetter('byteOffset')
const LENGTH: (this: Float32Array) => number = typedArrayGetter('length')

/** A short, readable description of any value, for error messages. */
export function describe(value: unknown): string {
  if (value === null) return 'null'
  if (value === undefined) return 'undefined'
  if (Array.isArray(value)) return `an array of length ${value.length}`
  if (ArrayBuffer.isView(value)) {
    const length = (value as { length?: number }).length
    if (isDetached(value.buffer)) return `a ${value.constructor.name} whose buffer is detached`
    return length === undefined ? value.constructor.name : `${value.constructor.name} of length ${length}`
  }
  switch (typeof value) {
    case 'string':
      return `the string ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)}`
    case 'number':
    case 'boolean':
    case 'bigint':
      return `${typeof value} ${String(value)}`
    case 'function':
      return 'a function'
    case 'object': {
      // The prototype's constructor, not a `constructor` key of a parsed JSON object; its name bounded.
      const made = Object.getPrototypeOf(value)?.constructor
      const kind = typeof made === 'function' && made !== Object ? String(made.name).slice(0, 40) : ''
      return kind ? `a ${kind}` : 'an object'
    }
    default:
      return typeof value
  }
}

/** A transferred ArrayBuffer reads as empty; only constructing a view on it tells it apart. */
export function isDetached(buffer: ArrayBufferLike): boolean {
  if (buffer.byteLength !== 0) return false
  try {
    new Uint8Array(buffer)
    return false
  } catch {
    return true
  }
}

export function formatShape(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`
}

/** TypeError for a value of the wrong kind. */
export function typeError(name: string, expected: string, received: unknown): BirnnTypeError {
  return new BirnnTypeError('ERR_BIRNN_INVALID_ARG', `${name}: expected ${expected}, received ${describe(received)}`)
}

/** RangeError for a value of the right kind but out of range; `received` is already formatted. */
export function rangeError(
  name: string,
  expected: string,
  received: string,
  code: ErrorCode = 'ERR_BIRNN_OUT_OF_RANGE',
): BirnnRangeError {
  return new BirnnRangeError(code, `${name}: expected ${expected}, received ${received}`)
}

/** RangeError for a tensor whose shape does not fit. */
export function shapeError(
  name: string,
  expected: readonly number[],
  received: readonly number[],
  code: ErrorCode = 'ERR_BIRNN_SHAPE',
): BirnnRangeError {
  return rangeError(name, `shape ${formatShape(expected)}`, formatShape(received), code)
}

/**
 * Rejects keys of an options object that the function does not know: a typo must not pass silently.
 * Inherited keys too, as destructuring reads them, short of Object.prototype's (which a library in
 * the process may have added to: nobody's options). An array is no options object.
 */
export function checkKeys(name: string, options: object, known: readonly string[]): void {
  if (Array.isArray(options)) throw typeError(name, 'an object', options)
  for (let o: object | null = options; o !== null && o !== Object.prototype; o = Object.getPrototypeOf(o)) {
    for (const key of Object.keys(o)) {
      if (!known.includes(key)) {
        throw new BirnnTypeError(
          'ERR_BIRNN_UNKNOWN_OPTION',
          `${name}: unknown option '${key}' (known options: ${known.join(', ')})`,
        )
      }
    }
  }
}

/**
 * Checks a { data: Float32Array, shape } value, naming it `name` in the errors. The shape returned
 * is a copy, each entry read once: what was checked is what is used (a hole or a getter in the
 * caller's array cannot change it afterwards).
 */
export function checkTensor(name: string, value: unknown): Tensor {
  if (typeof value !== 'object' || value === null || !('data' in value) || !('shape' in value)) {
    throw typeError(name, 'a tensor { data: Float32Array, shape: number[] }', value)
  }
  const { data: givenData, shape: given } = value as Tensor
  if (!(givenData instanceof Float32Array) || isDetached(BUFFER.call(givenData)))
    throw typeError(`${name}.data`, 'a Float32Array', givenData)
  // A plain view of the same memory, through the intrinsic accessors: a subclass or an own
  // `length` cannot lie about the size, nor `slice()` hand a copy to the caller (Symbol.species).
  const data = new Float32Array(BUFFER.call(givenData), BYTE_OFFSET.call(givenData), LENGTH.call(givenData))
  const shape: number[] = []
  for (let i = 0; Array.isArray(given) && i < given.length; i++) {
    const d = given[i] // a hole reads as undefined, which every() and reduce() would skip
    if (!Number.isSafeInteger(d) || d < 0) break
    shape.push(d)
  }
  if (!Array.isArray(given) || shape.length !== given.length) {
    throw typeError(`${name}.shape`, 'an array of non-negative integers', given)
  }
  const size = shape.reduce((a, b) => a * b, 1)
  if (size !== data.length) {
    throw rangeError(
      `${name}.data`,
      `length ${size} (the product of shape ${formatShape(shape)})`,
      `length ${data.length}`,
      'ERR_BIRNN_SHAPE',
    )
  }
  return { data, shape }
}

export function isPositiveInteger(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value > 0
}
