// One training run from a plain description: data, imbalance, trainer, epochs, checkpoints.
import os from 'node:os';
import path from 'node:path';
import {
  loadDataset,
  imbalance,
  classCounts,
  withChannels,
  type LoadProgress,
} from '../data/index';
import type { DataSplit, Dataset } from '../data/dataset';
import type { Evaluation } from './evaluation';
import {
  augmentSpec,
  describe,
  doubleReweighting,
  positiveInt,
  type TrainerOptions,
} from './options';
import { Trainer, type EpochResult, type InitFrom, type Progress } from './trainer';
import { openCheckpoint, recoverCheckpoint } from './checkpoint';
import { acquireRunLock } from './run-lock';
import { checkResumeSpec, datasetSpec, isFolder, resumePoint } from './resume';
import { ERROR_CODES, hasErrorCode, invalidArgument } from '../native';
import { writeReport, type ReportRun } from '../report/index';
import { loadValidationSet, validationSplit } from '../data/validation';
import { EpochSelector, type Monitor, type Selection } from './selection';

export interface RunSpec extends Omit<TrainerOptions, 'classNames'> {
  /** 'mnist', 'fashion-mnist', 'cifar10[:DIR]', 'cifar100[:DIR]' or a folder (default mnist) */
  dataset?: string;
  /** '6=0.01', '6=0.01,3=0.1', 'longtail:100' or 'step:10:5' (see imbalanceCounts) */
  imbalance?: string;
  epochs?: number;
  /** evaluate the test set every N epochs and after the last (default 1) */
  evalEvery?: number;
  /** checkpoint directory, rewritten after every epoch */
  out?: string;
  /**
   * continue the run whose checkpoint is in `out` from its last complete epoch, with the
   * model, loss, data, imbalance and seed it was started with (`epochs` is the total wanted;
   * threads, device and batch sizes may change)
   */
  resume?: boolean;
  /** start from these weights (safetensors, PyTorch's names): Trainer.loadWeights, strict */
  initFrom?: string;
  /** with initFrom: tensors whose shape differs keep their fresh initialisation */
  initFromPartial?: boolean;
  /**
   * hold this fraction of the training data out as a validation set: stratified by class,
   * seeded, cut after `imbalance` (so it follows the training distribution), at least one
   * image of each class that has two or more
   */
  valSplit?: number;
  /** a validation set of its own: a folder of class folders, named as the training classes */
  valDataset?: string;
  /** the validation figure that picks the best epoch (default 'val-balanced-accuracy') */
  monitor?: Monitor;
  /** keep the best epoch's checkpoint as `best/` in `out`; the final EVAL is of its weights */
  saveBest?: boolean;
  /** stop after this many epochs without an improvement of `monitor` */
  earlyStop?: number;
  /** replace the checkpoint already in `out` (without it, a run refuses to) */
  overwrite?: boolean;
  /** an image folder's images of more pixels than this are skipped (default 4096²) */
  maxPixels?: number;
}

export interface RunHooks {
  /** a dataset already loaded for `spec.dataset` (experiments share one) */
  data?: DataSplit;
  onEpoch?: (result: EpochResult) => void;
  onProgress?: (progress: Progress) => void;
  signal?: AbortSignal;
  /** a damaged newest checkpoint was skipped on resume (default: process.emitWarning) */
  onWarning?: (message: string) => void;
  /** initFrom loaded: what was left initialised (spec.initFromPartial) */
  onInitFrom?: (initFrom: InitFrom) => void;
  /** an image folder's decoding, file by file (`signal` stops it too) */
  onLoadProgress?: (progress: LoadProgress) => void;
  /**
   * the cache folder (`cacheDir()`) where an image folder's decoded splits are kept and read
   * back (LoadOptions.cache); default: none, the images are decoded on every run
   */
  decodeCache?: string;
}

export interface RunResult {
  checkpoint?: string;
  /** the epoch picked by the validation set (with `saveBest`: `eval` is of its weights) */
  best?: Selection;
  history: EpochResult[];
  eval: Evaluation;
  trainCounts: number[];
  /** total training seconds, evaluation excluded */
  trainSeconds: number;
}

/** What experiments keep of each run: the headline figures and what the report draws. */
export interface RunSummary {
  testAcc: number;
  balancedAccuracy: number;
  macroF1: number;
  trainSeconds: number;
  checkpoint?: string;
  trainCounts: number[];
  history: EpochResult[];
  eval: Evaluation;
}

/** A run as a report lists it. */
export function reportRun(
  name: string,
  s: RunSummary,
  seed: number,
  options?: ReportRun['options'],
): ReportRun {
  const { history, eval: evaluation, trainCounts, trainSeconds, checkpoint } = s;
  return { name, history, eval: evaluation, trainCounts, trainSeconds, checkpoint, seed, options };
}

