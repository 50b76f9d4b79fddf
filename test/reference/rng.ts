/** Seeded random inputs for tests (splitmix64 seeding + xorshift128+), so failures reproduce. */
export interface Rng {
  uniform(): number;
  normal(): number;
  /** An integer in [lo, hi). */
  int(lo: number, hi: number): number;
}

export function makeRng(seed: number): Rng {
  let s0 = (seed * 0x9e3779b1) >>> 0 || 1;
  let s1 = (seed ^ 0x85ebca6b) >>> 0 || 2;
  const next = () => {
    // xorshift64 on two 32-bit halves is enough for test data.
    let t = s0;
    const s = s1;
    s0 = s;
    t ^= t << 11;
    t ^= t >>> 8;
    s1 = (t ^ s ^ (s >>> 19)) >>> 0;
    return s1;
  };
  for (let i = 0; i < 8; i++) next();
  const uniform = () => (next() + 0.5) / 4294967296;
  return {
    uniform,
    normal: () => Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform()),
    int: (lo, hi) => lo + Math.floor(uniform() * (hi - lo)),
  };
}

export type ScoreKind = 'normal' | 'flat' | 'peaked';

/** B×N fp32 scores: 'normal' (σ=3, or `sigma`), 'flat' (σ=0.05), 'peaked' (normal with 3 entries ×20 per row). */
export function randomScores(rng: Rng, B: number, N: number, o: { kind?: ScoreKind; sigma?: number } = {}): Float32Array {
  const kind = o.kind ?? 'normal';
  const sigma = o.sigma ?? (kind === 'flat' ? 0.05 : 3);
  const x = new Float32Array(B * N);
  for (let i = 0; i < x.length; i++) x[i] = rng.normal() * sigma;
  if (kind === 'peaked') for (let r = 0; r < B; r++) for (let k = 0; k < 3; k++) x[r * N + rng.int(0, N)] *= 20;
  return x;
}
