// Seeded random inputs for the backend comparison and the benchmarks (plain JS, no deps).
export function makeRng(seed) {
  let s = BigInt.asUintN(64, BigInt(seed) * 0x9e3779b97f4a7c15n + 1n);
  const next = () => {
    s = BigInt.asUintN(64, s + 0x9e3779b97f4a7c15n);
    let z = s;
    z = BigInt.asUintN(64, (z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n);
    z = BigInt.asUintN(64, (z ^ (z >> 27n)) * 0x94d049bb133111ebn);
    return Number((z ^ (z >> 31n)) >> 11n) / 2 ** 53;
  };
  // BigInt is slow; draw 32-bit state for bulk data from one seed instead.
  let x = Math.floor(next() * 2 ** 32) >>> 0;
  const u = () => {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    return (x + 0.5) / 4294967296;
  };
  const normal = () => Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
  return { u, normal, int: (lo, hi) => lo + Math.floor(u() * (hi - lo)) };
}

/** B×N scores: 'normal' (σ=3), 'flat' (σ=0.05), 'peaked' (normal with up to 3 distinct logits ×20 per row) or 'cosine' (CLIP-like similarities in [−1, 1]). */
export function randomScores(rng, rows, cols, kind = 'normal') {
  const x = new Float32Array(rows * cols);
  if (kind === 'cosine') {
    // What CLIP-style losses see: cosine similarities of unit embeddings, in [−1, 1], with the
    // matched pairs on the diagonal more similar than the rest.
    for (let r = 0; r < rows; r++)
      for (let c = 0; c < cols; c++) x[r * cols + c] = r === c ? 0.3 + 0.6 * rng.u() : Math.max(-1, Math.min(1, 0.2 * rng.normal()));
    return x;
  }
  const sigma = kind === 'flat' ? 0.05 : 3;
  for (let i = 0; i < x.length; i++) x[i] = rng.normal() * sigma;
  // Distinct columns: one entry scaled twice would be ×400 or ×8000, past float16's range.
  if (kind === 'peaked')
    for (let r = 0; r < rows; r++) {
      const peaks = new Set();
      while (peaks.size < Math.min(3, cols)) peaks.add(rng.int(0, cols));
      for (const c of peaks) x[r * cols + c] *= 20;
    }
  return x;
}