export function summarizeRun(result: RunResult): RunSummary {
  return {
    testAcc: result.eval.accuracy,
    balancedAccuracy: result.eval.balancedAccuracy,
    macroF1: result.eval.macroF1,
    trainSeconds: result.trainSeconds,
    checkpoint: result.checkpoint,
    trainCounts: result.trainCounts,
    history: result.history,
    eval: result.eval,
  };
}

const DEFAULT_EPOCHS = 5;

/**
 * `scheduleEpochs` as a run fills it in: a 'onecycle' or 'cosine' schedule spans the run's
 * epochs unless told otherwise.
 */
export function scheduleSpan(
  spec: Pick<RunSpec, 'lrSchedule' | 'scheduleEpochs' | 'epochs'>,
): number | undefined {
  if (spec.scheduleEpochs !== undefined) return spec.scheduleEpochs;
  const scheduled = spec.lrSchedule !== undefined && spec.lrSchedule !== 'constant';
  return scheduled ? (spec.epochs ?? DEFAULT_EPOCHS) : undefined;
}

/**
 * Trains one run. Its `out` folder is created (or refused, in one line) before any work and
 * locked for the run's life: a second writer is refused, readers are never disturbed.
 */
export async function runTraining(spec: RunSpec, hooks: RunHooks = {}): Promise<RunResult> {
  // Before any data is read, and before the run's folder exists: a spec other than 'none' loads
  // the addon (a second of blocking), which must not delay a Ctrl-C while the data loads.
  if (spec.augment !== undefined) augmentSpec(spec.augment);
  const out = spec.out ? path.resolve(spec.out) : undefined;
  // Ranks other than 0 write nothing (and only read a resumed checkpoint).
  if (!out || (spec.distributed?.rank ?? 0) !== 0) return runLocked(spec, hooks);
  const warn = hooks.onWarning ?? ((m: string) => process.emitWarning(m, 'TorchfocalWarning'));
  const lock = await acquireRunLock(out, warn);
  try {
    // Only the lock's holder finishes an interrupted commit and cleans dead writes' files.
    await recoverCheckpoint(out);
    await recoverCheckpoint(path.join(out, BEST_DIR));
    return await runLocked(spec, hooks);
  } finally {
    lock.release();
  }
}

