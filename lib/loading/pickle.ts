// A restricted unpickler for the data.pkl of a torch.save checkpoint: the contract of PyTorch's
// torch.load(weights_only=True). It understands the opcodes a pickled state_dict uses (protocols
// 2 to 5) and knows a short allowlist of globals: PyTorch's own, less those that rebuild tensors
// birnn cannot read (quantized, sparse, subclasses). Each is mapped to a value or a function of our
// own that builds inert values: nothing named in the file is ever resolved in JavaScript or
// called. Python 2 names (__builtin__.set, as protocol 2 writes them) read as Python 3's, as in
// PyTorch. Any other global (a pickled nn.Module, a custom class, os.system, builtins.eval, ...)
// is refused where it appears, before anything could use it. Every length is checked against the
// bytes left, so no stream can make it read out of bounds, allocate without limit or loop: each
// opcode consumes at least one byte.

import { BirnnError } from '../errors.js'

/** A tuple (Python's immutable sequence); lists are plain arrays. */
export class PickleTuple {
  constructor(readonly items: PickleValue[]) {}
}

/** A dict key as kept: a scalar, or a tuple key as its text. */
export type DictKey = string | number | bigint | boolean | null

/** A dict or OrderedDict, keys as scalars (tuple keys as their text). */
export class PickleDict {
  readonly entries = new Map<DictKey, PickleValue>()
}

/** A storage from the archive: `key` names the record data/<key>; dtype in safetensors' names. */
export interface PickleStorage {
  readonly kind: 'storage'
  readonly key: string
  readonly dtype: string
  /** Elements, as the pickle declares them. */
  readonly numel: number
}

/** A tensor: a view (offset, size, stride in elements) of a storage. */
export interface PickleTensor {
  readonly kind: 'tensor'
  readonly storage: PickleStorage
  readonly offset: number
  readonly size: readonly number[]
  readonly stride: readonly number[]
}

/** One of the allowlisted globals. */
interface Allowed {
  readonly kind: 'global'
  readonly name: string
}

export type PickleValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | PickleValue[]
  | PickleTuple
  | PickleDict
  | PickleStorage
  | PickleTensor
  | Allowed

/** Storage classes, as torch.save names them, to the dtype of their elements (safetensors' names). */
export const STORAGE_DTYPES: Readonly<Record<string, string>> = {
  'torch.FloatStorage': 'F32',
  'torch.DoubleStorage': 'F64',
  'torch.HalfStorage': 'F16',
  'torch.BFloat16Storage': 'BF16',
  'torch.LongStorage': 'I64',
  'torch.IntStorage': 'I32',
  'torch.ShortStorage': 'I16',
  'torch.CharStorage': 'I8',
  'torch.ByteStorage': 'U8',
  'torch.BoolStorage': 'BOOL',
  'torch.ComplexFloatStorage': 'C64',
  'torch.ComplexDoubleStorage': 'C128',
  'torch.UntypedStorage': 'U8',
  'torch.storage.UntypedStorage': 'U8',
}

/** Bytes per element of each storage dtype. */
export const ITEM_BYTES: Readonly<Record<string, number>> = {
  F32: 4,
  F64: 8,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
  C64: 8,
  C128: 16,
}

const DTYPE_GLOBALS = [
  'float32',
  'float',
  'float64',
  'double',
  'float16',
  'half',
  'bfloat16',
  'int64',
  'long',
  'int32',
  'int',
  'int16',
  'int8',
  'uint8',
  'bool',
].map((name) => `torch.${name}`)

/** Every global a checkpoint may name; anything else is refused. */
const ALLOWED = new Set([
  'collections.OrderedDict',
  'collections.Counter',
  'torch._utils._rebuild_tensor',
  'torch._utils._rebuild_tensor_v2',
  'torch._utils._rebuild_parameter',
  'torch._utils._rebuild_parameter_with_state',
  'torch.Size',
  'torch.device',
  '_codecs.encode',
  'builtins.set',
  'builtins.bytearray',
  'builtins.complex',
  ...Object.keys(STORAGE_DTYPES),
  ...DTYPE_GLOBALS,
])

/** Python 2 modules, as protocol 2 names them, to Python 3's (pickle's fix_imports). */
const PYTHON2_MODULES = new Map([['__builtin__', 'builtins']])

