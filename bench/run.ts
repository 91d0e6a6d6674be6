// `torchfocal bench` / `npm run bench`: every benchmark in one run, one report.
import os from 'node:os';
import { pythonPath, round } from './common';
import { runDistributedBench } from './distributed';
import { runFocalOpBench } from './focal-op';
import { runImageFolderBench } from './image-folder';
import { runLenetBench, type LenetBenchOptions } from './lenet';
import type { BenchReport } from './report';
import { runResnet32Bench } from './resnet32';

/** a machine busier than this (fraction of all cores) outside the benchmark gets a note */
const BUSY_THRESHOLD = 0.15;

export async function runBench(options: LenetBenchOptions = {}): Promise<BenchReport> {
  const cpus = os.availableParallelism();
  const busyBefore = await busyFraction();
  const lenet = await runLenetBench(options);
  const threads = lenet.figures.torchfocal.threads;
  const report: BenchReport = {
    machine: { cpus, busyBefore: round(busyBefore, 2), busyAfter: 0 },
    lenet: lenet.figures,
    inference: lenet.inference,
    ratios: lenet.ratios,
    notes: lenet.notes,
  };
  const add = (part: { ratios: Record<string, number>; notes: string[] }) => {
    Object.assign(report.ratios, part.ratios);
    report.notes.push(...part.notes);
  };
  const python = lenet.figures.pytorchBest ? pythonPath(options.python) : undefined;
  const focal = await runFocalOpBench({
    threads,
    repeats: options.quick ? 3 : 7,
    device: options.device,
    python,
    log: options.log,
  });
  report.focalOp = focal.figures;
  add(focal);
  if ((options.device ?? 'cpu') === 'cpu') {
    const dist = await runDistributedBench({ quick: options.quick, log: options.log });
    report.distributed = dist.figures;
    add(dist);
    const resnet = await runResnet32Bench({
      quick: options.quick,
      threads,
      seed: options.seed,
      python,
      log: options.log,
    });
    report.resnet32 = resnet.figures;
    report.augment = resnet.augment;
    add(resnet);
    const folder = await runImageFolderBench({ quick: options.quick, log: options.log });
    report.imageFolder = folder.figures;
    add(folder);
  }
  const busyAfter = await busyFraction();
  report.machine.busyAfter = round(busyAfter, 2);
  for (const [when, busy] of [
    ['before', busyBefore],
    ['after', busyAfter],
  ] as const) {
    if (busy > BUSY_THRESHOLD) {
      report.notes.push(
        `other work kept ${Math.round(busy * 100)}% of the ${cpus} cores busy ${when} the run: the timings are not trustworthy`,
      );
    }
  }
  return report;
}

/** Fraction of all cores busy during `ms` milliseconds (this process idles meanwhile). */
async function busyFraction(ms = 1000): Promise<number> {
  const total = () =>
    os.cpus().reduce(
      (acc, c) => {
        const t = c.times;
        acc.busy += t.user + t.nice + t.sys + t.irq;
        acc.all += t.user + t.nice + t.sys + t.irq + t.idle;
        return acc;
      },
      { busy: 0, all: 0 },
    );
  const a = total();
  await new Promise((resolve) => setTimeout(resolve, ms));
  const b = total();
  return b.all > a.all ? (b.busy - a.busy) / (b.all - a.all) : 0;
}
