// The engine's ops for scripting and checks: the fused focal loss and its gradient.
import { call, native } from './native';

export interface FocalLossOptions {
  /** logits (or probabilities with withLogits: false); the op runs in this precision */
  input: Float32Array | Float64Array;
  /** [N, C] for softmax mode; any shape for sigmoid mode */
  shape: number[];
  /** softmax: N class indices (ignoreIndex allowed); sigmoid: floats in [0, 1], input's shape */
  target: ArrayLike<number> | Int32Array | BigInt64Array | Float32Array | Float64Array;
  /** softmax: one per class or one for all, each >= 0 (may exceed 1); sigmoid: one number in [0, 1], < 0 disables */
  alpha?: number | number[];
  /** focusing parameter, any real >= 0 (default 2) */
  gamma?: number;
  mode?: 'softmax' | 'sigmoid';
  reduction?: 'mean' | 'sum' | 'none';
  ignoreIndex?: number;
  /** false: the input holds probabilities (the original experiment's with_logits=False) */
  withLogits?: boolean;
  /** softmax: smooth the target distribution before alpha and p_t are formed */
  labelSmoothing?: number;
  /** where the op runs: 'cpu' (default), 'cuda' or 'auto'; results come back as typed arrays */
  device?: 'cpu' | 'cuda' | 'auto' | string;
}

export interface FocalLossResult {
  /** the reduced loss (one value), or one per row / element for reduction 'none' */
  loss: Float32Array | Float64Array;
  /** d loss / d input (of the sum, for 'none'), same shape and precision as the input */
  grad: Float32Array | Float64Array;
}

/** Fused focal loss: value and input gradient in one native call, off the JS thread. */
export async function focalLoss(o: FocalLossOptions): Promise<FocalLossResult> {
  if (!(o.input instanceof Float32Array) && !(o.input instanceof Float64Array)) {
    throw new TypeError('focalLoss: input must be a Float32Array or Float64Array');
  }
  const mode = o.mode ?? 'softmax';
  if (mode !== 'softmax' && mode !== 'sigmoid') {
    throw new RangeError(`focalLoss: mode must be 'softmax' or 'sigmoid', got '${String(mode)}'`);
  }
  if (!Array.isArray(o.shape) || !o.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new TypeError('focalLoss: shape must be an array of integers >= 0');
  }
  if (mode === 'softmax' && o.shape.length !== 2) {
    throw new RangeError(`focalLoss: shape must be [N, C] in softmax mode, got [${o.shape}]`);
  }
  const count = o.shape.reduce((a, b) => a * b, 1);
  if (o.input.length !== count) {
    throw new RangeError(
      `focalLoss: input has ${o.input.length} values but shape [${o.shape}] needs ${count}`,
    );
  }
  if (mode === 'softmax') {
    // C is bounded by the data (C <= values) when there are rows; an empty batch's by 2^24.
    const [n, c] = o.shape;
    if (c < 1 || (n === 0 && c > 2 ** 24)) {
      throw new RangeError(
        `focalLoss: C (shape[1]) must be >= 1, and at most 2^24 when N is 0, got ${c}`,
      );
    }
  }
  if (o.alpha !== undefined) {
    const alpha = typeof o.alpha === 'number' ? [o.alpha] : o.alpha;
    if (!Array.isArray(alpha) || !alpha.every((a) => typeof a === 'number' && Number.isFinite(a))) {
      throw new TypeError('focalLoss: alpha must be a finite number or an array of finite numbers');
    }
    if (mode === 'softmax') {
      if (!alpha.every((a) => a >= 0))
        throw new RangeError(`focalLoss: alpha must hold numbers >= 0, got [${alpha}]`);
      if (alpha.length !== 1 && alpha.length !== o.shape[1])
        throw new RangeError(
          `focalLoss: alpha has ${alpha.length} values, expected 1 or C = ${o.shape[1]}`,
        );
    }
  }
  if (o.gamma !== undefined && (!Number.isFinite(o.gamma) || o.gamma < 0)) {
    throw new RangeError(`focalLoss: gamma must be a finite number >= 0, got ${o.gamma}`);
  }
  let target = o.target;
  if (mode === 'softmax') {
    const n = o.shape[0];
    if (target.length !== n)
      throw new RangeError(
        `focalLoss: target has ${target.length} values, expected ${n} (one per row)`,
      );
    if (!(target instanceof Int32Array) && !(target instanceof BigInt64Array)) {
      const values = Array.from(target as ArrayLike<number>);
      if (!values.every(Number.isSafeInteger))
        throw new TypeError('focalLoss: target must hold integer class indices');
      target = Int32Array.from(values);
    }
  } else {
    if (target.length !== count)
      throw new RangeError(
        `focalLoss: target has ${target.length} values, expected ${count} (the input's shape)`,
      );
    if (!(target instanceof Float32Array) && !(target instanceof Float64Array)) {
      target = Float64Array.from(target as ArrayLike<number>);
    }
  }
  const t = target as Int32Array | BigInt64Array | Float32Array | Float64Array;
  return call(() => native().focalLoss({ ...o, mode, target: t }));
}