async function runLocked(spec: RunSpec, hooks: RunHooks): Promise<RunResult> {
  const out = spec.out ? path.resolve(spec.out) : undefined;
  if (spec.initFrom !== undefined && spec.resume) {
    throw invalidArgument(
      '--init-from starts a run from weights; --resume continues one: give one',
    );
  }
  if (spec.initFromPartial && spec.initFrom === undefined) {
    throw invalidArgument('--init-from-partial needs --init-from FILE');
  }
  const resumed = spec.resume ? await resumePoint(out) : undefined;
  if (resumed) checkResumeSpec(spec, resumed);
  else if (out && !spec.overwrite && (await hasCheckpoint(out))) {
    throw invalidArgument(
      `${out} already holds a checkpoint: continue it with --resume, or replace it with --overwrite`,
    );
  }
  const datasetName = resumed?.dataset ?? datasetSpec(spec.dataset ?? 'mnist');
  const imbalanceSpec = resumed ? resumed.imbalance : spec.imbalance;
  // A resume decodes as its run did; else --channels, or the data's own (colour: 3).
  const channels = resumed ? resumed.config.options.channels : spec.channels;
  const loading = {
    signal: hooks.signal,
    onProgress: hooks.onLoadProgress,
    maxPixels: spec.maxPixels,
    channels,
    cache: hooks.decodeCache,
    onWarning: hooks.onWarning,
  };
  const given = hooks.data && {
    ...hooks.data,
    ...(channels && {
      train: withChannels(hooks.data.train, channels),
      test: withChannels(hooks.data.test, channels),
    }),
  };
  const split = given ?? (await loadDataset(datasetName, loading).catch(stoppedLoading));
  const seed = resumed?.config.options.seed ?? spec.seed ?? 0;
  let train = split.train;
  if (imbalanceSpec) {
    train = imbalance(train, imbalanceSpec, seed);
  }
  // The validation set comes out of the cut training set, so it follows its distribution.
  const validation = resumed ? resumed.validation : validationSpec(spec);
  let val: Dataset | undefined;
  if (validation?.split != null) {
    ({ train, val } = validationSplit(train, validation.split, seed));
  } else if (validation?.dataset != null) {
    const decode = { ...loading, channels: train.channels as 1 | 3 }; // as the training set
    val = await loadValidationSet(validation.dataset, train.classNames, decode).catch(
      stoppedLoading,
    );
  }
  // A resume goes on to the epochs its run was started for, unless told another total.
  const epochs = spec.epochs ?? resumed?.epochs ?? DEFAULT_EPOCHS;
  if (!Number.isSafeInteger(epochs) || epochs < 1) {
    throw invalidArgument(`epochs: expected an integer >= 1, got ${describe(epochs)}`);
  }
  // Image folders leave unreadable files out; the count goes into the checkpoint and report.
  const skipped = [...(split.train.skipped ?? []), ...(split.test.skipped ?? [])];
  const warn = hooks.onWarning ?? ((m: string) => process.emitWarning(m, 'TorchfocalWarning'));
  // More threads than cores only oversubscribe them (1000 on 2 cores: an epoch 80× slower).
  const cores = os.availableParallelism();
  if (typeof spec.threads === 'number' && spec.threads > cores) {
    warn(`--threads ${spec.threads}: this machine has ${cores} cores; using ${cores}`);
    spec = { ...spec, threads: cores };
  }
  if (skipped.length > 0) {
    warn(skippedSummary(datasetName, skipped, out && path.join(out, 'report.json')));
  }
  const { capped, width, height } = split.train;
  if (capped) {
    warn(
      `${datasetName}: most images are ${capped.width}×${capped.height}; brought to ${width}×${height} (at most 1024 a side)`,
    );
  }
  const data = {
    dataset: datasetName,
    // a folder also relative to the checkpoint: both may move together to another machine
    ...(out && isFolder(datasetName) && { datasetFromCheckpoint: path.relative(out, datasetName) }),
    imbalance: imbalanceSpec ?? null,
    epochs,
    // the training split's common size: `eval` brings a test-only load to it
    imageSize: { width: split.train.width, height: split.train.height },
    trainCounts: classCounts(train),
    testCounts: classCounts(split.test),
    skippedFiles: skipped.length,
    // what `eval` decodes the test split with, when the run was given one
    ...(spec.maxPixels !== undefined && { maxPixels: spec.maxPixels }),
    validation,
    ...(val && { valCounts: classCounts(val) }),
  };
  if (
    resumed &&
    JSON.stringify(resumed.config.data?.trainCounts) !== JSON.stringify(data.trainCounts)
  ) {
    throw new Error(
      `--resume: ${datasetName} with imbalance ${imbalanceSpec ?? 'none'} no longer gives the training set the checkpoint was trained on`,
    );
  }
  // Distributed: every rank trains; rank 0 alone writes checkpoints and the report.
  const rank = spec.distributed?.rank ?? 0;
  const worldSize = spec.distributed?.worldSize ?? 1;
  if (resumed) {
    const before = resumed.config.options.distributed?.worldSize ?? 1;
    if (before !== worldSize) {
      throw new Error(
        `--resume: ${out} was trained by ${before} process(es); resume it with the same number (not ${worldSize})`,
      );
    }
  }
  const writes = out !== undefined && rank === 0;
  // The ranks' start-up check compares the run's length too (a rank with other --epochs would
  // wait alone in a collective once the others are done).
  const distributed = spec.distributed && {
    ...spec.distributed,
    runDescription: `epochs=${epochs}\n`,
  };
  const trainer = resumed
    ? await Trainer.load(
        resumed.opened,
        // how and where it runs may change on resume; what it computes may not
        {
          threads: spec.threads,
          device: spec.device,
          distributed,
          cudaGraph: spec.cudaGraph,
        },
        hooks.onWarning,
      )
    : await Trainer.create({
        ...trainerOptions(spec),
        distributed,
        seed,
        classNames: train.classNames,
        channels: train.channels as 1 | 3,
        scheduleEpochs: scheduleSpan(spec),
      });
  try {
    const twice = doubleReweighting(trainer.options);
    if (twice) warn(twice);
    if (spec.initFrom !== undefined) await initFrom(trainer, spec, hooks);
    // The batch sizes may change on resume (to continue after running out of memory).
    if (resumed) {
      trainer.setBatchSizes({ batchSize: spec.batchSize, evalBatchSize: spec.evalBatchSize });
    }
    // With a validation set the test set reaches the trainer only after training: it picks nothing.
    await trainer.setData({ train, val, test: val ? undefined : split.test });
    const remaining = Math.max(0, epochs - trainer.epochsDone);
    const selector = validation ? new EpochSelector(validation.monitor) : undefined;
    for (const r of trainer.history) if (r.val) selector?.observe(r.epoch, r.val); // a resume's picks so far
    const patience = validation?.earlyStop ?? Infinity;
    if (resumed && (remaining === 0 || (selector?.sinceBest ?? 0) >= patience)) {
      throw new Error(
        `--resume: ${out} is finished: ${finishedReason(trainer.epochsDone, selector, patience)}`,
      );
    }
    let bestWeights =
      resumed && validation?.saveBest && selector?.best && out
        ? await Trainer.readWeights(path.join(out, BEST_DIR))
        : undefined;
    try {
      for await (const r of trainer.epochs(remaining, { ...hooks, evalEvery: spec.evalEvery })) {
        const improved =
          r.val !== undefined && selector !== undefined && selector.observe(r.epoch, r.val);
        if (writes) await trainer.save(out, data);
        if (improved && validation?.saveBest) {
          bestWeights = await trainer.stateDict();
          if (writes)
            await trainer.save(path.join(out, BEST_DIR), { ...data, best: selector!.best });
        }
        hooks.onEpoch?.(r);
        if (selector && selector.sinceBest >= patience) break; // early stop
      }
    } catch (err) {
      // Aborted between two steps, or out of memory: the checkpoint takes the interrupted
      // epoch's place too, and a resume (with a smaller batch) continues there.
      const interrupted =
        (err as Error).name === 'AbortError' || hasErrorCode(err, ERROR_CODES.outOfMemory);
      if (writes && interrupted && trainer.partialEpoch) await trainer.save(out, data);
      throw err;
    }
    const last = trainer.history[trainer.history.length - 1];
    let evaluation = remaining > 0 ? last?.eval : undefined;
    if (val) {
      // The test set, evaluated once: with the picked epoch's weights under saveBest.
      if (bestWeights) await trainer.loadStateDict(bestWeights);
      await trainer.setData({ test: split.test });
      evaluation = undefined;
    }
    const result: RunResult = {
      checkpoint: out,
      ...(selector?.best && { best: selector.best }),
      history: trainer.history,
      eval: evaluation ?? (await finalEvaluation(trainer, hooks.signal)),
      trainCounts: data.trainCounts,
      trainSeconds: trainer.history.reduce((s, r) => s + r.seconds, 0),
    };
    // Stopped during or after the final evaluation: every epoch is checkpointed, no report.
    if (hooks.signal?.aborted) throw finishedAbort(trainer.epochsDone);
    if (writes) {
      const name = `${trainer.options.model}-${trainer.options.loss}`;
      await writeReport(out, {
        title: `${name} on ${datasetName}${imbalanceSpec ? ` (imbalance ${imbalanceSpec})` : ''}`,
        kind: 'run',
        createdAt: new Date().toISOString(),
        dataset: datasetName,
        classNames: train.classNames,
        runs: [{ name, ...result, options: { ...trainer.options }, seed }],
        ...(skipped.length > 0 && { skipped }),
        findings: [
          ...(result.best ? [pickedSentence(result.best, validation!)] : []),
          ...(skipped.length > 0
            ? [
                `${skipped.length} file(s) of the dataset were left out as unreadable (listed in report.json).`,
              ]
            : []),
        ],
      });
    }
    return result;
  } finally {
    trainer.dispose();
  }
}

