// ResNet-32, the second model: an epoch of CIFAR-size colour images (random pixels: the
// arithmetic does not care) against the same PyTorch loop (bench/pytorch_resnet32.py, its best
// configuration), and the cost of on-device augmentation: the same epoch with
// `--augment crop:4,flip`. Interleaved rounds: torchfocal plain, torchfocal augmented, PyTorch;
// training time only. Beside them, what torchvision's augmentation recipe costs per epoch on the
// CPU: the same crop and flip, per PIL image, as a DataLoader applies them
// (bench/pytorch_augment.py).
import path from 'node:path';
import { native } from '../ts/native';
import { PACKAGE_ROOT } from '../ts/package';
import { Trainer } from '../ts/train/trainer';
import type { Dataset } from '../ts/data/dataset';
import { MNIST_CLASSES } from '../ts/data/mnist';
import {
  exec,
  lastLine,
  median,
  PYTORCH_BEST_ENV,
  pythonUnavailable,
  round,
  untunedEnv,
} from './common';
import type { TimedRun } from './lenet';
import { PythonEpochs } from './pytorch-baseline';

export interface Resnet32Figures {
  /** random 32×32 RGB training images per epoch (a tenth of CIFAR-10's 50,000 by default) */
  images: number;
  batchSize: number;
  threads: number;
  warmupEpochs: number;
  timedEpochs: number;
  /** torchfocal's epochs without augmentation: seconds in round order, and their median */
  torchfocal: { seconds: number; epochSeconds: number[] };
  /** the same loop in PyTorch: PYTORCH_BEST_ENV (bench/common.ts), torchfocal's threads, its faster layout */
  pytorch?: TimedRun;
}

export interface AugmentFigures {
  images: number;
  /** seconds of a training epoch, median over the timed epochs */
  plainEpochSeconds: number;
  augmentedEpochSeconds: number;
  /** seconds torchvision's per-image RandomCrop + flip + ToTensor take over as many images */
  torchvisionAugmentSeconds?: number;
  torchvisionToTensorSeconds?: number;
}

const TRAIN_SCRIPT = path.join(PACKAGE_ROOT, 'bench', 'pytorch_resnet32.py');
const AUGMENT_SCRIPT = path.join(PACKAGE_ROOT, 'bench', 'pytorch_augment.py');
const BATCH_SIZE = 128;

function randomColourSet(count: number): Dataset {
  let state = 12345;
  const images = new Uint8Array(count * 3 * 32 * 32).map(
    () => (state = (Math.imul(state, 1103515245) + 12345) >>> 0) >>> 24,
  );
  const labels = Int32Array.from({ length: count }, (_, i) => i % 10);
  const classNames = [...MNIST_CLASSES]; // ten classes; the pixels are random
  return {
    images,
    labels,
    count,
    channels: 3,
    height: 32,
    width: 32,
    classNames,
    source: 'random',
  };
}

