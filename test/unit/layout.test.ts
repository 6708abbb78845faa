// The architecture, checked: lib/ has no import cycles, and the library's entry point never
// reaches the CLI (whose dependencies, commander and cli-progress, library users must not load).
import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { describe, expect, it } from 'vitest'

const lib = join(import.meta.dirname, '..', '..', 'lib')
const files = (readdirSync(lib, { recursive: true }) as string[]).filter((f) => f.endsWith('.ts'))

/** Each lib/ module's imports: lib/ modules by path, packages by name. */
const graph = new Map(
  files.map((file) => {
    const text = readFileSync(join(lib, file), 'utf8')
    const specifiers = [...text.matchAll(/^(?:import|export)\s[^'"]*?from\s+'([^']+)'/gm)].map((m) => m[1])
    const imports = specifiers.map((s) =>
      s.startsWith('.') ? relative(lib, resolve(dirname(join(lib, file)), s)).replace(/\.js$/, '.ts') : s,
    )
    return [file, imports] as const
  }),
)

describe('lib/ module graph', () => {
  it('reads every module', () => {
    expect(graph.size).toBeGreaterThan(15)
    expect(graph.get('index.ts')).toContain('model/model.ts')
  })

  it('has no import cycle', () => {
    const state = new Map<string, 'open' | 'done'>()
    const cycles: string[] = []
    const visit = (file: string, path: string[]) => {
      if (state.get(file) === 'done') return
      if (state.get(file) === 'open') {
        cycles.push([...path.slice(path.indexOf(file)), file].join(' -> '))
        return
      }
      state.set(file, 'open')
      for (const next of graph.get(file) ?? []) if (graph.has(next)) visit(next, [...path, file])
      state.set(file, 'done')
    }
    for (const file of graph.keys()) visit(file, [])
    expect(cycles).toEqual([])
  })

  it('the library entry point never reaches the CLI or its dependencies', () => {
    const reached = new Set<string>()
    const walk = (file: string) => {
      if (reached.has(file)) return
      reached.add(file)
      for (const next of graph.get(file) ?? []) walk(next)
    }
    walk('index.ts')
    expect([...reached].filter((f) => f.startsWith('cli/') || f === 'commander' || f === 'cli-progress')).toEqual([])
  })
})
