// One training run from a plain description: data, imbalance, trainer, epochs, checkpoints.
import path from 'node:path';
import { loadDataset, imbalance, classCounts } from '../data/index';
import type { DataSplit } from '../data/dataset';
import type { Evaluation } from './evaluation';
import type { TrainerOptions } from './options';
import { Trainer, type EpochResult, type Progress } from './trainer';
import { writeReport } from '../report/index';

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
}

export interface RunHooks {
  /** a dataset already loaded for `spec.dataset` (experiments share one) */
  data?: DataSplit;
  onEpoch?: (result: EpochResult) => void;
  onProgress?: (progress: Progress) => void;
  signal?: AbortSignal;
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

export async function runTraining(spec: RunSpec, hooks: RunHooks = {}): Promise<RunResult> {
  const datasetName = spec.dataset ?? 'mnist';
  const split = hooks.data ?? (await loadDataset(datasetName));
  const seed = spec.seed ?? 0;
  let train = split.train;
  if (spec.imbalance) {
    train = imbalance(train, spec.imbalance, seed);
  }
  const epochs = spec.epochs ?? 5;
  if (!Number.isSafeInteger(epochs) || epochs < 1) {
    throw new Error(`epochs: expected an integer >= 1, got ${epochs}`);
  }
  const trainer = await Trainer.create({ ...spec, seed, classNames: train.classNames });
  try {
    await trainer.setData({ train, test: split.test });
    const out = spec.out ? path.resolve(spec.out) : undefined;
    const data = {
      dataset: datasetName,
      imbalance: spec.imbalance ?? null,
      trainCounts: classCounts(train),
      testCounts: classCounts(split.test),
    };
    for await (const r of trainer.epochs(epochs, { ...hooks, evalEvery: spec.evalEvery })) {
      if (out) await trainer.save(out, data);
      hooks.onEpoch?.(r);
    }
    const last = trainer.history[trainer.history.length - 1];
    const result: RunResult = {
      checkpoint: out,
      history: trainer.history,
      eval: last.eval ?? (await trainer.evaluate()),
      trainCounts: data.trainCounts,
      trainSeconds: trainer.history.reduce((s, r) => s + r.seconds, 0),
    };
    if (out) {
      const name = `${trainer.options.model}-${trainer.options.loss}`;
      await writeReport(out, {
        title: `${name} on ${datasetName}${spec.imbalance ? ` (imbalance ${spec.imbalance})` : ''}`,
        kind: 'run',
        createdAt: new Date().toISOString(),
        dataset: datasetName,
        classNames: train.classNames,
        runs: [{ name, ...result, options: { ...trainer.options }, seed }],
      });
    }
    return result;
  } finally {
    trainer.dispose();
  }
}
