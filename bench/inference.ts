// Evaluation and one-image prediction: torchfocal's trained LeNet against the PyTorch best run's,
// measured in interleaved rounds (torchfocal's block, then PyTorch's, for each figure), best of
// the rounds. Evaluation: the 10,000 test images at the trainer's evaluation batch, PyTorch at
// the same batch and threads under inference_mode in its faster layout. Prediction: 1,000 calls
// of one image, from memory (uint8 pixels -> probabilities) and from a PNG file (decode with the
// decoder `torchfocal predict` uses, then predict; PyTorch: PIL, ToTensor, forward, softmax).
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import type { Trainer } from '../ts/train/trainer';
import { subset, type Dataset } from '../ts/data/dataset';
import { decodeImage } from '../ts/data/imagefolder';
import { round } from './common';
import type { PythonEpochs } from './pytorch-baseline';

/** Seconds per call at the 50th and 99th percentiles of one block of calls. */
export interface Latency {
  p50: number;
  p99: number;
}

export interface InferenceSide {
  /** images/s of one evaluation pass, best of the rounds */
  evalImagesPerSecond: number;
  /** images/s of each round's pass */
  evalRounds: number[];
  /** the round with the lowest p50 (its p99 beside it) */
  predictMemory: Latency;
  predictFile: Latency;
}

export interface InferenceFigures {
  model: string;
  testImages: number;
  evalBatchSize: number;
  /** calls per prediction block */
  predictCalls: number;
  rounds: number;
  torchfocal: InferenceSide & {
    /** 60,000 / the median training epoch's seconds */
    trainImagesPerSecond: number;
  };
  /** the PyTorch best run's model, same threads */
  pytorch?: InferenceSide & {
    /** the layout of its best evaluation round, and each layout's best images/s */
    layout: string;
    layouts: Record<string, number>;
  };
}

export interface InferenceOptions {
  /** the training epoch's median seconds over `trainImages` images */
  trainSeconds: number;
  trainImages: number;
  /** the PyTorch best baseline, still serving requests (undefined: torchfocal alone) */
  pytorch?: PythonEpochs;
  rounds: number;
  predictCalls: number;
  log: (line: string) => void;
}

