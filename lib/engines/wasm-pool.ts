// The workers that run the wasm engine's forward() calls off the main thread: a small pool
// (min(4, cores) workers, started as calls need them) shared by every wasm-engine model of the
// process that runs on the same build of the module (a process normally uses one; a model
// forced to the other gets workers of its own). Each worker holds its own instance of the
// module (wasm-kernel.ts) and the networks
// of the models it has served: a model's weights are sent to a worker once, with its first call
// there, and freed in every worker by dispose(). A worker is unref()'d while idle, so the pool
// never keeps the process alive.

import { availableParallelism } from 'node:os'
import { Worker } from 'node:worker_threads'
import { type WasmCall, type WasmConfig, type WasmResult, wasmKernel } from './wasm-kernel.js'

/** A model as the pool sees it: an id, and what a worker needs to build its network. */
export interface PoolModel {
  id: number
  config: WasmConfig
  tensors: readonly Float32Array[]
}

type Request =
  | { op: 'load'; model: number; config: WasmConfig; tensors: readonly Float32Array[] }
  | { op: 'forward'; id: number; model: number; call: WasmCall }
  | { op: 'free'; model: number }
type Reply =
  | { id: number; result: WasmResult }
  | { id: number; error: string; lost: false }
  | { id: number; error: string; lost: true; call: WasmCall }

/** The arrays of a call, transferred with it: the pool's own copies (wasm.ts), never shared memory. */
const callBuffers = (call: WasmCall): ArrayBuffer[] =>
  [call.input, call.h0, call.c0, call.lengths].flatMap((a) => (a ? [a.buffer as ArrayBuffer] : []))

/**
 * The body of a worker, run from its source text (with wasmKernel's) in the worker: no imports
 * and no outside names but its parameters. `lost`: the worker no longer has the model's network
 * (its instance was replaced after a trap), so the call may be sent again with the weights; its
 * arrays, which came here transferred, go back with the reply for that.
 */
function workerMain(makeKernel: typeof wasmKernel, callBuffers: (call: WasmCall) => ArrayBuffer[]): void {
  const { parentPort, workerData } = require('node:worker_threads')
  const kernel = makeKernel(workerData.module)
  const networks = new Map<number, { handle: number; generation: number }>()
  const failures = new Map<number, string>()
  const message = (error: unknown) => (error instanceof Error ? error.message : String(error))
  parentPort.on('message', (m: Request) => {
    if (m.op === 'load') {
      try {
        networks.set(m.model, { handle: kernel.create(m.config, m.tensors), generation: kernel.generation() })
        failures.delete(m.model)
      } catch (error) {
        failures.set(m.model, message(error))
      }
    } else if (m.op === 'free') {
      const network = networks.get(m.model)
      if (network && network.generation === kernel.generation()) kernel.free(network.handle)
      networks.delete(m.model)
      failures.delete(m.model)
    } else {
      const network = networks.get(m.model)
      if (!network || network.generation !== kernel.generation()) {
        const failure = failures.get(m.model)
        networks.delete(m.model)
        failures.delete(m.model)
        if (failure !== undefined) parentPort.postMessage({ id: m.id, error: failure, lost: false })
        else
          parentPort.postMessage(
            { id: m.id, error: 'the network was lost', lost: true, call: m.call },
            callBuffers(m.call),
          )
        return
      }
      try {
        const result: WasmResult = kernel.forward(network.handle, m.call)
        const buffers = [result.output, result.hN, result.cN, result.layers].flatMap((a) => (a ? [a.buffer] : []))
        parentPort.postMessage({ id: m.id, result }, buffers)
      } catch (error) {
        parentPort.postMessage({ id: m.id, error: message(error), lost: false })
      }
    }
  })
}

const workerSource = `'use strict';\nconst wasmKernel = ${wasmKernel.toString()};\n(${workerMain.toString()})(wasmKernel, ${callBuffers.toString()});\n`

interface Pending {
  model: PoolModel
  call: WasmCall
  resolve(result: WasmResult): void
  reject(error: Error): void
  retried: boolean
}

interface Slot {
  module: WebAssembly.Module
  worker: Worker
  models: Set<number>
  pending: Map<number, Pending>
}

const slots: Slot[] = []
let nextId = 0

/** Workers the pool starts at most. */
export const poolSize = (): number => Math.max(1, Math.min(4, availableParallelism()))

function spawn(module: WebAssembly.Module): Slot {
  const worker = new Worker(workerSource, { eval: true, workerData: { module } })
  const slot: Slot = { module, worker, models: new Set(), pending: new Map() }
  worker.unref()
  worker.on('message', (reply: Reply) => {
    const p = slot.pending.get(reply.id)
    if (!p) return
    slot.pending.delete(reply.id)
    if (slot.pending.size === 0) worker.unref()
    if ('result' in reply) p.resolve(reply.result)
    else if (reply.lost && !p.retried) {
      slot.models.delete(p.model.id)
      p.retried = true
      p.call = reply.call
      send(slot, p)
    } else {
      if (reply.lost) slot.models.delete(p.model.id)
      p.reject(new Error(reply.error))
    }
  })
  const fail = (error: Error) => {
    const index = slots.indexOf(slot)
    if (index >= 0) slots.splice(index, 1)
    for (const p of slot.pending.values()) p.reject(error)
    slot.pending.clear()
  }
  worker.on('error', fail)
  worker.on('exit', (code) => fail(new Error(`the wasm worker exited (code ${code})`)))
  slots.push(slot)
  return slot
}

function send(slot: Slot, p: Pending): void {
  if (!slot.models.has(p.model.id)) {
    const { id, config, tensors } = p.model
    slot.worker.postMessage({ op: 'load', model: id, config, tensors } satisfies Request)
    slot.models.add(id)
  }
  const id = nextId++
  slot.pending.set(id, p)
  if (slot.pending.size === 1) slot.worker.ref()
  slot.worker.postMessage({ op: 'forward', id, model: p.model.id, call: p.call } satisfies Request, callBuffers(p.call))
}

/**
 * Runs `call` on a worker: the least busy one (one that has the model when several are), or a
 * new one while the pool has room and every worker is busy. The call's arrays are transferred:
 * the caller hands over copies it owns.
 */
export function poolRun(module: WebAssembly.Module, model: PoolModel, call: WasmCall): Promise<WasmResult> {
  return new Promise((resolve, reject) => {
    let best: Slot | undefined
    const own = slots.filter((slot) => slot.module === module)
    for (const slot of own) {
      const better =
        !best ||
        slot.pending.size < best.pending.size ||
        (slot.pending.size === best.pending.size && slot.models.has(model.id) && !best.models.has(model.id))
      if (better) best = slot
    }
    if (!best || (best.pending.size > 0 && own.length < poolSize())) best = spawn(module)
    send(best, { model, call, resolve, reject, retried: false })
  })
}

/** Frees the model's network in every worker that has it (after the calls already sent there). */
export function poolFree(model: number): void {
  for (const slot of slots) {
    if (slot.models.delete(model)) slot.worker.postMessage({ op: 'free', model } satisfies Request)
  }
}
