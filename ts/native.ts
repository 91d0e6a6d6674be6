// The one typed loader of the native addon. Nothing else in ts/ requires the .node file.
import path from 'node:path';
import fs from 'node:fs';
import type { FocalLossOptions } from './ops';
import { PACKAGE_ROOT } from './package';

export interface NativeTrainerOptions {
  model: string;
  numClasses: number;
  syncBn?: boolean;
  distributed?: {
    worldSize: number;
    rank: number;
    masterAddr: string;
    masterPort: number;
    timeoutSeconds: number;
    bucketBytes?: number;
    runDescription?: string;
  };
  widthDivisor?: number;
  /** 1 (grey) or 3 (RGB): the images' channels, which the first layer is built for */
  channels?: number;
  /** the side the network takes images at; 0 or absent: the model's own */
  inputSize?: number;
  /** 'fixed': normalizeMean/Std; 'dataset': the training set's, computed on the device */
  normalize?: 'none' | 'dataset' | 'fixed';
  normalizeMean?: number[];
  normalizeStd?: number[];
  /** training batches' augmentation on the device: 'none' or e.g. 'crop:4,flip' */
  augment?: string;
  /** train only the network's last layer; the rest stays as loaded, in eval mode */
  freezeBackbone?: boolean;
  batchSize?: number;
  optimizer?: 'adam' | 'adamw' | 'sgd';
  lr?: number;
  momentum?: number;
  nesterov?: boolean;
  weightDecay?: number;
  clipGradNorm?: number;
  warmupEpochs?: number;
  lrSchedule?: string;
  scheduleEpochs?: number;
  loss?: string;
  alpha?: number[];
  /** 'auto': inverse class frequency from the training counts */
  alphaMode?: 'auto';
  alphaNormalize?: 'mean' | 'weights';
  gamma?: number;
  labelSmoothing?: number;
  beta?: number;
  tau?: number;
  /** deferred re-weighting: class weights from this epoch on (-1: always) */
  drwEpoch?: number;
  seed?: number;
  threads?: number;
  device?: string;
  progressEvery?: number;
  evalBatchSize?: number;
  sampler?: string;
  memoryFormat?: string;
  amp?: string;
  cudaGraph?: string;
  onNan?: string;
}

export interface NativeClassMetrics {
  class: number;
  support: number;
  predicted: number;
  recall: number;
  precision: number;
  f1: number;
}

export interface NativeMetrics {
  total: number;
  accuracy: number;
  balancedAccuracy: number;
  macroF1: number;
  perClass: NativeClassMetrics[];
  confusion: number[][];
  /** [k - 1]: the fraction whose true class is among the k highest logits, k = 1..C */
  topKAccuracy?: number[];
}

export interface NativeEpochResult {
  epoch: number;
  steps: number;
  loss: number;
  trainAcc: number;
  seconds: number;
  skippedSteps: number;
  test?: NativeMetrics;
  /** the validation set after the epoch, when one is set; loss: the training loss's mean */
  val?: NativeMetrics & { loss: number };
}

export interface NativeProgress {
  epoch: number;
  step: number;
  steps: number;
  loss: number;
}

/** Where a cancelled epoch stopped; the next epoch call continues it. */
export interface PartialEpoch {
  epoch: number;
  /** steps done */
  step: number;
  lossSum: number;
  correct: number;
  skipped: number;
  seconds: number;
}

export interface NativeTensor {
  name: string;
  /** F64, F16 and BF16 are read from files (loadWeights converts them), never written */
  dtype: 'F32' | 'I64' | 'U8' | 'F64' | 'F16' | 'BF16';
  shape: number[];
  data: ArrayBuffer | Uint8Array;
}

/** One ONNX operator of an exported network (src/export/onnx_graph.h). */
export interface NativeOnnxNode {
  opType: string;
  name: string;
  inputs: string[];
  outputs: string[];
  attributes: (
    | { name: string; type: 'int' | 'float'; value: number }
    | { name: string; type: 'ints'; value: number[] }
  )[];
}

