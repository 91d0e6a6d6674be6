// Data-parallel throughput: `train --nproc 2` (one thread per rank) against one process with one
// thread, both training LeNet on MNIST through the CLI, timed by their own epoch lines (training
// time, evaluation excluded). The first epoch is warm-up.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PACKAGE_ROOT } from '../ts/package';
import { exec, lastLine, median, round } from './common';

export interface DistributedFigures {
  nproc: number;
  /** images per second, median over the timed epochs */
  oneProcessOneThread: number;
  ranks: number;
  epochs: number;
}

const CLI = path.join(PACKAGE_ROOT, 'dist', 'ts', 'cli', 'main.js');
const MNIST_TRAIN = 60000;

async function imagesPerSecond(extra: string[], epochs: number, out: string): Promise<number> {
  const args = [CLI, 'train', '--dataset', 'mnist', '--epochs', String(epochs), '--json'];
  const r = await exec(process.execPath, [...args, '--out', out, ...extra], process.env);
  fs.rmSync(out, { recursive: true, force: true }); // only the epoch lines are wanted
  if (r.code !== 0) throw new Error(`distributed bench: ${lastLine(r.stderr)}`);
  const seconds = r.stdout
    .split('\n')
    .filter((l) => l.includes('"event":"epoch"'))
    .map((l) => (JSON.parse(l) as { seconds: number }).seconds)
    .slice(1);
  return MNIST_TRAIN / median(seconds);
}

export async function runDistributedBench(options: {
  quick?: boolean;
  log?: (line: string) => void;
}): Promise<{ figures: DistributedFigures; ratios: Record<string, number>; notes: string[] }> {
  const nproc = Math.min(2, os.availableParallelism());
  const epochs = options.quick ? 2 : 4;
  const dir = path.join(os.tmpdir(), `torchfocal-bench-dist-${process.pid}`);
  options.log?.(`distributed: ${nproc} ranks x 1 thread against 1 process x 1 thread`);
  const one = await imagesPerSecond(['--threads', '1'], epochs, `${dir}-one`);
  const ranks = await imagesPerSecond(
    ['--nproc', String(nproc), '--threads', '1'],
    epochs,
    `${dir}-ranks`,
  );
  return {
    figures: {
      nproc,
      oneProcessOneThread: round(one, 0),
      ranks: round(ranks, 0),
      epochs: epochs - 1,
    },
    ratios: { distributedSpeedup: round(ranks / one, 2) },
    notes: [
      `distributed: --nproc ${nproc} (Gloo over loopback) trains ${round(ranks, 0)} images/s, ` +
        `one process with one thread ${round(one, 0)} (x${round(ranks / one, 2)})`,
    ],
  };
}
