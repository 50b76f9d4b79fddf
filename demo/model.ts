/**
 * The dual encoder: one embedding table shared by documents and labels, a weighted mean of
 * token embeddings (embedding-bag), trained with Adam. The scores, the loss and the gradients
 * with respect to both embeddings come from one fusedloss call (`<loss>FromEmbeddings`, which
 * also takes the cosine); what is left here is the bag's forward and backward, Adam, and the
 * evaluation's exact nearest-neighbour search.
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

  /** Embeds the bags `ids` (all rows when omitted) into `out` (rows × dim): each bag's weighted mean of token embeddings. */
  encode(bags: Bags, ids: Int32Array | null, out: Float32Array): void {
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
      // An empty bag stays the zero vector: it scores 0 everywhere.
      const inv = w > 0 ? 1 / w : 0;
      for (let d = 0; d < D; d++) out[o + d] *= inv;
    }
  }

  /** Adds to `grad` the gradient through encode(): each token of bag r gets its weight's share of dx_r (rows × dim). */
  backward(bags: Bags, ids: Int32Array | null, dx: Float32Array): void {
    const { ptr, tok, val } = bags;
    const D = this.dim;
    const G = this.grad;
    const n = ids ? ids.length : ptr.length - 1;
    for (let r = 0; r < n; r++) {
      const b = ids ? ids[r] : r;
      const o = r * D;
      let w = 0;
      for (let k = ptr[b]; k < ptr[b + 1]; k++) w += val[k];
      if (!(w > 0)) continue;
      for (let k = ptr[b]; k < ptr[b + 1]; k++) {
        const s = val[k] / w;
        const e = tok[k] * D;
        for (let d = 0; d < D; d++) G[e + d] += s * dx[o + d];
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

/**
 * Scales each row of X (rows × D) to unit length in place and keeps its length in `norms`. A row
 * shorter than 1e-12 becomes the zero vector (it scores 0 everywhere).
 */
export function normalizeRows(X: Float32Array, rows: number, D: number, norms: Float32Array): void {
  for (let r = 0; r < rows; r++) {
    const o = r * D;
    let ss = 0;
    for (let d = 0; d < D; d++) ss += X[o + d] * X[o + d];
    const norm = Math.sqrt(ss);
    norms[r] = norm;
    const s = norm > 1e-12 ? 1 / norm : 0;
    for (let d = 0; d < D; d++) X[o + d] *= s;
  }
}

/**
 * The backward of normalizeRows, in place: dY (the gradient with respect to the unit rows Y)
 * becomes dX = (dY − Y·(Y·dY))/‖X‖; a row normalizeRows zeroed gets 0.
 */
export function normalizeRowsBackward(Y: Float32Array, rows: number, D: number, norms: Float32Array, dY: Float32Array): void {
  for (let r = 0; r < rows; r++) {
    const o = r * D;
    if (!(norms[r] > 1e-12)) {
      dY.fill(0, o, o + D);
      continue;
    }
    let ydy = 0;
    for (let d = 0; d < D; d++) ydy += Y[o + d] * dY[o + d];
    const s = 1 / norms[r];
    for (let d = 0; d < D; d++) dY[o + d] = (dY[o + d] - Y[o + d] * ydy) * s;
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

/**
 * Folds the columns of S (rows × N, column j standing for index offset + j) into each row's
 * running k best, `best`/`idx` (rows × k, best first; start them at −∞ and −1). Folding the
 * column tiles of a row in ascending order gives the ranking of one pass over the whole row:
 * on equal scores the lower index stays ahead.
 */
export function foldTopK(S: Float32Array, rows: number, N: number, offset: number, k: number, best: Float32Array, idx: Int32Array): void {
  for (let i = 0; i < rows; i++) {
    const s = i * N;
    const b = i * k;
    for (let j = 0; j < N; j++) {
      const x = S[s + j];
      if (!(x > best[b + k - 1])) continue;
      let p = k - 1;
      while (p > 0 && best[b + p - 1] < x) {
        best[b + p] = best[b + p - 1];
        idx[b + p] = idx[b + p - 1];
        p--;
      }
      best[b + p] = x;
      idx[b + p] = offset + j;
    }
  }
}

/** The k best columns of each row of S (rows × N), best first, into top (rows × k). */
export function topK(S: Float32Array, rows: number, N: number, k: number, top: Int32Array): void {
  const best = new Float32Array(rows * k).fill(-Infinity);
  top.fill(-1, 0, rows * k);
  foldTopK(S, rows, N, 0, k, best, top);
}
