/** Shared types of the float64 references (the oracle every kernel is tested against). */
export type Reduction = 'mean' | 'sum' | 'none';

export type Scores = Float64Array | Float32Array | number[];

export interface RefResult {
  /** Reduced loss; with reduction 'none', the plain sum of the row losses. */
  loss: number;
  /** ℓ_i per row, before reduction and gradOutput weighting. */
  rowLoss: Float64Array;
  /** dL/dS (B×N, row-major). With 'none', the gradient of Σ_i gradOutput_i·ℓ_i. */
  grad: Float64Array;
  /** dL/dscale, same convention as grad. */
  dScale: number;
  /** Per-row log-sum-exp, where the loss has one. */
  lse?: Float64Array;
}