/** The longest integer (LONG4) accepted, in bytes: a checkpoint's numbers are far shorter. */
const MAX_LONG_BYTES = 64
/** The longest text of a tuple dict key, and of a global's module or name. */
const MAX_KEY_TEXT = 1024
const MAX_GLOBAL_NAME = 256

export function checkpointError(message: string): BirnnError {
  return new BirnnError('ERR_BIRNN_CHECKPOINT', `checkpoint: ${message}`)
}

export const SAVE_STATE_DICT =
  "save the weights instead: torch.save(model.state_dict(), 'model.pt') (or convert to safetensors)"

// Opcode names, for the messages about the ones a checkpoint never needs.
const OPCODE_NAMES: Readonly<Record<number, string>> = {
  40: 'MARK',
  46: 'STOP',
  48: 'POP',
  49: 'POP_MARK',
  50: 'DUP',
  70: 'FLOAT',
  73: 'INT',
  74: 'BININT',
  75: 'BININT1',
  76: 'LONG',
  77: 'BININT2',
  78: 'NONE',
  80: 'PERSID',
  81: 'BINPERSID',
  82: 'REDUCE',
  83: 'STRING',
  84: 'BINSTRING',
  85: 'SHORT_BINSTRING',
  86: 'UNICODE',
  88: 'BINUNICODE',
  97: 'APPEND',
  98: 'BUILD',
  99: 'GLOBAL',
  100: 'DICT',
  125: 'EMPTY_DICT',
  101: 'APPENDS',
  103: 'GET',
  104: 'BINGET',
  105: 'INST',
  106: 'LONG_BINGET',
  108: 'LIST',
  93: 'EMPTY_LIST',
  111: 'OBJ',
  112: 'PUT',
  113: 'BINPUT',
  114: 'LONG_BINPUT',
  115: 'SETITEM',
  116: 'TUPLE',
  41: 'EMPTY_TUPLE',
  117: 'SETITEMS',
  71: 'BINFLOAT',
  128: 'PROTO',
  129: 'NEWOBJ',
  130: 'EXT1',
  131: 'EXT2',
  132: 'EXT4',
  133: 'TUPLE1',
  134: 'TUPLE2',
  135: 'TUPLE3',
  136: 'NEWTRUE',
  137: 'NEWFALSE',
  138: 'LONG1',
  139: 'LONG4',
  66: 'BINBYTES',
  67: 'SHORT_BINBYTES',
  140: 'SHORT_BINUNICODE',
  141: 'BINUNICODE8',
  142: 'BINBYTES8',
  143: 'EMPTY_SET',
  144: 'ADDITEMS',
  145: 'FROZENSET',
  146: 'NEWOBJ_EX',
  147: 'STACK_GLOBAL',
  148: 'MEMOIZE',
  149: 'FRAME',
  150: 'BYTEARRAY8',
  151: 'NEXT_BUFFER',
  152: 'READONLY_BUFFER',
}

type StorageResolver = (key: string, dtype: string, numel: number) => PickleStorage

const utf8 = new TextDecoder('utf-8', { fatal: true })
const latin1 = new TextDecoder('latin1')

const isTuple = (v: PickleValue | undefined): v is PickleTuple => v instanceof PickleTuple
const isInt = (v: PickleValue | undefined): v is number => typeof v === 'number' && Number.isSafeInteger(v)
export const isTensor = (v: PickleValue | undefined): v is PickleTensor =>
  typeof v === 'object' && v !== null && 'kind' in v && v.kind === 'tensor'
const typeName = (v: PickleValue | undefined): string => {
  if (v === null) return 'None'
  if (v === undefined) return 'nothing'
  if (Array.isArray(v)) return 'a list'
  if (v instanceof PickleTuple) return 'a tuple'
  if (v instanceof PickleDict) return 'a dict'
  if (v instanceof Uint8Array) return 'bytes'
  if (typeof v === 'object') return v.kind === 'global' ? `the global ${v.name}` : `a ${v.kind}`
  return typeof v === 'string' ? 'a string' : typeof v === 'boolean' ? 'a bool' : 'a number'
}

const isScalar = (v: PickleValue): v is DictKey => v === null || typeof v !== 'object'

