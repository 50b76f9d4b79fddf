// The throughput-versus-N chart of docs/BENCHMARKS.md: cross-entropy forward+backward at a
// fixed batch over a sweep of class counts N, for fusedloss, its peers and the copy floor
// (CPU, this run), plus the GPU points of a scripts/gpu run when docs/gpu-bench.json holds
// one. Throughput counts the bytes the op must move (one read of the logits, one write of the
// gradient), so the floor is the machine's copy bandwidth, a flat line.

/** Class counts of the sweep (B = 64 rows each); --quick takes every other one. */
export const sweepCols = [1024, 4096, 16384, 65536, 262144];
const sweepRows = 64;

/**
 * Times op `softmaxCrossEntropy` (its scripts/ops.mjs entry: make, bench.prepare, bench.peers)
 * at each N with run.mjs's timer and peers. Returns [{ cols, series: { name: GB/s } }].
 */
export function sweep({ fl, op, rng, timeit, ctx, torchCpuMs, threads, quick, log }) {
  const points = [];
  for (const cols of quick ? sweepCols.filter((_, i) => i % 2 === 0) : sweepCols) {
    const size = { rows: sweepRows, cols };
    const made = op.make(fl, rng(), { ...size, dtype: 'float32' });
    const inputs = op.bench.prepare ? op.bench.prepare(fl, made) : made;
    const gbs = (ms) => op.bench.bytes(size) / (ms / 1e3) / 1e9;
    // PyTorch first, after a pause, as in run.mjs: threads a peer left busy would slow it.
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 200);
    const torchMs = torchCpuMs(op.name, size, threads);
    const series = { fusedloss: gbs(timeit(() => op.run(fl, inputs, 'cpu'))) };
    for (const [peer, make] of Object.entries(op.bench.peers ?? {})) {
      if (peer.startsWith('tfjs') && !ctx.tf) continue;
      const p = make(ctx, inputs);
      try {
        series[peer] = gbs(timeit(p.fn, { minReps: 2, minMs: quick ? 100 : 300 }));
      } finally {
        p.dispose?.();
      }
    }
    if (torchMs !== undefined) series['torch-cpu'] = gbs(torchMs);
    points.push({ cols, series });
    log(`chart: ${sweepRows}x${cols} ` + Object.entries(series).map(([k, v]) => `${k} ${v.toFixed(2)} GB/s`).join(', '));
  }
  return points;
}

/** GPU points from a scripts/gpu run's fusedloss-bench.json: [{ cols, gbs }] and the device's copy rate. */
export function gpuPoints(json) {
  const ce = json?.ops?.softmaxCrossEntropy;
  if (!ce) return undefined;
  const pts = Object.entries(ce)
    .filter(([, v]) => v.float32)
    .map(([shape, v]) => ({ cols: Number(shape.split('x')[1]), gbs: v.float32.ofCopy * json.copyGBs }))
    .sort((a, b) => a.cols - b.cols);
  return { device: json.device, copyGBs: json.copyGBs, points: pts };
}

const COLORS = { fusedloss: '#d62728', 'torch-cpu': '#1f77b4', 'tfjs-wasm': '#ff7f0e', 'plain-js': '#7f7f7f', gpu: '#2ca02c' };
const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;');

/**
 * The SVG: log-log axes, N across, GB/s up; one polyline per series, dashed lines for the
 * floors (CPU copy bandwidth; the GPU's device copy when GPU points are given).
 */
