// The sweep as a hand-written SVG: one panel per axis (hidden, seq, batch), log-log, milliseconds
// per forward for birnn native and onnxruntime-node, with the ort/birnn ratio under each point.

const W = 300
const H = 240
const PAD = { l: 52, r: 12, t: 34, b: 58 }
const COLORS = { birnn: '#1f77b4', ort: '#d62728' }

const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;')
const log10 = Math.log10

function ticks(lo, hi) {
  const out = []
  for (let e = Math.floor(log10(lo)); e <= Math.ceil(log10(hi)); e++) {
    for (const m of [1, 3]) {
      const v = m * 10 ** e
      if (v >= lo / 1.0001 && v <= hi * 1.0001) out.push(v)
    }
  }
  return out
}

const fmt = (v) => (v >= 1000 ? `${v / 1000}k` : v >= 1 ? String(v) : v.toPrecision(1))

function panel(x0, title, points, axis, threads) {
  const xs = points.map((p) => p[axis])
  const series = {
    birnn: points.map((p) => p.contenders[`birnn-native-${threads}t`]?.median),
    ort: points.map((p) => p.contenders[`ort-${threads}t`]?.median),
  }
  const ys = [...series.birnn, ...series.ort].filter((v) => v > 0)
  if (!ys.length) return ''
  const [xlo, xhi] = [Math.min(...xs), Math.max(...xs)]
  let [ylo, yhi] = [Math.min(...ys), Math.max(...ys)]
  ylo = 10 ** Math.floor(log10(ylo))
  yhi = 10 ** Math.ceil(log10(yhi))
  const pw = W - PAD.l - PAD.r
  const ph = H - PAD.t - PAD.b
  const sx = (v) => x0 + PAD.l + ((log10(v) - log10(xlo)) / (log10(xhi) - log10(xlo) || 1)) * pw
  const sy = (v) => PAD.t + ph - ((log10(v) - log10(ylo)) / (log10(yhi) - log10(ylo))) * ph
  const parts = [`<text x="${x0 + W / 2}" y="18" text-anchor="middle" font-weight="bold">${esc(title)}</text>`]
  parts.push(`<rect x="${x0 + PAD.l}" y="${PAD.t}" width="${pw}" height="${ph}" fill="none" stroke="#999"/>`)
  for (const v of ticks(ylo, yhi)) {
    parts.push(`<line x1="${x0 + PAD.l}" x2="${x0 + PAD.l + pw}" y1="${sy(v)}" y2="${sy(v)}" stroke="#eee"/>`)
    parts.push(`<text x="${x0 + PAD.l - 4}" y="${sy(v) + 4}" text-anchor="end">${fmt(v)}</text>`)
  }
  for (const [i, v] of xs.entries()) {
    parts.push(`<text x="${sx(v)}" y="${PAD.t + ph + 14}" text-anchor="middle">${v}</text>`)
    const [a, b] = [series.birnn[i], series.ort[i]]
    if (a && b)
      parts.push(
        `<text x="${sx(v)}" y="${PAD.t + ph + 28}" text-anchor="middle" fill="#555">${(b / a).toFixed(1)}×</text>`,
      )
  }
  parts.push(
    `<text x="${x0 + PAD.l + pw / 2}" y="${H - 12}" text-anchor="middle">${esc(axis)} (ort/birnn below)</text>`,
  )
  parts.push(
    `<text transform="translate(${x0 + 12},${PAD.t + ph / 2}) rotate(-90)" text-anchor="middle">ms per forward</text>`,
  )
  for (const [name, ys2] of Object.entries(series)) {
    const pts = xs.map((x, i) => (ys2[i] ? `${sx(x).toFixed(1)},${sy(ys2[i]).toFixed(1)}` : null)).filter(Boolean)
    parts.push(`<polyline points="${pts.join(' ')}" fill="none" stroke="${COLORS[name]}" stroke-width="2"/>`)
    for (const p of pts) {
      const [cx, cy] = p.split(',')
      parts.push(`<circle cx="${cx}" cy="${cy}" r="3" fill="${COLORS[name]}"/>`)
    }
  }
  return parts.join('\n')
}

export function sweepSvg(sweep) {
  const axes = Object.keys(sweep.axes)
  const width = W * axes.length
  const titles = { hidden: 'hidden size', seq: 'sequence length', batch: 'batch' }
  const b = sweep.base
  const body = axes.map((a, i) => panel(i * W, titles[a] ?? a, sweep.axes[a], a, sweep.threads)).join('\n')
  const caption = `LSTM, 1 layer, bidirectional, input ${sweep.inputSize}; base hidden ${b.hidden}, seq ${b.seq}, batch ${b.batch}; ${sweep.threads} threads; median of repeated runs`
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${H + 40}" font-family="sans-serif" font-size="11">
<rect width="100%" height="100%" fill="white"/>
${body}
<text x="10" y="${H + 14}">${esc(caption)}</text>
<rect x="10" y="${H + 22}" width="12" height="3" fill="${COLORS.birnn}"/><text x="26" y="${H + 28}">birnn native</text>
<rect x="110" y="${H + 22}" width="12" height="3" fill="${COLORS.ort}"/><text x="126" y="${H + 28}">onnxruntime-node</text>
</svg>
`
}
