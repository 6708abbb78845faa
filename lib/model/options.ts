// load() and fromStateDict() options: checked before any file is read, so a typo fails fast.

import { checkKeys, isPositiveInteger, rangeError, typeError } from '../errors.js'
import { ISA_ARCH, ISAS, MAX_THREADS, WASM_SIMD } from '../spec.js'
import type { LoadOptions, WasmSimd } from '../types.js'

const LOAD_OPTIONS = ['nonlinearity', 'batchFirst', 'prefix', 'backend', 'threads', 'simd']
/** The values each choice option takes (the CLI offers the same). */
export const BACKENDS = ['auto', 'native', 'wasm', 'js'] as const satisfies ReadonlyArray<LoadOptions['backend']>
export const NONLINEARITIES = ['tanh', 'relu'] as const satisfies ReadonlyArray<LoadOptions['nonlinearity']>
type SimdChoice = NonNullable<LoadOptions['simd']>

/** The native kernel's instruction sets: each architecture's best first (x86-64's, arm64's), then the portable one. */
const NATIVE_SIMD = (['x64', 'arm64', 'any'] as const).flatMap((arch) =>
  ISAS.filter((isa) => ISA_ARCH[isa] === arch).reverse(),
)
/** 'auto', the native kernel's instruction sets, then the WebAssembly kernel's. */
export const SIMD_CHOICES: readonly SimdChoice[] = ['auto', ...NATIVE_SIMD, ...WASM_SIMD]

export const isWasmSimd = (simd: string): simd is WasmSimd => (WASM_SIMD as readonly string[]).includes(simd)

/**
 * The engine whose kernel `simd` is, where `backend` demands another one (one of the two is a
 * mistake); undefined where they agree or either is left to choose.
 */
export function simdConflict(
  simd: SimdChoice | undefined,
  backend: LoadOptions['backend'],
): 'native' | 'wasm' | undefined {
  if (simd === undefined || simd === 'auto' || backend === undefined || backend === 'auto') return undefined
  const engine = isWasmSimd(simd) ? 'wasm' : 'native'
  return backend === engine ? undefined : engine
}

/** `'a', 'b' or 'c'`, for the messages. */
export const choices = (values: readonly string[]): string =>
  values
    .map((v) => `'${v}'`)
    .join(', ')
    .replace(/, ([^,]*)$/, ' or $1')

export function checkLoadOptions(options: unknown): LoadOptions {
  if (options === undefined) return {}
  if (typeof options !== 'object' || options === null) throw typeError('options', 'an object', options)
  checkKeys('options', options, LOAD_OPTIONS)
  const o = options as LoadOptions
  if (o.nonlinearity !== undefined && !NONLINEARITIES.includes(o.nonlinearity)) {
    throw typeError('options.nonlinearity', choices(NONLINEARITIES), o.nonlinearity)
  }
  if (o.batchFirst !== undefined && typeof o.batchFirst !== 'boolean')
    throw typeError('options.batchFirst', 'a boolean', o.batchFirst)
  if (o.prefix !== undefined && typeof o.prefix !== 'string') throw typeError('options.prefix', 'a string', o.prefix)
  if (o.backend !== undefined && !BACKENDS.includes(o.backend)) {
    throw typeError('options.backend', choices(BACKENDS), o.backend)
  }
  if (o.threads !== undefined && !isPositiveInteger(o.threads))
    throw typeError('options.threads', 'a positive integer', o.threads)
  if (o.threads !== undefined && o.threads > MAX_THREADS)
    throw rangeError('options.threads', `at most ${MAX_THREADS}`, String(o.threads))
  if (o.simd !== undefined && !SIMD_CHOICES.includes(o.simd)) {
    throw typeError('options.simd', choices(SIMD_CHOICES), o.simd)
  }
  if (simdConflict(o.simd, o.backend)) {
    const own = o.backend === 'native' ? NATIVE_SIMD : o.backend === 'wasm' ? WASM_SIMD : []
    throw typeError('options.simd', `${choices(['auto', ...own])} with backend '${o.backend}'`, o.simd)
  }
  return o
}

/** BIRNN_SIMD, when `simd` is left at 'auto': the same choices as the option. */
export function simdFromEnvironment(simd: SimdChoice): SimdChoice {
  const env = process.env.BIRNN_SIMD
  if (simd !== 'auto' || !env) return simd
  if (!SIMD_CHOICES.includes(env as never)) throw typeError('BIRNN_SIMD', choices(SIMD_CHOICES), env)
  return env as SimdChoice
}

/**
 * BIRNN_POOL_THREADS, which the native kernel reads once, when its worker pool starts: a whole
 * number of threads, 1 to 1024 (unset: the CPUs the process may run on, within its CPU quota).
 */
export function checkPoolThreadsEnvironment(): void {
  const env = process.env.BIRNN_POOL_THREADS
  if (env === undefined || env === '') return
  if (!/^\d+$/.test(env.trim())) throw typeError('BIRNN_POOL_THREADS', 'a whole number of threads', env)
  const n = Number(env)
  if (n < 1 || n > 1024) throw rangeError('BIRNN_POOL_THREADS', 'from 1 to 1024', env)
}