/** A network as ONNX operators, weights and constants (src/export/onnx_graph.h). */
export interface NativeOnnxGraph {
  nodes: NativeOnnxNode[];
  /** F32 weights (state_dict names) and I64 operator arguments */
  initializers: NativeTensor[];
  /** float32 [N, channels, inputSize, inputSize] */
  input: string;
  /** float32 [N, numClasses] logits */
  output: string;
  channels: number;
  inputSize: number;
  numClasses: number;
  /** the default domain's opset whose operators the nodes are */
  opset: number;
}

export interface NativeInitReport {
  loaded: string[];
  reinitialised: { name: string; fileShape: number[]; modelShape: number[] }[];
}

/** The shape of an image stack: `images` holds count × channels × height × width bytes. */
export interface ImageShape {
  count: number;
  channels: number;
  height: number;
  width: number;
}

export interface NativeTrainer {
  init(): Promise<void>;
  setData(
    split: 'train' | 'test' | 'val',
    images: Uint8Array,
    labels: Int32Array,
    shape: ImageShape,
  ): Promise<void>;
  trainEpoch(
    onProgress?: (p: NativeProgress) => void,
    evaluate?: boolean,
  ): Promise<NativeEpochResult>;
  evaluate(split?: 'test'): Promise<NativeMetrics>;
  evaluate(split: 'val'): Promise<NativeMetrics & { loss: number }>;
  predict(images: Uint8Array, shape: ImageShape): Promise<Float32Array>;
  /** the network's logits for [count, channels, side, side] inputs taken as they are */
  logits(
    inputs: Float32Array,
    count: number,
    channels: number,
    side: number,
  ): Promise<Float32Array>;
  exportGraph(): Promise<NativeOnnxGraph>;
  stateDict(): Promise<NativeTensor[]>;
  loadStateDict(state: NativeTensor[]): Promise<void>;
  /** weights from outside, strict or partial (src/train/init_weights.h) */
  loadWeights(state: NativeTensor[], partial: boolean): Promise<NativeInitReport>;
  /** the optimizer's state and the dropout stream (src/train/optimizer_state.h names them) */
  trainState(): Promise<NativeTensor[]>;
  loadTrainState(state: NativeTensor[]): Promise<void>;
  setBatchSizes(sizes: { batchSize?: number; evalBatchSize?: number }): void;
  classCounts(): number[];
  setEpochsDone(epochs: number): void;
  setPartialEpoch(partial: PartialEpoch): void;
  info(): {
    initialised: boolean;
    busy: boolean;
    disposed: boolean;
    device?: string;
    inputSize?: number;
    channels?: number;
    /** the normalisation in use, per channel; absent: none */
    mean?: number[];
    std?: number[];
    epochsDone?: number;
    partialEpoch?: PartialEpoch;
  };
  cancel(): void;
  dispose(): void;
}

export interface CudaDeviceInfo {
  name: string;
  /** bytes */
  totalMemory: number;
  /** compute capability, "9.0" */
  capability: string;
}

/** What the addon was built with and what this process found (`torchfocal info`). */
export interface RuntimeInfo {
  torchVersion: string;
  /** the LibTorch CMake config the build found */
  torchDir: string;
  cudaBuilt: boolean;
  /** the CUDA runtime the build compiled against (12040 = 12.4); 0 without CUDA */
  cudaVersion: number;
  cudaAvailable: boolean;
  cudaDevices: number;
  devices: CudaDeviceInfo[];
  cudnnBuilt: boolean;
  /** read only when a device is present; 0 otherwise */
  cudnnVersion: number;
  ncclBuilt: boolean;
  glooBuilt: boolean;
  /** LibTorch's oneDNN ("v3.7.2"); empty when it has none */
  onednn: string;
  /** whether convolutions run through oneDNN: "used", or why not ("off: its gradients failed …") */
  onednnConvolutions: string;
  /** the widest CPU kernels LibTorch runs here ("AVX2") */
  cpuCapability: string;
  threads: number;
  /** the BLAS file mapped into the process */
  blasLibrary: string;
  /** OpenBLAS's thread count; 0 when the BLAS cannot say */
  blasThreads: number;
  cxxCompiler: string;
  /** nvcc that compiled the kernels; empty without CUDA */
  cudaCompiler: string;
}

export interface ModelInfo {
  name: string;
  inputSize: number;
  description: string;
}