/** A key as Python prints it in a name: None, True and False; numbers and strings as they are. */
export function keyText(key: DictKey): string {
  if (key === null) return 'None'
  if (typeof key === 'boolean') return key ? 'True' : 'False'
  return String(key)
}

/**
 * A dict key: a scalar as it is; a tuple of scalars as its text, at most MAX_KEY_TEXT characters.
 * Nested tuples are refused: a checkpoint never needs them, and a tuple shared at every level of
 * its nesting would render to text exponential in the pickle's length.
 */
function dictKey(key: PickleValue): DictKey {
  if (isScalar(key)) return key
  if (!(key instanceof PickleTuple)) {
    throw checkpointError(`data.pkl: a dict key is ${typeName(key)}, which a checkpoint never uses`)
  }
  let text = ''
  for (const item of key.items) {
    if (!isScalar(item)) {
      throw checkpointError(
        `data.pkl: expected a dict key that is a tuple of numbers, strings, booleans or None, received a tuple holding ${typeName(item)}`,
      )
    }
    const part = keyText(item)
    if (text.length + part.length + 2 > MAX_KEY_TEXT) {
      throw checkpointError(
        `data.pkl: expected a tuple dict key of at most ${MAX_KEY_TEXT} characters, received a tuple of ${key.items.length} items that is longer`,
      )
    }
    text += text ? `, ${part}` : part
  }
  return `(${text})`
}

/** A tuple of non-negative integers (a tensor's size or stride). */
function dims(what: string, value: PickleValue): number[] {
  if (!isTuple(value) || !value.items.every((d) => isInt(d) && d >= 0)) {
    throw checkpointError(`${what}: expected a tuple of non-negative integers, received ${typeName(value)}`)
  }
  return value.items as number[]
}

function rebuildTensor(args: PickleValue[]): PickleTensor {
  const [storage, offset, size, stride] = args
  if (typeof storage !== 'object' || storage === null || !('kind' in storage) || storage.kind !== 'storage') {
    throw checkpointError(`_rebuild_tensor_v2: expected a storage first, received ${typeName(storage)}`)
  }
  if (!isInt(offset) || offset < 0) {
    throw checkpointError(
      `_rebuild_tensor_v2: expected a non-negative storage offset, received ${typeof offset === 'number' ? offset : typeName(offset)}`,
    )
  }
  const sizes = dims('tensor size', size)
  const strides = dims('tensor stride', stride)
  if (sizes.length !== strides.length) {
    throw checkpointError(
      `tensor stride: expected ${sizes.length} strides for size (${sizes.join(', ')}), received ${strides.length}`,
    )
  }
  const numel = sizes.reduce((a, b) => a * b, 1)
  if (numel > 0) {
    const last = sizes.reduce((at, d, i) => at + (d - 1) * strides[i], offset)
    if (!(last < storage.numel)) {
      throw checkpointError(
        `tensor of size (${sizes.join(', ')}), stride (${strides.join(', ')}) at offset ${offset}: expected its elements within the storage's ${storage.numel}, received a last element at ${last}`,
      )
    }
    // A view may repeat elements (stride 0), but not into a tensor of unbounded size.
    if (numel > Math.max(storage.numel, 1 << 24)) {
      throw checkpointError(
        `tensor of size (${sizes.join(', ')}): expected at most ${Math.max(storage.numel, 1 << 24)} elements from a storage of ${storage.numel}, received ${numel}`,
      )
    }
  }
  return { kind: 'tensor', storage, offset, size: sizes, stride: strides }
}

