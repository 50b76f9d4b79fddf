/**
 * The dual encoder: one embedding table shared by documents and labels, a weighted mean of
 * token embeddings (embedding-bag), L2-normalised. Forward and backward are plain loops over
 * Float32Arrays; the loss and its gradient with respect to the scores come from fusedloss.
 */
import type { Bags, Rng } from './data';

export class Encoder {
  readonly dim: number;
  readonly vocab: number;
  readonly table: Float32Array;
  readonly grad: Float32Array;
  readonly #m: Float32Array;
  readonly #v: Float32Array;
  #t = 0;

  constructor(vocab: number, dim: number, rng: Rng) {
    this.vocab = vocab;
    this.dim = dim;
    this.table = new Float32Array(vocab * dim);
    const s = 1 / Math.sqrt(dim);
    for (let i = 0; i < this.table.length; i++) this.table[i] = s * rng.normal();
    this.grad = new Float32Array(vocab * dim);
    this.#m = new Float32Array(vocab * dim);
    this.#v = new Float32Array(vocab * dim);
  }

  /**
   * Embeds the bags `ids` (all rows when omitted) into `out` (rows × dim, unit rows) and keeps
   * each row's pre-normalisation length in `norms` for the backward pass.
   */
  encode(bags: Bags, ids: Int32Array | null, out: Float32Array, norms: Float32Array): void {
    const { ptr, tok, val } = bags;
    const D = this.dim;
    const E = this.table;
    const n = ids ? ids.length : ptr.length - 1;
    for (let r = 0; r < n; r++) {
      const b = ids ? ids[r] : r;
      const o = r * D;
      out.fill(0, o, o + D);
      let w = 0;
      for (let k = ptr[b]; k < ptr[b + 1]; k++) {
        const v = val[k];
        const e = tok[k] * D;
        w += v;
        for (let d = 0; d < D; d++) out[o + d] += v * E[e + d];
      }
      let ss = 0;
      const inv = w > 0 ? 1 / w : 0;
      for (let d = 0; d < D; d++) {
        out[o + d] *= inv;
        ss += out[o + d] * out[o + d];
      }
      const norm = Math.sqrt(ss);
      norms[r] = norm;
      // An empty bag (or one whose tokens cancel) stays the zero vector: it scores 0 everywhere.
      const s = norm > 1e-12 ? 1 / norm : 0;
      for (let d = 0; d < D; d++) out[o + d] *= s;
    }
  }

  /**
   * Adds to `grad` the gradient through encode(): for y = x/‖x‖, dx = (dy − y·(y·dy))/‖x‖,
   * then each token of the bag gets its weight's share of dx.
   */
  backward(bags: Bags, ids: Int32Array | null, y: Float32Array, norms: Float32Array, dy: Float32Array): void {
    const { ptr, tok, val } = bags;
    const D = this.dim;
    const G = this.grad;
    const dx = new Float32Array(D);
    const n = ids ? ids.length : ptr.length - 1;
    for (let r = 0; r < n; r++) {
      const b = ids ? ids[r] : r;
      const o = r * D;
      if (norms[r] <= 1e-12) continue;
      let ydy = 0;
      for (let d = 0; d < D; d++) ydy += y[o + d] * dy[o + d];
      let w = 0;
      for (let k = ptr[b]; k < ptr[b + 1]; k++) w += val[k];
      const s = 1 / (norms[r] * w);
      for (let d = 0; d < D; d++) dx[d] = (dy[o + d] - y[o + d] * ydy) * s;
      for (let k = ptr[b]; k < ptr[b + 1]; k++) {
        const v = val[k];
        const e = tok[k] * D;
        for (let d = 0; d < D; d++) G[e + d] += v * dx[d];
      }
    }
  }

  /** One Adam step (Kingma & Ba) over the whole table, then clears the gradient. */
  adam(lr: number, beta1 = 0.9, beta2 = 0.999, eps = 1e-8): void {
    const t = ++this.#t;
    const c1 = 1 / (1 - Math.pow(beta1, t));
    const c2 = 1 / (1 - Math.pow(beta2, t));
    const E = this.table;
    const G = this.grad;
    const m = this.#m;
    const v = this.#v;
    for (let i = 0; i < E.length; i++) {
      const g = G[i];
      const mi = (m[i] = beta1 * m[i] + (1 - beta1) * g);
      const vi = (v[i] = beta2 * v[i] + (1 - beta2) * g * g);
      E[i] -= (lr * mi * c1) / (Math.sqrt(vi * c2) + eps);
    }
    G.fill(0);
  }
}