/** Loads spec.initFrom into a new trainer; errors as one `init-from FILE: ...` line. */
async function initFrom(trainer: Trainer, spec: RunSpec, hooks: RunHooks): Promise<void> {
  const partial = spec.initFromPartial ?? false;
  const loaded = await trainer.loadWeights(spec.initFrom!, { partial }).catch((err: Error) => {
    const shapesOnly =
      !partial && /^[^(]*shape mismatch/.test(err.message.slice(spec.initFrom!.length + 2));
    const hint = shapesOnly ? '; --init-from-partial keeps those initialised' : '';
    throw new Error(`init-from ${err.message}${hint}`);
  });
  hooks.onInitFrom?.(loaded);
}

/** What a RunSpec holds beyond TrainerOptions: the run's data, length, output and selection. */
const RUN_KEYS = [
  'maxPixels',
  'dataset',
  'imbalance',
  'epochs',
  'evalEvery',
  'out',
  'resume',
  'valSplit',
  'valDataset',
  'monitor',
  'saveBest',
  'earlyStop',
  'initFrom',
  'initFromPartial',
  'overwrite',
] as const satisfies readonly Exclude<keyof RunSpec, keyof TrainerOptions>[];

// Every RunSpec key that is not a trainer option is in RUN_KEYS (a compile error otherwise).
true satisfies [
  Exclude<Exclude<keyof RunSpec, keyof TrainerOptions>, (typeof RUN_KEYS)[number]>,
] extends [never]
  ? true
  : false;

/** The trainer's part of a spec; an unknown key is left in for resolveOptions to name. */
export function trainerOptions(spec: RunSpec): Omit<TrainerOptions, 'classNames'> {
  const options: Record<string, unknown> = { ...spec };
  for (const key of RUN_KEYS) delete options[key];
  return options;
}

/** One line: how many files were left out, the first few with why, where the rest are listed. */
export function skippedSummary(
  dataset: string,
  skipped: { file: string; reason: string }[],
  report?: string,
): string {
  const first = skipped.slice(0, 3).map((s) => `${path.basename(s.file)} (${s.reason})`);
  const more = skipped.length > 3 ? `, and ${skipped.length - 3} more` : '';
  const listed = report ? ` (all listed in ${report})` : '';
  return `${skipped.length} file(s) of ${dataset} could not be read and were left out: ${first.join(', ')}${more}${listed}`;
}

/** Where `saveBest` keeps the best epoch's checkpoint, inside the run's directory. */
export const BEST_DIR = 'best';

/** How a run picks epochs by a validation set, as its checkpoint records it. */
export interface ValidationSpec {
  split: number | null;
  /** an absolute path */
  dataset: string | null;
  monitor: Monitor;
  saveBest: boolean;
  earlyStop: number | null;
}

function validationSpec(spec: RunSpec): ValidationSpec | null {
  const { valSplit, valDataset, monitor, saveBest, earlyStop } = spec;
  if (valSplit !== undefined && valDataset !== undefined) {
    throw new Error('--val-split and --val-dataset: give one of them');
  }
  if (valSplit === undefined && valDataset === undefined) {
    if (saveBest || earlyStop !== undefined || monitor !== undefined) {
      throw new Error(
        '--save-best, --early-stop and --monitor pick epochs by a validation set: give --val-split F or --val-dataset PATH',
      );
    }
    return null;
  }
  if (valSplit !== undefined && !(valSplit > 0 && valSplit < 1)) {
    throw new Error(`valSplit: expected a fraction in (0, 1), got ${describe(valSplit)}`);
  }
  if (earlyStop !== undefined) positiveInt('earlyStop', earlyStop);
  if (spec.evalEvery !== undefined) {
    throw new Error(
      '--eval-every evaluates the test set during training; with a validation set the test set is evaluated once, after training',
    );
  }
  return {
    split: valSplit ?? null,
    dataset: valDataset === undefined ? null : path.resolve(valDataset),
    monitor: new EpochSelector(monitor ?? 'val-balanced-accuracy').monitor,
    saveBest: saveBest ?? false,
    earlyStop: earlyStop ?? null,
  };
}

function finishedReason(
  done: number,
  selector: EpochSelector | undefined,
  patience: number,
): string {
  if (selector && selector.sinceBest >= patience) {
    return `it stopped early after epoch ${done - 1}: ${patience} epochs without a better ${selector.monitor} than epoch ${selector.best?.epoch}`;
  }
  return `it has trained its ${done} epochs; ask for more with --epochs N (N > ${done})`;
}

function pickedSentence(best: Selection, validation: ValidationSpec): string {
  const source =
    validation.split !== null ? `a ${validation.split} validation split` : validation.dataset;
  const kept = validation.saveBest
    ? `; its weights are in ${BEST_DIR}/ and the test figures are theirs`
    : '';
  return `Epoch ${best.epoch} was picked by ${best.monitor} = ${best.value.toFixed(4)} on ${source}${kept}.`;
}

/** An abort once every epoch is done (stage 'finished': the checkpoint holds them all). */
/** The test set's evaluation after the last epoch; an abort there is a finished run's. */
async function finalEvaluation(trainer: Trainer, signal?: AbortSignal): Promise<Evaluation> {
  try {
    return await trainer.evaluate({ signal });
  } catch (err) {
    throw (err as Error).name === 'AbortError' ? finishedAbort(trainer.epochsDone) : err;
  }
}

function finishedAbort(epochsDone: number): Error {
  const err = new Error('training was aborted after its last epoch');
  return Object.assign(err, { name: 'AbortError', stage: 'finished', epochsDone });
}

/** An abort during loading: marked, since no checkpoint was touched (the CLI says so). */
function stoppedLoading(err: Error): never {
  if (err.name === 'AbortError') Object.assign(err, { stage: 'loading' });
  throw err;
}

async function hasCheckpoint(dir: string): Promise<boolean> {
  return openCheckpoint(dir).then(
    () => true,
    (err: Error) => !/not a torchfocal checkpoint/.test(err.message),
  );
}