/** What an allowlisted global does when REDUCE calls it with `args`. */
function call(fn: Allowed, args: PickleTuple): PickleValue {
  const items = args.items
  const [first, second] = items
  switch (fn.name) {
    case 'collections.OrderedDict':
      if (items.length === 0) return new PickleDict()
      break
    case 'collections.Counter': // Counter(dict): kept as the dict
      if (items.length === 0) return new PickleDict()
      if (items.length === 1 && first instanceof PickleDict) return first
      break
    case 'builtins.set': // set(list): kept as a list, as EMPTY_SET is
      if (items.length === 0) return []
      if (items.length === 1 && Array.isArray(first)) return [...first]
      break
    case 'builtins.bytearray': // bytearray(bytes)
      if (items.length === 0) return new Uint8Array(0)
      if (items.length === 1 && first instanceof Uint8Array) return first.slice()
      break
    case 'builtins.complex': // complex(real, imag): kept as the tuple (real, imag)
      if (items.length <= 2 && items.every((v) => typeof v === 'number'))
        return new PickleTuple([items[0] ?? 0, items[1] ?? 0])
      break
    case 'torch.device': // torch.device('cuda', 0): kept as its text, 'cuda:0'
      if (items.length === 1 && typeof first === 'string') return first
      if (items.length === 2 && typeof first === 'string' && isInt(second) && second >= 0) return `${first}:${second}`
      break
    case 'torch._utils._rebuild_parameter_with_state': // (data, requires_grad, hooks, attributes)
      if (items.length === 4 && isTensor(first)) return first
      break
    case 'torch._utils._rebuild_tensor_v2':
      if (items.length >= 6 && items.length <= 7) return rebuildTensor(items)
      break
    case 'torch._utils._rebuild_tensor':
      if (items.length === 4) return rebuildTensor(items)
      break
    case 'torch._utils._rebuild_parameter': // (data, requires_grad, hooks)
      if (items.length === 3 && isTensor(first)) return first
      break
    case 'torch.Size':
      if (items.length === 1 && isTuple(items[0])) return items[0]
      break
    case '_codecs.encode': {
      const [text, encoding] = items
      if (items.length === 2 && typeof text === 'string' && encoding === 'latin1') {
        return Uint8Array.from(text, (c) => c.charCodeAt(0) & 0xff)
      }
      break
    }
  }
  throw checkpointError(`data.pkl: ${fn.name} called with ${items.length} arguments it does not take`)
}

/**
 * Runs the pickle in `bytes` and returns its value. `storage` is asked for each persistent id
 * ('storage', <class>, key, location, numel) and may throw.
 */
