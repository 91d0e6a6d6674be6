// `torchfocal bench`: times torchfocal against PyTorch on this machine and prints the ratios.
import { Command } from 'commander';
import type { BenchReport, TimedRun } from '../bench/lenet';
import type { FocalOpFigures } from '../bench/focal-op';
import { runBench } from '../bench/run';
import { intAtLeast } from './parse';
import { printJson } from './output';

interface BenchFlags {
  json?: boolean;
  threads: number;
  repeats?: number;
  quick?: boolean;
  python?: string;
  device: string;
}

export function benchCommand(): Command {
  return new Command('bench')
    .description(
      'time LeNet epochs (torchfocal vs PyTorch tuned, default and the original PNG loop) and the focal op (vs cross-entropy and the original composed loss)',
    )
    .option('--json', 'print one JSON object of named figures on stdout')
    .option(
      '--threads <n>',
      'torchfocal threads, and PyTorch best-run threads (0 = all cores)',
      intAtLeast(0),
      0,
    )
    .option(
      '--repeats <n>',
      'timed epochs per configuration, interleaved, medians reported (default 5, quick 1)',
      intAtLeast(1),
    )
    .option('--device <name>', 'cpu or cuda: where torchfocal and the PyTorch loops train', 'cpu')
    .option('--quick', 'one timed epoch each, skip the original PNG-decoding loop')
    .option(
      '--python <path>',
      'python with torch for the baselines (default $TORCHFOCAL_PYTHON or /usr/bin/python3)',
    )
    .action(async (flags: BenchFlags) => {
      const report = await runBench({
        threads: flags.threads,
        repeats: flags.repeats,
        quick: flags.quick,
        python: flags.python,
        device: flags.device,
        log: (line) => process.stderr.write(line + '\n'),
      });
      printBenchReport(report, flags.json ?? false);
    });
}

/** Prints the report on stdout: one JSON object, or the readable table. */
export function printBenchReport(report: BenchReport, json: boolean): void {
  if (json) printJson(report);
  else process.stdout.write(formatBenchReport(report).join('\n') + '\n');
}

const RATIO_LABELS: Record<string, string> = {
  torchfocalVsPytorchBest: 'torchfocal / PyTorch best',
  torchfocalVsPytorchDefault: 'torchfocal / PyTorch default',
  torchfocalVsOriginal: 'torchfocal / original PNG loop',
  evalVsPytorchBest: 'evaluation time per image / PyTorch best',
  predictVsPytorchBest: 'one-image predict / PyTorch best',
  cudaGraphVsUncaptured: 'CUDA graph / uncaptured step',
};

/** The readable report: a headline, one line per run, every ratio, the notes. */
export function formatBenchReport(report: BenchReport): string[] {
  const { lenet, ratios } = report;
  const head = [`torchfocal LeNet epoch ${secs(lenet.torchfocal.seconds)}`];
  const versus = (label: string, run: TimedRun | undefined, ratio: string) => {
    if (run)
      head.push(
        `${label} ${secs(run.seconds)} (${ratios[ratio] === undefined ? '-' : `ratio ${ratios[ratio].toFixed(2)}`})`,
      );
  };
  versus('PyTorch best', lenet.pytorchBest, 'torchfocalVsPytorchBest');
  versus('PyTorch default', lenet.pytorchDefault, 'torchfocalVsPytorchDefault');
  versus('original', lenet.original, 'torchfocalVsOriginal');

  const lines = [head.join(' | '), ''];
  const rows: [string, string][] = [];
  const tf = lenet.torchfocal;
  rows.push(['torchfocal', `${runSummary(tf)}; wall ${secs(tf.wallSeconds)} seen from JS`]);
  if (lenet.torchfocalUncaptured) {
    rows.push(['torchfocal uncaptured', runSummary(lenet.torchfocalUncaptured)]);
  }
  for (const r of lenet.timeTo99?.recipes ?? []) {
    rows.push([
      `to 99%: ${r.recipe}`,
      r.seconds === null
        ? `not reached in ${r.epochs} epochs (best ${r.accuracy})`
        : `${secs(r.seconds)} of training, ${r.epochs} epochs (acc ${r.accuracy})`,
    ]);
  }
  if (lenet.pytorchBest) rows.push(['PyTorch best', runSummary(lenet.pytorchBest)]);
  if (lenet.pytorchDefault) rows.push(['PyTorch default', runSummary(lenet.pytorchDefault)]);
  if (lenet.original) {
    const o = lenet.original;
    rows.push([
      'original',
      `${runSummary(o)}; ${o.decoder} decode of ${o.images} images per pass, scaled to ${o.epochImages}`,
    ]);
  }
  const width = Math.max(...rows.map(([k]) => k.length));
  for (const [k, v] of rows) lines.push(`${k.padEnd(width)}  ${v}`);
  lines.push(
    `LeNet, batch ${lenet.batchSize}, ${lenet.trainImages} images: median of ${lenet.timedEpochs} timed epoch(s) after ${lenet.warmupEpochs} warm-up`,
  );

  if (report.focalOp) lines.push('', ...formatFocalOp(report.focalOp));

  const names = Object.keys(ratios);
  if (names.length > 0) {
    lines.push('', 'ratios (time; < 1 means torchfocal is faster):');
    const w = Math.max(...names.map((n) => (RATIO_LABELS[n] ?? n).length));
    for (const n of names)
      lines.push(`  ${(RATIO_LABELS[n] ?? n).padEnd(w)}  ${ratios[n].toFixed(3)}`);
  }
  const m = report.machine;
  lines.push(
    '',
    `machine: ${m.cpus} cores; other work kept ${pct(m.busyBefore)} of them busy before the run, ${pct(m.busyAfter)} after`,
  );
  for (const note of report.notes) lines.push(`note: ${note}`);
  return lines;
}