export interface LossInfo {
  name: string;
  summary: string;
  takesWeights: boolean;
}

/** ops.focalLoss's options once the target is a typed array (ts/ops.ts documents them). */
export type NativeFocalOptions = Omit<FocalLossOptions, 'target'> & {
  target: Int32Array | BigInt64Array | Float32Array | Float64Array;
};

export interface NativeAddon {
  NativeTrainer: new (options: NativeTrainerOptions) => NativeTrainer;
  runtimeInfo(): RuntimeInfo;
  modelInfos(): ModelInfo[];
  lossInfos(): LossInfo[];
  learningRates(options: { schedule: string; lr: number; steps: number }): Float64Array;
  /** an --augment spec checked and in canonical order; throws a RangeError naming a bad part */
  augmentSpec(spec: string): string;
  benchFocalOp(options: {
    rows: number;
    classes: number;
    threads?: number;
    repeats?: number;
    device?: string;
  }): Promise<{
    rows: number;
    classes: number;
    threads: number;
    fused: number;
    crossEntropy: number;
    composed: number;
  }>;
  focalLoss(
    options: NativeFocalOptions,
  ): Promise<{ loss: Float32Array | Float64Array; grad: Float32Array | Float64Array }>;
}

let addon: NativeAddon | undefined;

/** The addon file `native()` loads: `TORCHFOCAL_ADDON`, or the one the install built. */
export function addonPath(): string {
  return (
    process.env.TORCHFOCAL_ADDON ?? path.join(PACKAGE_ROOT, 'build', 'Release', 'torchfocal.node')
  );
}

/** The addon, loaded on first use. `TORCHFOCAL_ADDON` may point at another build. */
export function native(): NativeAddon {
  if (addon) return addon;
  // OpenBLAS reads this when LibTorch loads it: BLAS must stay single-threaded under
  // LibTorch's own thread pool (a threaded BLAS inside it oversubscribes the cores).
  process.env.OPENBLAS_NUM_THREADS ??= '1';
  const file = addonPath();
  if (!fs.existsSync(file)) {
    throw new Error(
      `torchfocal: the native addon is not built (${file} is missing); run 'npm run build:native'`,
    );
  }
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  addon = require(file) as NativeAddon;
  return addon;
}

/**
 * Awaits a native promise and, when it rejects, re-throws with the caller's stack, so a failure
 * points at the user's line rather than at the addon (sharp does the same).
 */
export async function call<T>(promise: () => Promise<T>): Promise<T> {
  const site = new Error();
  try {
    return await promise();
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    const wrapped: Error & { code?: string } = new Error(message);
    wrapped.stack = `Error: ${message}\n${site.stack?.split('\n').slice(2).join('\n') ?? ''}`;
    const code = (err as { code?: unknown } | null)?.code;
    if (typeof code === 'string') wrapped.code = code;
    throw wrapped;
  }
}

/** `code` of the errors the engine raises by kind. */
export const ERROR_CODES = {
  /** a step or evaluation ran out of memory; the trainer stays usable (setBatchSizes) */
  outOfMemory: 'ERR_TORCHFOCAL_OUT_OF_MEMORY',
  /** a non-finite loss with onNan 'stop' */
  nonFiniteLoss: 'ERR_TORCHFOCAL_NON_FINITE_LOSS',
  /** stopped between steps: this trainer's cancel, or (distributed) another rank's */
  cancelled: 'ERR_TORCHFOCAL_CANCELLED',
  /** an option, or a combination of options, that cannot work: the message names it */
  invalidArgument: 'ERR_TORCHFOCAL_INVALID_ARGUMENT',
} as const;

/** An Error carrying one of ERROR_CODES, as the native errors do. */
export function codedError(
  code: (typeof ERROR_CODES)[keyof typeof ERROR_CODES],
  message: string,
): Error {
  return Object.assign(new Error(message), { code });
}

/** A bad option value or combination: `code` is ERR_TORCHFOCAL_INVALID_ARGUMENT (CLI: exit 2). */
export function invalidArgument(message: string): Error {
  return codedError(ERROR_CODES.invalidArgument, message);
}

export function hasErrorCode(err: unknown, code: string): boolean {
  return (err as { code?: unknown } | null)?.code === code;
}
