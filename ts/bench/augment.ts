// The cost of on-device augmentation: a ResNet-32 epoch on CIFAR-size colour images (random
// pixels: the arithmetic does not care) with and without `--augment crop:4,flip`, interleaved,
// training time only. Beside it, what torchvision's recipe costs per epoch on the CPU: the same
// crop and flip, per PIL image, as a DataLoader applies them (bench/pytorch_augment.py).
import path from 'node:path';
import { Trainer } from '../train/trainer';
import type { Dataset } from '../data/dataset';
import { MNIST_CLASSES } from '../data/mnist';
import { exec, lastLine, median, pythonUnavailable, round, threadFreeEnv } from './common';

export interface AugmentFigures {
  images: number;
  /** seconds of a training epoch, median over the timed epochs */
  plainEpochSeconds: number;
  augmentedEpochSeconds: number;
  /** seconds torchvision's per-image RandomCrop + flip + ToTensor take over as many images */
  torchvisionAugmentSeconds?: number;
  torchvisionToTensorSeconds?: number;
}

const SCRIPT = path.join(__dirname, '..', '..', '..', 'bench', 'pytorch_augment.py');

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

export async function runAugmentBench(options: {
  quick?: boolean;
  threads?: number;
  python?: string;
  log?: (line: string) => void;
}): Promise<{ figures: AugmentFigures; ratios: Record<string, number>; notes: string[] }> {
  const count = options.quick ? 2000 : 5000;
  const repeats = options.quick ? 1 : 5;
  const train = randomColourSet(count);
  options.log?.(`augment: ResNet-32 on ${count} 32x32 RGB images, crop:4,flip against none`);
  const trainers = await Promise.all(
    ['none', 'crop:4,flip'].map((augment) =>
      Trainer.create({
        model: 'resnet32',
        classNames: train.classNames,
        channels: 3,
        augment,
        optimizer: 'sgd',
        lr: 0.1,
        momentum: 0.9,
        threads: options.threads ?? 0,
        device: 'cpu',
      }),
    ),
  );
  const seconds: number[][] = [[], []];
  try {
    for (const t of trainers) await t.setData({ train });
    for (const t of trainers) await t.fit(1); // warm-up
    for (let r = 0; r < repeats; r++) {
      for (const [i, t] of trainers.entries()) seconds[i].push((await t.fit(1))[0].seconds);
    }
  } finally {
    for (const t of trainers) t.dispose();
  }
  const [plain, augmented] = seconds.map(median);
  const figures: AugmentFigures = {
    images: count,
    plainEpochSeconds: round(plain, 3),
    augmentedEpochSeconds: round(augmented, 3),
  };
  const notes = [
    `augment: crop:4,flip makes a ResNet-32 epoch of ${count} images ${round(augmented, 2)} s ` +
      `against ${round(plain, 2)} s (x${round(augmented / plain, 3)})`,
  ];
  const python = options.python ?? '/usr/bin/python3';
  const missing = await pythonUnavailable(python, SCRIPT, 'import torch, torchvision, PIL');
  if (missing) {
    notes.push(`augment: no torchvision baseline: ${missing}`);
  } else {
    const r = await exec(python, [SCRIPT, String(count), String(repeats)], threadFreeEnv());
    if (r.code !== 0) throw new Error(`augment bench: ${lastLine(r.stderr)}`);
    const tv = JSON.parse(lastLine(r.stdout)) as { augmented: number; plain: number };
    figures.torchvisionAugmentSeconds = round(tv.augmented, 3);
    figures.torchvisionToTensorSeconds = round(tv.plain, 3);
    notes.push(
      `augment: torchvision's RandomCrop(32, 4) + flip + ToTensor take ${round(tv.augmented, 2)} s ` +
        `per ${count} PIL images on one core (ToTensor alone ${round(tv.plain, 2)} s); ` +
        `torchfocal's augmentation adds ${round(augmented - plain, 2)} s to its epoch`,
    );
  }
  return { figures, ratios: { augmentEpochRatio: round(augmented / plain, 3) }, notes };
}