export async function runResnet32Bench(options: {
  quick?: boolean;
  threads?: number;
  seed?: number;
  /** python with torch; undefined: no PyTorch baselines */
  python?: string;
  log?: (line: string) => void;
}): Promise<{
  figures: Resnet32Figures;
  augment: AugmentFigures;
  ratios: Record<string, number>;
  notes: string[];
}> {
  const log = options.log ?? (() => {});
  const count = options.quick ? 2000 : 5000;
  const repeats = options.quick ? 1 : 5;
  const warmup = 1;
  const seed = options.seed ?? 0;
  const train = randomColourSet(count);
  const notes: string[] = [];
  log(`ResNet-32 on ${count} random 32x32 RGB images: plain, crop:4,flip, PyTorch, interleaved`);
  const trainers = await Promise.all(
    ['none', 'crop:4,flip'].map((augment) =>
      Trainer.create({
        model: 'resnet32',
        classNames: train.classNames,
        channels: 3,
        augment,
        batchSize: BATCH_SIZE,
        optimizer: 'sgd',
        lr: 0.1,
        momentum: 0.9,
        threads: options.threads ?? 0,
        seed,
        device: 'cpu',
      }),
    ),
  );
  const threads = native().runtimeInfo().threads;
  let pytorch: PythonEpochs | undefined;
  let pytorchRun: TimedRun | undefined;
  const seconds: number[][] = [[], []];
  try {
    const python = options.python;
    const missing = python && (await pythonUnavailable(python, TRAIN_SCRIPT, 'import torch'));
    if (python && !missing) {
      log(
        `PyTorch ResNet-32: OPENBLAS_NUM_THREADS=1, the addon's malloc settings, ${threads} threads, the faster layout`,
      );
      pytorch = await PythonEpochs.start(
        { python, script: TRAIN_SCRIPT, seed, warmup, log },
        'PyTorch ResNet-32',
        ['--images', String(count), '--threads', String(threads)],
        PYTORCH_BEST_ENV,
      );
    } else {
      notes.push(`ResNet-32: no PyTorch baseline: ${missing || 'no python given'}`);
    }
    for (const t of trainers) await t.setData({ train });
    for (let w = 0; w < warmup; w++) for (const t of trainers) await t.fit(1);
    for (let r = 0; r < repeats; r++) {
      for (const [i, t] of trainers.entries()) seconds[i].push((await t.fit(1))[0].seconds);
      const py = pytorch ? ` | PyTorch ${(await pytorch.epoch()).toFixed(2)} s` : '';
      log(
        `ResNet-32 round ${r + 1}: plain ${seconds[0][r].toFixed(2)} s, crop:4,flip ${seconds[1][r].toFixed(2)} s${py}`,
      );
    }
    pytorchRun = await pytorch?.finish();
  } finally {
    pytorch?.kill(); // a no-op once it finished
    for (const t of trainers) t.dispose();
  }
  const [plain, augmented] = seconds.map(median);
  const figures: Resnet32Figures = {
    images: count,
    batchSize: BATCH_SIZE,
    threads,
    warmupEpochs: warmup,
    timedEpochs: repeats,
    torchfocal: { seconds: round(plain, 3), epochSeconds: seconds[0].map((s) => round(s, 3)) },
    ...(pytorchRun && { pytorch: pytorchRun }),
  };
  const augment: AugmentFigures = {
    images: count,
    plainEpochSeconds: round(plain, 3),
    augmentedEpochSeconds: round(augmented, 3),
  };
  notes.push(
    `augment: crop:4,flip makes a ResNet-32 epoch of ${count} images ${round(augmented, 2)} s ` +
      `against ${round(plain, 2)} s (x${round(augmented / plain, 3)})`,
  );
  const python = options.python;
  const missing =
    python && (await pythonUnavailable(python, AUGMENT_SCRIPT, 'import torch, torchvision, PIL'));
  if (!python || missing) {
    notes.push(`augment: no torchvision baseline: ${missing || 'no python given'}`);
  } else {
    const r = await exec(python, [AUGMENT_SCRIPT, String(count), String(repeats)], untunedEnv());
    if (r.code !== 0) throw new Error(`augment bench: ${lastLine(r.stderr)}`);
    const tv = JSON.parse(lastLine(r.stdout)) as { augmented: number; plain: number };
    augment.torchvisionAugmentSeconds = round(tv.augmented, 3);
    augment.torchvisionToTensorSeconds = round(tv.plain, 3);
    notes.push(
      `augment: torchvision's RandomCrop(32, 4) + flip + ToTensor take ${round(tv.augmented, 2)} s ` +
        `per ${count} PIL images on one core (ToTensor alone ${round(tv.plain, 2)} s); ` +
        `torchfocal's augmentation adds ${round(augmented - plain, 2)} s to its epoch`,
    );
  }
  return { figures, augment, ratios: resnet32Ratios(figures, augment), notes };
}

/** Time ratios: torchfocal's epoch against PyTorch's, and augmented against plain. */
export function resnet32Ratios(f: Resnet32Figures, a: AugmentFigures): Record<string, number> {
  const ratios: Record<string, number> = {
    augmentEpochRatio: round(a.augmentedEpochSeconds / a.plainEpochSeconds, 3),
  };
  if (f.pytorch) ratios.resnet32VsPytorch = round(f.torchfocal.seconds / f.pytorch.seconds, 3);
  return ratios;
}