/** S (rows × N) = Q (rows × D) · Kᵀ, K being N × D: every query against every key. */
export function scoresAll(Q: Float32Array, rows: number, K: Float32Array, N: number, D: number, S: Float32Array): void {
  let i = 0;
  // Two queries against four keys at a time: six loads feed eight products.
  for (; i + 2 <= rows; i += 2) {
    const q0 = i * D;
    const q1 = q0 + D;
    const s0 = i * N;
    const s1 = s0 + N;
    let j = 0;
    for (; j + 4 <= N; j += 4) {
      const k0 = j * D;
      const k1 = k0 + D;
      const k2 = k1 + D;
      const k3 = k2 + D;
      let a0 = 0;
      let a1 = 0;
      let a2 = 0;
      let a3 = 0;
      let b0 = 0;
      let b1 = 0;
      let b2 = 0;
      let b3 = 0;
      for (let d = 0; d < D; d++) {
        const x = Q[q0 + d];
        const y = Q[q1 + d];
        const u0 = K[k0 + d];
        const u1 = K[k1 + d];
        const u2 = K[k2 + d];
        const u3 = K[k3 + d];
        a0 += x * u0;
        a1 += x * u1;
        a2 += x * u2;
        a3 += x * u3;
        b0 += y * u0;
        b1 += y * u1;
        b2 += y * u2;
        b3 += y * u3;
      }
      S[s0 + j] = a0;
      S[s0 + j + 1] = a1;
      S[s0 + j + 2] = a2;
      S[s0 + j + 3] = a3;
      S[s1 + j] = b0;
      S[s1 + j + 1] = b1;
      S[s1 + j + 2] = b2;
      S[s1 + j + 3] = b3;
    }
    for (; j < N; j++) {
      let a = 0;
      let b = 0;
      for (let d = 0; d < D; d++) {
        a += Q[q0 + d] * K[j * D + d];
        b += Q[q1 + d] * K[j * D + d];
      }
      S[s0 + j] = a;
      S[s1 + j] = b;
    }
  }
  for (; i < rows; i++)
    for (let j = 0; j < N; j++) {
      let a = 0;
      for (let d = 0; d < D; d++) a += Q[i * D + d] * K[j * D + d];
      S[i * N + j] = a;
    }
}

/** The transpose of a rows × cols matrix. */
function transpose(A: Float32Array, rows: number, cols: number): Float32Array {
  const T = new Float32Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) T[j * rows + i] = A[i * cols + j];
  return T;
}

/**
 * The backward of scoresAll, G = dL/dS: dQ = G·K and dK = Gᵀ·Q (both overwritten). Both
 * products are written as scoresAll against a transpose (dQ = G·(Kᵀ)ᵀ, dK = Gᵀ·(Qᵀ)ᵀ), so
 * they run on its register-blocked dot products instead of scattered updates.
 */
export function scoresBackward(G: Float32Array, Q: Float32Array, rows: number, K: Float32Array, N: number, D: number, dQ: Float32Array, dK: Float32Array): void {
  scoresAll(G, rows, transpose(K, N, D), D, N, dQ);
  scoresAll(transpose(G, rows, N), N, transpose(Q, rows, D), D, rows, dK);
}

/** The k best columns of each row of S (rows × N), best first, into top (rows × k). */
export function topK(S: Float32Array, rows: number, N: number, k: number, top: Int32Array): void {
  const best = new Float32Array(k);
  const idx = new Int32Array(k);
  for (let i = 0; i < rows; i++) {
    best.fill(-Infinity);
    idx.fill(-1);
    const s = i * N;
    for (let j = 0; j < N; j++) {
      const x = S[s + j];
      if (!(x > best[k - 1])) continue;
      let p = k - 1;
      while (p > 0 && best[p - 1] < x) {
        best[p] = best[p - 1];
        idx[p] = idx[p - 1];
        p--;
      }
      best[p] = x;
      idx[p] = j;
    }
    top.set(idx, i * k);
  }
}