export function chartSvg({ points, copyGBs, gpu, title }) {
  const W = 760;
  const H = 440;
  const m = { l: 70, r: 190, t: 40, b: 50 };
  const lines = [];
  for (const name of Object.keys(points[0]?.series ?? {})) lines.push({ name, color: COLORS[name] ?? '#9467bd', pts: points.filter((p) => p.series[name] !== undefined).map((p) => [p.cols, p.series[name]]) });
  if (gpu?.points.length) lines.push({ name: `fusedloss CUDA (${gpu.device})`, color: COLORS.gpu, pts: gpu.points.map((p) => [p.cols, p.gbs]) });
  const floors = [{ name: 'CPU copy floor', gbs: copyGBs, color: '#000' }];
  if (gpu?.points.length) floors.push({ name: 'GPU copy floor', gbs: gpu.copyGBs, color: COLORS.gpu });
  const xs = lines.flatMap((l) => l.pts.map((p) => p[0]));
  const ys = [...lines.flatMap((l) => l.pts.map((p) => p[1])), ...floors.map((f) => f.gbs)];
  const lx0 = Math.floor(Math.log10(Math.min(...xs)));
  const lx1 = Math.ceil(Math.log10(Math.max(...xs)));
  const ly0 = Math.floor(Math.log10(Math.min(...ys)));
  const ly1 = Math.ceil(Math.log10(Math.max(...ys)));
  const X = (x) => m.l + ((Math.log10(x) - lx0) / (lx1 - lx0)) * (W - m.l - m.r);
  const Y = (y) => H - m.b - ((Math.log10(y) - ly0) / (ly1 - ly0)) * (H - m.t - m.b);
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
    `<text x="${m.l}" y="22" font-size="14" font-weight="bold">${esc(title)}</text>`,
  ];
  for (let e = lx0; e <= lx1; e++) {
    out.push(`<line x1="${X(10 ** e)}" y1="${m.t}" x2="${X(10 ** e)}" y2="${H - m.b}" stroke="#ddd"/>`);
    out.push(`<text x="${X(10 ** e)}" y="${H - m.b + 16}" text-anchor="middle">10^${e}</text>`);
  }
  for (let e = ly0; e <= ly1; e++) {
    out.push(`<line x1="${m.l}" y1="${Y(10 ** e)}" x2="${W - m.r}" y2="${Y(10 ** e)}" stroke="#ddd"/>`);
    out.push(`<text x="${m.l - 6}" y="${Y(10 ** e) + 4}" text-anchor="end">${10 ** e >= 1 ? 10 ** e : (10 ** e).toFixed(-e)}</text>`);
  }
  out.push(`<text x="${(m.l + W - m.r) / 2}" y="${H - 12}" text-anchor="middle">N (classes per row)</text>`);
  out.push(`<text transform="translate(18 ${(m.t + H - m.b) / 2}) rotate(-90)" text-anchor="middle">GB/s (bytes read + written, higher is better)</text>`);
  let ly = m.t + 10;
  const legend = (name, color, dash) => {
    out.push(`<line x1="${W - m.r + 12}" y1="${ly}" x2="${W - m.r + 36}" y2="${ly}" stroke="${color}" stroke-width="2"${dash ? ' stroke-dasharray="6 4"' : ''}/>`);
    out.push(`<text x="${W - m.r + 42}" y="${ly + 4}">${esc(name)}</text>`);
    ly += 18;
  };
  for (const f of floors) {
    out.push(`<line x1="${m.l}" y1="${Y(f.gbs)}" x2="${W - m.r}" y2="${Y(f.gbs)}" stroke="${f.color}" stroke-width="1.5" stroke-dasharray="6 4"/>`);
    legend(`${f.name} ${f.gbs.toFixed(0)} GB/s`, f.color, true);
  }
  for (const l of lines) {
    out.push(`<polyline fill="none" stroke="${l.color}" stroke-width="2" points="${l.pts.map(([x, y]) => `${X(x).toFixed(1)},${Y(y).toFixed(1)}`).join(' ')}"/>`);
    for (const [x, y] of l.pts) out.push(`<circle cx="${X(x).toFixed(1)}" cy="${Y(y).toFixed(1)}" r="3" fill="${l.color}"/>`);
    legend(l.name, l.color, false);
  }
  out.push('</svg>', '');
  return out.join('\n');
}
