/** Shared types of the float64 references (the oracle every kernel is tested against). */
export type Reduction = 'mean' | 'sum' | 'none';

/** Scores S (B×N, row-major). fp32 inputs are exact in float64, so references take them as they are. */
export type Scores = Float64Array | Float32Array | number[];

/**
 * Positives or exclusions in CSR form (docs/MATH.md §1): row i owns cols[rowPtr[i] .. rowPtr[i+1]).
 * The references assume valid input: sorted or not, but no duplicate column in a row, and
 * exclusions disjoint from positives.
 */
export interface RefPositives {
  rowPtr: Int32Array | number[];
  cols: Int32Array | number[];
  /** One weight per entry (default 1). */
  weights?: Float32Array | Float64Array | number[];
}

/** Options every loss takes (docs/MATH.md §3, reductions; docs/MATH.md §1, scale). */
export interface RefCommonOptions {
  /** z = scale·S (default 1). */
  scale?: number;
  /** Default 'mean'. */
  reduction?: Reduction;
  /** With reduction 'none' only: weight of each row's loss in the gradient (default all 1). */
  gradOutput?: ArrayLike<number>;
}

/**
 * What every loss reference returns.
 *
 * With reduction 'none', `loss` is the plain sum Σ_i ℓ_i of the row losses (unweighted by
 * gradOutput): a single number to compare, while `grad` and `dScale` are the derivatives of
 * Σ_i gradOutput_i·ℓ_i, which is what a caller back-propagating per-row losses receives.
 */
export interface RefResult {
  /** Reduced loss; with reduction 'none', the plain sum of the row losses. */
  loss: number;
  /** ℓ_i per row, before reduction and gradOutput weighting (also for 'mean' and 'sum'). */
  rowLoss: Float64Array;
  /** dL/dS (B×N, row-major). With 'none', the gradient of Σ_i gradOutput_i·ℓ_i. */
  grad: Float64Array;
  /** dL/dscale = Σ_ij (∂L/∂z_ij)·S_ij, same convention as grad. */
  dScale: number;
  /** Per-row log-sum-exp, where the loss has one (softmaxCrossEntropy: of the softcapped z). */
  lse?: Float64Array;
}

/** What the softTopK operator reference returns (MATH softTopK, native/ops/soft_topk_math.h). */
export interface RefSoftTopKResult {
  /** p_ij (output 'prob') or log p_ij (output 'log'); excluded entries 0 or −Infinity. */
  values: Float64Array;
  /** t_i per row, with Σ_j σ(α(S_ij + t_i)) = k_i. */
  threshold: Float64Array;
}
