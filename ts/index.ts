// torchfocal's public API.
export { Trainer, openCheckpoint, readCheckpointConfig, CHECKPOINT_FILES } from './train/trainer';
export { ERROR_CODES, hasErrorCode } from './native';
export type {
  EpochResult,
  FitOptions,
  Prediction,
  Progress,
  CheckpointConfig,
  InitFrom,
} from './train/trainer';
export {
  SAMPLERS,
  MEMORY_FORMATS,
  AMP_MODES,
  CUDA_GRAPH_MODES,
  LR_SCHEDULES,
} from './train/options';
export type {
  TrainerOptions,
  OptimizerName,
  SamplerName,
  MemoryFormat,
  AmpMode,
  LrScheduleName,
} from './train/options';
export type { Evaluation, ClassEvaluation } from './train/evaluation';
export { exportModel, EXPORT_FORMATS } from './export/index';
export type { ExportFormat, ExportOptions, ExportSummary } from './export/index';
export { channelNormalisation } from './train/checkpoint';
export { runTraining } from './train/run';
export type { RunSpec, RunHooks, RunResult } from './train/run';
export { runStarve, starveVariants } from './experiment/starve';
export type { StarveOptions, StarveRow } from './experiment/starve';
export {
  runSweep,
  parseSweepConfig,
  loadSweepConfig,
  sweepRuns,
  aggregateSweep,
  meanStd,
  NO_IMBALANCE,
} from './experiment/sweep';
export type {
  SweepConfig,
  ParsedSweepConfig,
  SweepLoss,
  SweepShared,
  SweepRun,
  SweepRow,
  SweepGroup,
  SweepResult,
  SweepHooks,
  SweepRowMetrics,
  MeanStd,
} from './experiment/sweep';
export * from './data/index';
export { readSafetensors, writeSafetensors } from './io/safetensors';
export type { RuntimeInfo, CudaDeviceInfo, ModelInfo, LossInfo } from './native';
export { installInfo } from './info';
export type { InstallInfo } from './info';
export { packageVersion } from './package';
export * as ops from './ops';
export type { FocalLossOptions, FocalLossResult } from './ops';

import { native, type LossInfo, type ModelInfo, type RuntimeInfo } from './native';
import type { LrScheduleName } from './train/options';

/** LibTorch version, CUDA availability, threads and the BLAS library in use. */
export function runtimeInfo(): RuntimeInfo {
  return native().runtimeInfo();
}

/** The network zoo: names and input sizes. */
export function models(): ModelInfo[] {
  return native().modelInfos();
}

/**
 * Every step's learning rate of `schedule` over a run of `steps` optimizer steps (epochs × steps
 * per epoch), as the trainer applies them: to check or plot a schedule before training with it.
 */
export function learningRates(schedule: LrScheduleName, lr: number, steps: number): Float64Array {
  return native().learningRates({ schedule, lr, steps });
}

/** The loss family: names accepted by `loss`, with a line on each. */
export function losses(): LossInfo[] {
  return native().lossInfos();
}
