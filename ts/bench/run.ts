// `torchfocal bench` / `npm run bench`: every benchmark in one run, one report.
import { runAugmentBench } from './augment';
import { pythonPath } from './common';
import { runDistributedBench } from './distributed';
import { runFocalOpBench } from './focal-op';
import { runLenetBench, type BenchReport, type LenetBenchOptions } from './lenet';

export async function runBench(options: LenetBenchOptions = {}): Promise<BenchReport> {
  const report = await runLenetBench(options);
  const focal = await runFocalOpBench({
    threads: report.lenet.torchfocal.threads,
    repeats: options.quick ? 3 : 7,
    device: options.device,
    python: report.lenet.pytorchBest ? pythonPath(options.python) : undefined,
    log: options.log,
  });
  report.focalOp = focal.figures;
  Object.assign(report.ratios, focal.ratios);
  report.notes.push(...focal.notes);
  if ((options.device ?? 'cpu') === 'cpu') {
    const dist = await runDistributedBench({ quick: options.quick, log: options.log });
    report.distributed = dist.figures;
    Object.assign(report.ratios, dist.ratios);
    report.notes.push(...dist.notes);
    const augment = await runAugmentBench({
      quick: options.quick,
      threads: report.lenet.torchfocal.threads,
      python: pythonPath(options.python),
      log: options.log,
    });
    report.augment = augment.figures;
    Object.assign(report.ratios, augment.ratios);
    report.notes.push(...augment.notes);
  }
  return report;
}
