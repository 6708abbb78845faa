// birnn convert: the recurrent module of any file load() reads (safetensors, a torch.save
// checkpoint, an ONNX export), written as a plain float32 safetensors state_dict with PyTorch's
// names, atomically: the output appears complete or not at all.

import { writeSync } from 'node:fs'
import { openFile } from '../loading/source.js'
import { readStateDict } from '../loading/state-dict.js'
import { checkLoadOptions } from '../model/options.js'
import type { LoadOptions } from '../types.js'
import { isUserError, RunError, requireFile } from './errors.js'
import { describeModel } from './model.js'
import { checkOutput, onInterrupt, PendingOutput } from './output-file.js'
import { plural } from './text.js'

interface ConvertOptions {
  prefix?: string
  nonlinearity?: LoadOptions['nonlinearity']
  force?: boolean
  quiet?: boolean
}

/** A safetensors file of float32 tensors: header length, JSON header padded to 8 bytes, data. */
function safetensorsFile(tensors: Array<[string, readonly number[], Float32Array]>, metadata: Record<string, string>) {
  const header: Record<string, unknown> = { __metadata__: metadata }
  let offset = 0
  for (const [name, shape, data] of tensors) {
    header[name] = { dtype: 'F32', shape, data_offsets: [offset, offset + data.byteLength] }
    offset += data.byteLength
  }
  let json = JSON.stringify(header)
  json += ' '.repeat((8 - ((Buffer.byteLength(json) + 8) % 8)) % 8)
  const head = Buffer.alloc(8 + Buffer.byteLength(json))
  head.writeBigUInt64LE(BigInt(head.length - 8), 0)
  head.write(json, 8)
  return [head, ...tensors.map(([, , data]) => new Uint8Array(data.buffer, data.byteOffset, data.byteLength))]
}

export async function convert(input: string, output: string, options: ConvertOptions): Promise<void> {
  checkOutput('output', output, [{ label: 'the input', path: input }], {
    replace: options.force === true,
    hint: ' (birnn convert IN OUT.safetensors)',
    example: 'model.safetensors',
  })
  requireFile(input, 'model')
  let tensors: Array<[string, readonly number[], Float32Array]>
  let described: string
  let prefix: string
  let nonlinearity: LoadOptions['nonlinearity']
  let batchFirst: boolean | undefined
  try {
    const load: LoadOptions = {}
    if (options.prefix !== undefined) load.prefix = options.prefix
    if (options.nonlinearity !== undefined) load.nonlinearity = options.nonlinearity
    const source = await openFile(input)
    const weights = readStateDict(source, checkLoadOptions(load))
    prefix = weights.prefix
    const { mode } = weights.config
    nonlinearity = mode === 'RNN_RELU' ? 'relu' : mode === 'RNN_TANH' ? 'tanh' : undefined
    batchFirst = source.hints?.batchFirst
    described = describeModel(weights.config)
    tensors = weights.tensorNames.map((name) => {
      const tensor = source.read(name)
      return [name.slice(prefix.length), tensor.shape, tensor.data]
    })
  } catch (error) {
    if (isUserError(error)) throw new RunError(`model ${input}: ${error.message}`)
    throw error
  }
  const metadata: Record<string, string> = { format: 'pt', converted_by: 'birnn convert' }
  // The weights of nn.RNN do not say its nonlinearity: keep what the input said, for load() to read.
  if (nonlinearity) metadata.nonlinearity = nonlinearity
  // Nor its layout, which an ONNX export records: a batch_first module's file stays one.
  if (batchFirst) metadata.batch_first = 'true'
  let pending: PendingOutput | undefined
  const stopSignals = onInterrupt(() => pending?.discard())
  try {
    pending = new PendingOutput(output)
    let bytes = 0
    for (const chunk of safetensorsFile(tensors, metadata)) {
      for (let at = 0; at < chunk.length; ) at += writeSync(pending.fd, chunk, at, chunk.length - at)
      bytes += chunk.length
    }
    pending.commit()
    if (!options.quiet) {
      process.stdout.write(
        `birnn: converted ${input}${prefix ? ` (module at prefix '${prefix}')` : ''} into ${output}: ${described}; ${plural(tensors.length, 'tensor')}, float32, ${bytes.toLocaleString('en-US')} bytes${nonlinearity === 'relu' ? "; nonlinearity 'relu' recorded in its metadata, which load() follows" : ''}${batchFirst ? '; batch_first recorded in its metadata, which load() follows' : ''}\n`,
      )
    }
  } catch (error) {
    throw pending ? pending.abandon(error) : error
  } finally {
    stopSignals()
  }
}