export function unpickle(bytes: Uint8Array, storage: StorageResolver): PickleValue {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  let at = 0
  let stack: PickleValue[] = []
  const marks: PickleValue[][] = []
  const memo = new Map<number, PickleValue>()

  const fail = (message: string): never => {
    throw checkpointError(`data.pkl at byte ${at}: ${message}`)
  }
  const need = (n: number): number => {
    if (!(n >= 0) || n > bytes.length - at) fail(`expected ${n} more bytes, received ${bytes.length - at}`)
    const start = at
    at += n
    return start
  }
  const u8 = () => bytes[need(1)]
  const u16 = () => view.getUint16(need(2), true)
  const u32 = () => view.getUint32(need(4), true)
  const u64 = () => {
    const value = view.getBigUint64(need(8), true)
    if (value > BigInt(bytes.length)) fail(`a length of ${value} bytes is more than the file holds`)
    return Number(value)
  }
  const text = (n: number): string => {
    const start = need(n)
    // Names and keys are short ASCII: decode those without TextDecoder's per-call cost.
    if (n <= 256) {
      let ascii = ''
      for (let i = start; i < start + n && bytes[i] < 0x80; i++) ascii += String.fromCharCode(bytes[i])
      if (ascii.length === n) return ascii
    }
    try {
      return utf8.decode(bytes.subarray(start, start + n))
    } catch {
      return fail('a string is not valid UTF-8')
    }
  }
  const raw = (n: number): Uint8Array => {
    const start = need(n)
    return bytes.slice(start, start + n)
  }
  const pop = (): PickleValue => {
    if (stack.length === 0) fail('the stack is empty')
    return stack.pop() as PickleValue
  }
  const top = (): PickleValue => {
    if (stack.length === 0) fail('the stack is empty')
    return stack[stack.length - 1]
  }
  const popMark = (): PickleValue[] => {
    const items = stack
    const previous = marks.pop()
    if (previous === undefined) fail('no MARK to pop to')
    stack = previous as PickleValue[]
    return items
  }
  const long = (n: number): number | bigint => {
    if (n > MAX_LONG_BYTES) fail(`an integer of ${n} bytes is longer than a checkpoint's (${MAX_LONG_BYTES} at most)`)
    const start = need(n)
    let value = 0n
    for (let i = n - 1; i >= 0; i--) value = (value << 8n) | BigInt(bytes[start + i])
    if (n > 0 && bytes[start + n - 1] & 0x80) value -= 1n << BigInt(8 * n)
    return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value
  }
  const global = (module: string, name: string): Allowed => {
    const full = `${module}.${name}`
    const known = `${PYTHON2_MODULES.get(module) ?? module}.${name}`
    if (!ALLOWED.has(known)) {
      fail(
        `refused the global '${full}': a checkpoint may hold only tensors, containers, numbers and strings (PyTorch's weights_only rule), and birnn never runs code from a file; ${SAVE_STATE_DICT}`,
      )
    }
    return { kind: 'global', name: known }
  }
  const memoGet = (index: number): PickleValue => {
    if (!memo.has(index)) fail(`memo entry ${index} was never stored`)
    return memo.get(index) as PickleValue
  }
  const setItems = (dict: PickleValue, items: PickleValue[]) => {
    if (!(dict instanceof PickleDict)) fail(`SETITEMS on ${typeName(dict)}, expected a dict`)
    if (items.length % 2) fail('SETITEMS with an odd number of items')
    for (let i = 0; i < items.length; i += 2) (dict as PickleDict).entries.set(dictKey(items[i]), items[i + 1])
  }
  const append = (list: PickleValue, items: PickleValue[]) => {
    if (!Array.isArray(list)) fail(`APPENDS on ${typeName(list)}, expected a list`)
    for (const item of items) (list as PickleValue[]).push(item)
  }

  while (true) {
    const position = at
    if (at >= bytes.length) fail('the pickle ends without a STOP opcode')
    const op = u8()
    switch (op) {
      case 0x80: // PROTO
        if (u8() > 5) fail('pickle protocol above 5')
        break
      case 0x95: // FRAME: a hint for buffered readers
        u64()
        break
      case 0x2e: // STOP
        if (stack.length !== 1 || marks.length) fail(`STOP with ${stack.length} values on the stack`)
        return stack[0]
      case 0x28: // MARK
        marks.push(stack)
        stack = []
        break
      case 0x30: // POP
        pop()
        break
      case 0x31: // POP_MARK
        popMark()
        break
      case 0x32: // DUP
        stack.push(top())
        break
      case 0x4e: // NONE
        stack.push(null)
        break
      case 0x88: // NEWTRUE
        stack.push(true)
        break
      case 0x89: // NEWFALSE
        stack.push(false)
        break
      case 0x4a: // BININT
        stack.push(view.getInt32(need(4), true))
        break
      case 0x4b: // BININT1
        stack.push(u8())
        break
      case 0x4d: // BININT2
        stack.push(u16())
        break
      case 0x8a: // LONG1
        stack.push(long(u8()))
        break
      case 0x8b: // LONG4
        stack.push(long(view.getInt32(need(4), true)))
        break
      case 0x47: // BINFLOAT (big-endian)
        stack.push(view.getFloat64(need(8), false))
        break
      case 0x58: // BINUNICODE
        stack.push(text(u32()))
        break
      case 0x8c: // SHORT_BINUNICODE
        stack.push(text(u8()))
        break
      case 0x8d: // BINUNICODE8
        stack.push(text(u64()))
        break
      case 0x55: // SHORT_BINSTRING (a Python 2 str, read as latin-1 text)
      case 0x54: {
        // BINSTRING
        const n = op === 0x55 ? u8() : view.getInt32(need(4), true)
        const start = need(n)
        stack.push(latin1.decode(bytes.subarray(start, start + n)))
        break
      }
      case 0x43: // SHORT_BINBYTES
        stack.push(raw(u8()))
        break
      case 0x42: // BINBYTES
        stack.push(raw(u32()))
        break
      case 0x8e: // BINBYTES8
        stack.push(raw(u64()))
        break
      case 0x7d: // EMPTY_DICT
        stack.push(new PickleDict())
        break
      case 0x64: {
        // DICT
        const dict = new PickleDict()
        setItems(dict, popMark())
        stack.push(dict)
        break
      }
      case 0x5d: // EMPTY_LIST
        stack.push([])
        break
      case 0x6c: {
        // LIST (popMark() replaces `stack`: take the items before pushing)
        const items = popMark()
        stack.push(items)
        break
      }
      case 0x29: // EMPTY_TUPLE
        stack.push(new PickleTuple([]))
        break
      case 0x74: {
        // TUPLE
        const items = popMark()
        stack.push(new PickleTuple(items))
        break
      }
      case 0x85: // TUPLE1
      case 0x86: // TUPLE2
      case 0x87: {
        // TUPLE3
        const n = op - 0x84
        if (stack.length < n) fail(`TUPLE${n} with ${stack.length} values on the stack`)
        stack.push(new PickleTuple(stack.splice(stack.length - n, n)))
        break
      }
      case 0x8f: // EMPTY_SET: a set is kept as a list
        stack.push([])
        break
      case 0x90: {
        // ADDITEMS
        const items = popMark()
        append(top(), items)
        break
      }
      case 0x91: {
        // FROZENSET
        const items = popMark()
        stack.push(items)
        break
      }
      case 0x61: {
        // APPEND
        const item = pop()
        append(top(), [item])
        break
      }
      case 0x65: {
        // APPENDS
        const items = popMark()
        append(top(), items)
        break
      }
      case 0x73: {
        // SETITEM
        const value = pop()
        const key = pop()
        setItems(top(), [key, value])
        break
      }
      case 0x75: {
        // SETITEMS
        const items = popMark()
        setItems(top(), items)
        break
      }
      case 0x71: // BINPUT
        memo.set(u8(), top())
        break
      case 0x72: // LONG_BINPUT
        memo.set(u32(), top())
        break
      case 0x94: // MEMOIZE
        memo.set(memo.size, top())
        break
      case 0x68: // BINGET
        stack.push(memoGet(u8()))
        break
      case 0x6a: // LONG_BINGET
        stack.push(memoGet(u32()))
        break
      case 0x63: {
        // GLOBAL: "module\nname\n"
        const readLine = () => {
          const end = bytes.indexOf(0x0a, at)
          if (end < 0 || end - at > MAX_GLOBAL_NAME) fail('GLOBAL without a short newline-terminated name')
          return text(end - at + 1).slice(0, -1)
        }
        const module = readLine()
        stack.push(global(module, readLine()))
        break
      }
      case 0x93: {
        // STACK_GLOBAL
        const name = pop()
        const module = pop()
        if (
          typeof module !== 'string' ||
          typeof name !== 'string' ||
          module.length > MAX_GLOBAL_NAME ||
          name.length > MAX_GLOBAL_NAME
        ) {
          fail(`STACK_GLOBAL with names that are not strings of at most ${MAX_GLOBAL_NAME} characters`)
        }
        stack.push(global(module as string, name as string))
        break
      }
      case 0x51: {
        // BINPERSID: ('storage', <storage class>, key, location, numel)
        const pid = pop()
        const [tag, cls, key, , numel] = isTuple(pid) ? pid.items : []
        if (
          !isTuple(pid) ||
          pid.items.length !== 5 ||
          tag !== 'storage' ||
          typeof cls !== 'object' ||
          cls === null ||
          !('kind' in cls) ||
          cls.kind !== 'global' ||
          !(cls.name in STORAGE_DTYPES) ||
          typeof key !== 'string' ||
          !isInt(numel) ||
          numel < 0
        ) {
          fail(`a persistent id must be ('storage', <storage type>, key, location, numel), received ${typeName(pid)}`)
        }
        stack.push(storage(key as string, STORAGE_DTYPES[(cls as Allowed).name], numel as number))
        break
      }
      case 0x52: {
        // REDUCE
        const args = pop()
        const fn = pop()
        if (typeof fn !== 'object' || fn === null || !('kind' in fn) || fn.kind !== 'global') {
          fail(`REDUCE calls ${typeName(fn)}, not an allowed global`)
        }
        if (!isTuple(args)) fail(`REDUCE with arguments that are ${typeName(args)}, not a tuple`)
        stack.push(call(fn as Allowed, args as PickleTuple))
        break
      }
      case 0x62: {
        // BUILD: an OrderedDict's attributes (state_dict's _metadata) are kept out of the result.
        const state = pop()
        const target = top()
        if (!(target instanceof PickleDict)) fail(`BUILD on ${typeName(target)}, which has no state to set`)
        if (!(state instanceof PickleDict) && !isTuple(state) && state !== null) fail(`BUILD with ${typeName(state)}`)
        break
      }
      default:
        at = position
        fail(
          `opcode ${OPCODE_NAMES[op] ?? `0x${op.toString(16).padStart(2, '0')}`} is not one a tensor checkpoint uses`,
        )
    }
  }
}
