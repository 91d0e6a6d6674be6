// One training run from a plain description: data, imbalance, trainer, epochs, checkpoints.
import path from 'node:path';
import { loadDataset, imbalance, classCounts } from '../data/index';
import type { DataSplit } from '../data/dataset';
import type { Evaluation } from './evaluation';
import type { TrainerOptions } from './options';
import { Trainer, type EpochResult, type InitFrom, type Progress } from './trainer';
import { openCheckpoint } from './checkpoint';
import { ERROR_CODES, hasErrorCode } from '../native';
import { writeReport, type ReportRun } from '../report/index';

export interface RunSpec extends Omit<TrainerOptions, 'classNames'> {
  /** 'mnist', 'fashion-mnist' or a folder (default mnist) */
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
}

export interface RunResult {
  checkpoint?: string;
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

export async function runTraining(spec: RunSpec, hooks: RunHooks = {}): Promise<RunResult> {
  const out = spec.out ? path.resolve(spec.out) : undefined;
  if (spec.initFrom !== undefined && spec.resume) {
    throw new Error('--init-from starts a run from weights; --resume continues one: give one');
  }
  if (spec.initFromPartial && spec.initFrom === undefined) {
    throw new Error('--init-from-partial needs --init-from FILE');
  }
  const resumed = spec.resume ? await resumePoint(out) : undefined;
  const datasetName = resumed?.dataset ?? spec.dataset ?? 'mnist';
  const imbalanceSpec = resumed ? resumed.imbalance : spec.imbalance;
  const split = hooks.data ?? (await loadDataset(datasetName));
  const seed = resumed?.config.options.seed ?? spec.seed ?? 0;
  let train = split.train;
  if (imbalanceSpec) {
    train = imbalance(train, imbalanceSpec, seed);
  }
  const epochs = spec.epochs ?? DEFAULT_EPOCHS;
  if (!Number.isSafeInteger(epochs) || epochs < 1) {
    throw new Error(`epochs: expected an integer >= 1, got ${epochs}`);
  }
  // Image folders leave unreadable files out; the count goes into the checkpoint and report.
  const skipped = [...(split.train.skipped ?? []), ...(split.test.skipped ?? [])];
  const data = {
    dataset: datasetName,
    imbalance: imbalanceSpec ?? null,
    trainCounts: classCounts(train),
    testCounts: classCounts(split.test),
    skippedFiles: skipped.length,
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
  const trainer = resumed
    ? await Trainer.load(
        resumed.opened,
        // how and where it runs may change on resume; what it computes may not
        {
          threads: spec.threads,
          device: spec.device,
          distributed: spec.distributed,
          cudaGraph: spec.cudaGraph,
        },
        hooks.onWarning,
      )
    : await Trainer.create({
        ...spec,
        seed,
        classNames: train.classNames,
        scheduleEpochs: scheduleSpan(spec),
      });
  try {
    if (spec.initFrom !== undefined) await initFrom(trainer, spec, hooks);
    // The batch sizes may change on resume (to continue after running out of memory).
    if (resumed) {
      trainer.setBatchSizes({ batchSize: spec.batchSize, evalBatchSize: spec.evalBatchSize });
    }
    await trainer.setData({ train, test: split.test });
    const remaining = Math.max(0, epochs - trainer.epochsDone);
    try {
      for await (const r of trainer.epochs(remaining, { ...hooks, evalEvery: spec.evalEvery })) {
        if (writes) await trainer.save(out, data);
        hooks.onEpoch?.(r);
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
    const result: RunResult = {
      checkpoint: out,
      history: trainer.history,
      eval: (remaining > 0 ? last?.eval : undefined) ?? (await trainer.evaluate()),
      trainCounts: data.trainCounts,
      trainSeconds: trainer.history.reduce((s, r) => s + r.seconds, 0),
    };
    if (writes) {
      const name = `${trainer.options.model}-${trainer.options.loss}`;
      await writeReport(out, {
        title: `${name} on ${datasetName}${imbalanceSpec ? ` (imbalance ${imbalanceSpec})` : ''}`,
        kind: 'run',
        createdAt: new Date().toISOString(),
        dataset: datasetName,
        classNames: train.classNames,
        runs: [{ name, ...result, options: { ...trainer.options }, seed }],
        ...(skipped.length > 0 && {
          skipped,
          findings: [
            `${skipped.length} file(s) of the dataset were left out as unreadable (listed in report.json).`,
          ],
        }),
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

/** The checkpoint a `resume` continues, and the data it was trained on. */
async function resumePoint(out: string | undefined) {
  if (!out) throw new Error('--resume needs --out DIR: the run to continue');
  const opened = await openCheckpoint(out).catch((err: Error) => {
    throw new Error(`--resume: ${err.message}`);
  });
  const { config } = opened;
  const dataset = config.data?.dataset;
  const imbalanceSpec = config.data?.imbalance;
  if (typeof dataset !== 'string') {
    throw new Error(`--resume: ${out} does not record its dataset (not written by a training run)`);
  }
  return {
    opened,
    config,
    dataset,
    imbalance: typeof imbalanceSpec === 'string' ? imbalanceSpec : undefined,
  };
}
