// One place that builds the library's errors, so every message has the same shape:
// `<argument>: expected <what>, received <what came>`.

/** A short, readable description of any value, for error messages. */
export function describe(value: unknown): string {
  if (value === null) return 'null'
  if (value === undefined) return 'undefined'
  if (Array.isArray(value)) return `an array of length ${value.length}`
  if (ArrayBuffer.isView(value)) {
    const length = (value as { length?: number }).length
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
    case 'object':
      return value.constructor && value.constructor !== Object ? `a ${value.constructor.name}` : 'an object'
    default:
      return typeof value
  }
}

export function formatShape(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`
}

/** TypeError for a value of the wrong kind. */
export function typeError(name: string, expected: string, received: unknown): TypeError {
  return new TypeError(`${name}: expected ${expected}, received ${describe(received)}`)
}

/** RangeError for a value of the right kind but the wrong size; `received` is already formatted. */
export function rangeError(name: string, expected: string, received: string): RangeError {
  return new RangeError(`${name}: expected ${expected}, received ${received}`)
}

export function shapeError(name: string, expected: readonly number[], received: readonly number[]): RangeError {
  return rangeError(name, `shape ${formatShape(expected)}`, formatShape(received))
}

/** Rejects keys of an options object that the function does not know: a typo must not pass silently. */
export function checkKeys(name: string, options: object, known: readonly string[]): void {
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) {
      throw new TypeError(`${name}: unknown option '${key}' (known options: ${known.join(', ')})`)
    }
  }
}

export function isPositiveInteger(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value > 0
}
