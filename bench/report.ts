// What `torchfocal bench` reports, and the report as readable lines.
import type { DistributedFigures } from './distributed';
import type { FocalOpFigures } from './focal-op';
import type { ImageFolderFigures } from './image-folder';
import type { InferenceFigures, Latency } from './inference';
import type { LenetFigures, TimedRun } from './lenet';
import type { AugmentFigures, Resnet32Figures } from './resnet32';

/**
 * Each section holds the figures of one benchmark; `ratios` holds every cross-run ratio by name
 * (time ratios: < 1 means torchfocal is faster). New benchmarks add an optional section here and
 * their ratios to the same map.
 */
export interface BenchReport {
  machine: {
    cpus: number;
    /**
     * Fraction of all cores busy (0..1) during one second before and one second after the run,
     * while the benchmark itself was idle: other work on the machine skews every figure.
     */
    busyBefore: number;
    busyAfter: number;
  };
  lenet: LenetFigures;
  /** evaluation and one-image prediction of the trained LeNet (bench/inference.ts) */
  inference: InferenceFigures;
  /** the focal-op benchmark (bench/focal-op.ts), when it ran */
  focalOp?: FocalOpFigures;
  /** data-parallel throughput (bench/distributed.ts), on the CPU */
  distributed?: DistributedFigures;
  /** a ResNet-32 epoch against PyTorch's (bench/resnet32.ts), on the CPU */
  resnet32?: Resnet32Figures;
  /** on-device augmentation's cost on that epoch (bench/resnet32.ts), on the CPU */
  augment?: AugmentFigures;
  /** an image folder's load, cold and cached, and `eval` on it (bench/image-folder.ts), on the CPU */
  imageFolder?: ImageFolderFigures;
  ratios: Record<string, number>;
  notes: string[];
}

const RATIO_LABELS: Record<string, string> = {
  torchfocalVsPytorchBest: 'LeNet epoch / PyTorch best',
  torchfocalVsPytorchDefault: 'LeNet epoch / PyTorch default',
  torchfocalVsOriginal: 'LeNet epoch / original PNG loop',
  evalVsTraining: 'evaluation time per image / training time per image',
  evalVsPytorch: 'evaluation time per image / PyTorch',
  predictVsPytorch: 'one-image predict p50 / PyTorch',
  predictP99VsPytorch: 'one-image predict p99 / PyTorch',
  predictFileVsPytorch: 'predict from a PNG p50 / PyTorch',
  predictFileP99VsPytorch: 'predict from a PNG p99 / PyTorch',
  resnet32VsPytorch: 'ResNet-32 epoch / PyTorch best',
  augmentEpochRatio: 'ResNet-32 epoch crop:4,flip / plain',
  cudaGraphVsUncaptured: 'CUDA graph / uncaptured step',
  distributedSpeedup: '--nproc 2 images/s / one process (speed-up)',
  evalFolderVsIdx: 'eval on a PNG folder (cached) / on the IDX files',
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
  lines.push(...table(rows));
  lines.push(
    `LeNet, batch ${lenet.batchSize}, ${lenet.trainImages} images: median of ${lenet.timedEpochs} timed epoch(s) after ${lenet.warmupEpochs} warm-up`,
  );

  lines.push('', ...formatInference(report.inference));
  if (report.resnet32) lines.push('', ...formatResnet32(report.resnet32));
  if (report.focalOp) lines.push('', ...formatFocalOp(report.focalOp));
  if (report.imageFolder) lines.push('', ...formatImageFolder(report.imageFolder));

  const names = Object.keys(ratios);
  if (names.length > 0) {
    lines.push('', 'ratios (time; < 1 means torchfocal is faster, unless named a speed-up):');
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

/** The image folder's loads and the two `eval` commands. */
function formatImageFolder(f: ImageFolderFigures): string[] {
  return [
    `image folder, ${f.files} MNIST PNGs: load ${secs(f.decodeSeconds)} without the decoded cache, ${secs(f.coldCacheSeconds)} into an empty one, ${secs(f.cachedSeconds)} from it`,
    `eval of a LeNet checkpoint trained on it (whole command, median of ${f.evalRuns}): ${secs(f.evalFolderSeconds)} on the folder, ${secs(f.evalIdxSeconds)} on the IDX files`,
  ];
}

/** Evaluation rates and prediction latencies, torchfocal's row then PyTorch's. */
function formatInference(f: InferenceFigures): string[] {
  const lat = (l: Latency) => `${us(l.p50)} / ${us(l.p99)}`;
  const tf = f.torchfocal;
  const rows: [string, string][] = [
    [
      'torchfocal',
      `evaluate ${tf.evalImagesPerSecond} images/s (training ${tf.trainImagesPerSecond}); predict p50/p99 ${lat(tf.predictMemory)}, from a PNG ${lat(tf.predictFile)}`,
    ],
  ];
  if (f.pytorch) {
    const py = f.pytorch;
    const layouts = Object.entries(py.layouts)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ');
    rows.push([
      'PyTorch',
      `evaluate ${py.evalImagesPerSecond} images/s (${layouts}); predict p50/p99 ${lat(py.predictMemory)}, from a PNG ${lat(py.predictFile)}`,
    ]);
  }
  return [
    `${f.model} inference: ${f.testImages} test images in batches of ${f.evalBatchSize}; ${f.predictCalls} one-image calls per block; best of ${f.rounds} interleaved round(s):`,
    ...table(rows),
  ];
}

function formatResnet32(f: Resnet32Figures): string[] {
  const rows: [string, string][] = [
    [
      'torchfocal',
      `${secs(f.torchfocal.seconds)} (epochs ${f.torchfocal.epochSeconds.map((s) => s.toFixed(2)).join(', ')})`,
    ],
  ];
  if (f.pytorch) rows.push([`PyTorch ${f.pytorch.layout ?? ''}`.trim(), runSummary(f.pytorch)]);
  return [
    `ResNet-32 epoch: ${f.images} random 32x32 RGB images, batch ${f.batchSize}, SGD momentum 0.9, ${f.threads} thread(s); median of ${f.timedEpochs} after ${f.warmupEpochs} warm-up, interleaved:`,
    ...table(rows),
  ];
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

function table(rows: [string, string][]): string[] {
  const width = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`);
}

function us(seconds: number): string {
  return seconds >= 1e-3 ? `${(seconds * 1e3).toFixed(2)} ms` : `${(seconds * 1e6).toFixed(1)} µs`;
}

function runSummary(r: TimedRun): string {
  const epochs = r.epochSeconds.map((s) => s.toFixed(2)).join(', ');
  const blas = r.blas ? r.blas.split(', ').map(basename).join(' + ') : 'BLAS unknown';
  const cpu = `cpu ${r.userSeconds.toFixed(1)} user + ${r.systemSeconds.toFixed(1)} sys`;
  return `${secs(r.seconds)} (epochs ${epochs}; ${cpu}); torch ${r.torch}, ${r.threads} thread${r.threads === 1 ? '' : 's'}, ${blas}, OPENBLAS_NUM_THREADS=${r.openblasThreads ?? 'unset'}${r.malloc ? `, ${r.malloc}` : ''}`;
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