/** Times evaluation and prediction on `trainer` (trained) and on the PyTorch baseline. */
export async function runInferenceBench(
  trainer: Trainer,
  test: Dataset,
  o: InferenceOptions,
): Promise<InferenceFigures> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'torchfocal-bench-'));
  try {
    // The first test image as a PNG, written by sharp: both sides decode the same file.
    const one = subset(test, [0]);
    const png = path.join(dir, 'one.png');
    await sharp(one.images, { raw: { width: one.width, height: one.height, channels: 1 } })
      .png()
      .toFile(png);
    await trainer.setData({ test });
    const batch = trainer.options.evalBatchSize;
    const tf = {
      evaluate: async () => {
        const start = performance.now();
        await trainer.evaluate();
        return test.count / ((performance.now() - start) / 1000);
      },
      memory: () => latency(o.predictCalls, () => trainer.predict(one.images, one)),
      file: () =>
        latency(o.predictCalls, async () => {
          const d = await decodeImage(png, 1);
          return trainer.predict(d.pixels, { count: 1, height: d.height, width: d.width });
        }),
    };
    const py = o.pytorch;
    const pyEval = async () => (await py!.request(`eval ${batch}`)) as Record<string, number>;
    const pyLatency = async (req: string) => toLatency(await py!.request(req));

    // Warm-up: one pass and a few calls each, untimed.
    await tf.evaluate();
    await latency(20, () => trainer.predict(one.images, one));
    if (py) {
      await pyEval();
      await pyLatency('predict 20');
    }
    const rounds: {
      tf: { eval: number; memory: Latency; file: Latency };
      py?: { eval: Record<string, number>; memory: Latency; file: Latency };
    }[] = [];
    for (let r = 0; r < o.rounds; r++) {
      const tfEval = await tf.evaluate();
      const pyEvalRound = py && (await pyEval());
      const tfMemory = await tf.memory();
      const pyMemory = py && (await pyLatency(`predict ${o.predictCalls}`));
      const tfFile = await tf.file();
      const pyFile = py && (await pyLatency(`predict-file ${o.predictCalls} ${png}`));
      rounds.push({
        tf: { eval: tfEval, memory: tfMemory, file: tfFile },
        ...(pyEvalRound && { py: { eval: pyEvalRound, memory: pyMemory!, file: pyFile! } }),
      });
      o.log(
        `inference round ${r + 1}: evaluate ${Math.round(tfEval)} images/s` +
          (pyEvalRound ? ` (PyTorch ${Math.round(Math.max(...Object.values(pyEvalRound)))})` : '') +
          `, predict p50 ${ms(tfMemory.p50)}` +
          (pyMemory ? ` (PyTorch ${ms(pyMemory.p50)})` : '') +
          `, from a file ${ms(tfFile.p50)}` +
          (pyFile ? ` (PyTorch ${ms(pyFile.p50)})` : ''),
      );
    }
    const figures: InferenceFigures = {
      model: trainer.options.model,
      testImages: test.count,
      evalBatchSize: batch,
      predictCalls: o.predictCalls,
      rounds: o.rounds,
      torchfocal: {
        ...side(rounds.map((r) => r.tf)),
        trainImagesPerSecond: Math.round(o.trainImages / o.trainSeconds),
      },
    };
    const pyRounds = rounds.flatMap((r) => (r.py ? [r.py] : []));
    if (pyRounds.length > 0) {
      const layouts: Record<string, number> = {};
      for (const name of Object.keys(pyRounds[0].eval)) {
        layouts[name] = Math.round(Math.max(...pyRounds.map((r) => r.eval[name])));
      }
      const layout = Object.keys(layouts).reduce((a, b) => (layouts[b] > layouts[a] ? b : a));
      figures.pytorch = {
        ...side(pyRounds.map((r) => ({ ...r, eval: r.eval[layout] }))),
        layout,
        layouts,
      };
    }
    return figures;
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

/**
 * The inference ratios, all time ratios (< 1: torchfocal faster): time per evaluated image
 * against time per trained image (evalVsTraining) and against PyTorch's, predict p50 and p99
 * against PyTorch's, from memory and from a file.
 */
export function inferenceRatios(f: InferenceFigures): Record<string, number> {
  const tf = f.torchfocal;
  const ratios: Record<string, number> = {
    evalVsTraining: round(tf.trainImagesPerSecond / tf.evalImagesPerSecond, 3),
  };
  const py = f.pytorch;
  if (!py) return ratios;
  ratios.evalVsPytorch = round(py.evalImagesPerSecond / tf.evalImagesPerSecond, 3);
  ratios.predictVsPytorch = round(tf.predictMemory.p50 / py.predictMemory.p50, 3);
  ratios.predictP99VsPytorch = round(tf.predictMemory.p99 / py.predictMemory.p99, 3);
  ratios.predictFileVsPytorch = round(tf.predictFile.p50 / py.predictFile.p50, 3);
  ratios.predictFileP99VsPytorch = round(tf.predictFile.p99 / py.predictFile.p99, 3);
  return ratios;
}

/** The best of the rounds: the highest evaluation rate, each block with the lowest p50. */
function side(rounds: { eval: number; memory: Latency; file: Latency }[]): InferenceSide {
  const best = (ls: Latency[]) => ls.reduce((a, b) => (b.p50 < a.p50 ? b : a));
  const roundLatency = (l: Latency) => ({ p50: round(l.p50, 7), p99: round(l.p99, 7) });
  return {
    evalImagesPerSecond: Math.round(Math.max(...rounds.map((r) => r.eval))),
    evalRounds: rounds.map((r) => Math.round(r.eval)),
    predictMemory: roundLatency(best(rounds.map((r) => r.memory))),
    predictFile: roundLatency(best(rounds.map((r) => r.file))),
  };
}

/** p50 and p99 of `calls` sequential calls of `fn`, in seconds. */
async function latency(calls: number, fn: () => Promise<unknown>): Promise<Latency> {
  const times: number[] = [];
  for (let i = 0; i < calls; i++) {
    const start = performance.now();
    await fn();
    times.push((performance.now() - start) / 1000);
  }
  return { p50: percentile(times, 50), p99: percentile(times, 99) };
}

/** The p-th percentile, linear between order statistics (Python's method='inclusive'). */
export function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  const at = ((s.length - 1) * p) / 100;
  const lo = Math.floor(at);
  return lo + 1 < s.length ? s[lo] + (s[lo + 1] - s[lo]) * (at - lo) : s[lo];
}

function toLatency(answer: Record<string, unknown>): Latency {
  if (typeof answer.p50 !== 'number' || typeof answer.p99 !== 'number') {
    throw new Error(`PyTorch predict answered ${JSON.stringify(answer)}`);
  }
  return { p50: answer.p50, p99: answer.p99 };
}

function ms(seconds: number): string {
  return `${(seconds * 1e3).toFixed(3)} ms`;
}
