// What the benchmark ran on: CPU model, cores, the instruction-set flags that matter, versions.

import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { cpus, totalmem } from 'node:os'

const FLAGS = [
  'sse4_2',
  'avx',
  'avx2',
  'fma',
  'f16c',
  'avx512f',
  'avx512bw',
  'avx512vl',
  'avx512_vnni',
  'avx512_bf16',
  'amx_tile',
]

export function machineInfo() {
  let cpuinfo = ''
  try {
    cpuinfo = readFileSync('/proc/cpuinfo', 'utf8')
  } catch {}
  const flagLine = cpuinfo.match(/^flags\s*:\s*(.*)$/m)?.[1].split(/\s+/) ?? []
  const family = cpuinfo.match(/^cpu family\s*:\s*(\d+)/m)?.[1]
  const model = cpuinfo.match(/^model\s*:\s*(\d+)/m)?.[1]
  const gxx = spawnSync('g++', ['--version'], { encoding: 'utf8' }).stdout?.split('\n')[0] ?? null
  return {
    cpu: cpus()[0]?.model?.trim() ?? 'unknown',
    cpuFamilyModel: family ? `family ${family} model ${model}` : null,
    hypervisor: flagLine.includes('hypervisor'),
    cores: cpus().length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    simdFlags: FLAGS.filter((f) => flagLine.includes(f)),
    missingSimdFlags: FLAGS.filter((f) => !flagLine.includes(f) && f.startsWith('avx512')),
    node: process.version,
    gxx,
    kernel: spawnSync('uname', ['-sr'], { encoding: 'utf8' }).stdout?.trim() ?? null,
  }
}
