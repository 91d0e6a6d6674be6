// The focal-op benchmark: the fused op against LibTorch's cross-entropy and the original
// experiment's composed focal loss (in LibTorch and in PyTorch), forward + backward, float32.
import path from 'node:path';
import { call, native } from '../ts/native';
import { PACKAGE_ROOT } from '../ts/package';
import { exec, lastLine, PYTORCH_BEST_ENV, pythonUnavailable, round, untunedEnv } from './common';

/** Median seconds per forward + backward at one size. */
export interface FocalOpSize {
  rows: number;
  classes: number;
  /** torchfocal's fused op (α 100 on class 6, γ 2, mean) */
  fused: number;
  /** LibTorch's cross-entropy, in the same process */
  crossEntropy: number;
  /** the original FocalLoss op for op (softmax, gather, + 1e-8, log, pow, mul, mean) in LibTorch */
  composed: number;
  /** the same two in PyTorch from Python: what the original experiment ran */
  pytorchCrossEntropy?: number;
  pytorchOriginal?: number;
}

export interface FocalOpFigures {
  device: string;
  threads: number;
  repeats: number;
  sizes: FocalOpSize[];
}

export interface FocalOpBenchOptions {
  /** 'cpu' (default) or 'cuda', for both sides */
  device?: string;
  /** intra-op threads for both sides (0: all cores) */
  threads?: number;
  /** timed rounds per op; the median is reported (default 7) */
  repeats?: number;
  /** [rows, classes] pairs (default the four of the issue: 128×10 … 4096×1000) */
  sizes?: [number, number][];
  /** python with torch for the PyTorch side; undefined skips it */
  python?: string;
  log?: (line: string) => void;
}

export const FOCAL_SIZES: [number, number][] = [
  [128, 10],
  [4096, 10],
  [65536, 10],
  [4096, 1000],
];

const SCRIPT = path.join(PACKAGE_ROOT, 'bench', 'pytorch_focal.py');

/** Runs the benchmark; returns the figures, the ratios by name and any notes. */
export async function runFocalOpBench(options: FocalOpBenchOptions = {}): Promise<{
  figures: FocalOpFigures;
  ratios: Record<string, number>;
  notes: string[];
}> {
  const log = options.log ?? (() => {});
  const sizes = options.sizes ?? FOCAL_SIZES;
  const repeats = options.repeats ?? 7;
  const notes: string[] = [];
  const timings: FocalOpSize[] = [];
  let threads = 0;
  for (const [rows, classes] of sizes) {
    const t = await call(() =>
      native().benchFocalOp({
        rows,
        classes,
        threads: options.threads ?? 0,
        repeats,
        device: options.device ?? 'cpu',
      }),
    );
    threads = t.threads;
    log(
      `focal op ${rows}x${classes}: fused ${us(t.fused)}, cross-entropy ${us(t.crossEntropy)}, composed ${us(t.composed)}`,
    );
    timings.push({
      rows,
      classes,
      fused: t.fused,
      crossEntropy: t.crossEntropy,
      composed: t.composed,
    });
  }

  if (options.python !== undefined) {
    const unavailable = await pythonUnavailable(options.python, SCRIPT, 'import torch');
    if (unavailable) {
      notes.push(`PyTorch focal baseline skipped: ${unavailable}`);
    } else {
      const args = [
        SCRIPT,
        '--threads',
        String(threads),
        '--repeats',
        String(repeats),
        '--sizes',
        sizes.map(([r, c]) => `${r}x${c}`).join(','),
        '--device',
        options.device ?? 'cpu',
      ];
      const { code, stdout, stderr } = await exec(options.python, args, {
        ...untunedEnv(),
        ...PYTORCH_BEST_ENV,
      });
      if (code !== 0) throw new Error(`pytorch_focal.py exited with ${code}: ${lastLine(stderr)}`);
      const out = JSON.parse(lastLine(stdout)) as {
        sizes: { rows: number; classes: number; crossEntropy: number; original: number }[];
      };
      for (const [i, py] of out.sizes.entries()) {
        timings[i].pytorchCrossEntropy = py.crossEntropy;
        timings[i].pytorchOriginal = py.original;
        log(
          `PyTorch ${py.rows}x${py.classes}: cross-entropy ${us(py.crossEntropy)}, original focal ${us(py.original)}`,
        );
      }
    }
  }

  // Time ratios, < 1 means the fused op is faster.
  const ratios: Record<string, number> = {};
  for (const t of timings) {
    const at = `${t.rows}x${t.classes}`;
    ratios[`focalVsCrossEntropy@${at}`] = round(t.fused / t.crossEntropy, 3);
    ratios[`focalVsComposed@${at}`] = round(t.fused / t.composed, 3);
    if (t.pytorchOriginal !== undefined) {
      ratios[`focalVsPytorchOriginal@${at}`] = round(t.fused / t.pytorchOriginal, 3);
    }
  }
  const figures: FocalOpFigures = {
    device: options.device ?? 'cpu',
    threads,
    repeats,
    sizes: timings,
  };
  return { figures, ratios, notes };
}

function us(seconds: number): string {
  return `${(seconds * 1e6).toFixed(1)} µs`;
}