/** One row per size: times per forward + backward and the fused op's ratios. */
function formatFocalOp(f: FocalOpFigures): string[] {
  const head = ['N×C', 'fused', 'LibTorch CE', 'composed', 'PyTorch CE', 'PyTorch original'];
  const rows = f.sizes.map((t) => [
    `${t.rows}×${t.classes}`,
    us(t.fused),
    `${us(t.crossEntropy)} (${(t.fused / t.crossEntropy).toFixed(2)}×)`,
    `${us(t.composed)} (${(t.composed / t.fused).toFixed(1)}× slower)`,
    t.pytorchCrossEntropy === undefined ? '-' : us(t.pytorchCrossEntropy),
    t.pytorchOriginal === undefined
      ? '-'
      : `${us(t.pytorchOriginal)} (${(t.pytorchOriginal / t.fused).toFixed(1)}× slower)`,
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) =>
    r
      .map((v, i) => v.padEnd(widths[i]))
      .join('  ')
      .trimEnd();
  return [
    `focal loss forward + backward, float32, ${f.device}, ${f.threads} thread${f.threads === 1 ? '' : 's'}, median of ${f.repeats} rounds:`,
    line(head),
    ...rows.map(line),
  ];
}

function us(seconds: number): string {
  return seconds >= 1e-3 ? `${(seconds * 1e3).toFixed(2)} ms` : `${(seconds * 1e6).toFixed(1)} µs`;
}

function runSummary(r: TimedRun): string {
  const epochs = r.epochSeconds.map((s) => s.toFixed(2)).join(', ');
  const blas = r.blas ? r.blas.split(', ').map(basename).join(' + ') : 'BLAS unknown';
  const cpu = `cpu ${r.userSeconds.toFixed(1)} user + ${r.systemSeconds.toFixed(1)} sys`;
  const inference =
    r.evalImagesPerSecond === undefined
      ? ''
      : `; eval ${r.evalImagesPerSecond} images/s, predict ${us(r.predictSeconds ?? 0)}`;
  return `${secs(r.seconds)} (epochs ${epochs}; ${cpu}${inference}); torch ${r.torch}, ${r.threads} thread${r.threads === 1 ? '' : 's'}, ${blas}, OPENBLAS_NUM_THREADS=${r.openblasThreads ?? 'unset'}`;
}

function basename(file: string): string {
  const i = file.lastIndexOf('/');
  return i < 0 ? file : file.slice(i + 1);
}

function pct(x: number): string {
  return `${Math.round(x * 100)}%`;
}

function secs(s: number): string {
  return `${s < 10 ? s.toFixed(2) : s.toFixed(1)} s`;
}
