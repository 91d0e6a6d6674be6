// Colour end to end: image folders decode to RGB as PIL does, the engine trains on N×C×H×W,
// normalisation is computed, recorded and applied again by eval and predict.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { loadImageFolder, Trainer, withChannels, type Dataset } from '../ts/index';
import { jsonLines, PYTHON, quickTrainArgs, runCli, tempDir } from './helpers/cli';
import { writePng } from './helpers/imagefolder';
import { smallIdxFolder, smallMnist } from './helpers/mnist';

const SIDE = 12;

// Three classes told apart by colour: mostly red, green or blue pixels, with noise; one grey
// image per class in training shows that a grey file in a colour set still decodes to RGB.
async function colourFolder(perClass: number): Promise<string> {
  const root = tempDir('torchfocal-colour-');
  let seed = 12345;
  const rand = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 8) / 2 ** 24;
  for (const split of ['training', 'testing']) {
    for (const [label, name] of ['red', 'green', 'blue'].entries()) {
      const dir = path.join(root, split, name);
      fs.mkdirSync(dir, { recursive: true });
      for (let i = 0; i < perClass; i++) {
        const file = path.join(dir, `${i}.png`);
        if (split === 'training' && i === 0) {
          const grey = Uint8Array.from({ length: SIDE * SIDE }, () => Math.floor(rand() * 256));
          await sharp(Buffer.from(grey), { raw: { width: SIDE, height: SIDE, channels: 1 } })
            .toColourspace('b-w')
            .png()
            .toFile(file);
          continue;
        }
        const rgb = new Uint8Array(SIDE * SIDE * 3);
        for (let p = 0; p < SIDE * SIDE; p++) {
          for (let c = 0; c < 3; c++) {
            rgb[3 * p + c] = Math.floor(rand() * (c === label ? 255 : 120));
          }
        }
        await sharp(Buffer.from(rgb), { raw: { width: SIDE, height: SIDE, channels: 3 } })
          .png()
          .toFile(file);
      }
    }
  }
  return root;
}

// PIL's pixels of a file as planes: convert('RGB') (or 'L'), then channel by channel.
function pilPlanes(file: string, mode: 'RGB' | 'L'): Uint8Array {
  const script =
    'import sys; import numpy as np; from PIL import Image; ' +
    'a = np.asarray(Image.open(sys.argv[1]).convert(sys.argv[2])); ' +
    'sys.stdout.buffer.write((a.transpose(2, 0, 1) if a.ndim == 3 else a).tobytes())';
  return new Uint8Array(execFileSync(PYTHON, ['-c', script, file, mode]));
}

// The float64 mean and population std of each channel of a dataset, scaled to [0, 1].
function channelStatistics(ds: Dataset): { mean: number[]; std: number[] } {
  const plane = ds.height * ds.width;
  const mean: number[] = [];
  const std: number[] = [];
  for (let c = 0; c < ds.channels; c++) {
    let sum = 0;
    let squares = 0;
    for (let i = 0; i < ds.count; i++) {
      const base = (i * ds.channels + c) * plane;
      for (let k = 0; k < plane; k++) {
        const v = ds.images[base + k] / 255;
        sum += v;
        squares += v * v;
      }
    }
    const n = ds.count * plane;
    mean.push(sum / n);
    std.push(Math.sqrt(squares / n - (sum / n) ** 2));
  }
  return { mean, std };
}

test('a colour folder decodes to RGB planes equal to PIL, grey files included; --channels 1 to PIL luma', async (t) => {
  const root = await colourFolder(4);
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  const { train, test: testSet } = await loadImageFolder(root);
  t.is(train.channels, 3);
  t.is(testSet.channels, 3, 'the test split follows the training split');
  t.is(train.images.length, train.count * 3 * SIDE * SIDE);
  const files = ['blue/0.png', 'blue/1.png', 'green/3.png', 'red/2.png']; // blue/0: a grey file
  // classes sorted by name (blue, green, red), 4 files each, 0.png to 3.png
  const index = (f: string) =>
    ['blue', 'green', 'red'].indexOf(f.split('/')[0]) * 4 + Number(f[f.length - 5]);
  const bytes = 3 * SIDE * SIDE;
  for (const f of files) {
    const i = index(f);
    const ours = train.images.subarray(i * bytes, (i + 1) * bytes);
    t.deepEqual([...ours], [...pilPlanes(path.join(root, 'training', f), 'RGB')], f);
  }
  const grey = await loadImageFolder(root, { channels: 1 });
  t.is(grey.train.channels, 1);
  const i = index('green/3.png');
  t.deepEqual(
    [...grey.train.images.subarray(i * SIDE * SIDE, (i + 1) * SIDE * SIDE)],
    [...pilPlanes(path.join(root, 'training', 'green/3.png'), 'L')],
  );
});

test('grey data stays one channel; --channels 3 repeats it, and luma of the repeat is the original', async (t) => {
  const { train } = await smallMnist(50, 10);
  t.is(train.channels, 1);
  const rgb = withChannels(train, 3);
  t.is(rgb.channels, 3);
  t.deepEqual([...rgb.images.subarray(784, 2 * 784)], [...train.images.subarray(0, 784)]);
  t.deepEqual([...rgb.images.subarray(2 * 784, 3 * 784)], [...train.images.subarray(0, 784)]);
  t.deepEqual(withChannels(rgb, 1).images, train.images);
  t.is(withChannels(train, 1), train);
});

test('train --normalize dataset on colour: the figures are the training set float64 statistics, and eval and predict apply them', async (t) => {
  const root = await colourFolder(20);
  const out = tempDir('torchfocal-colour-run-');
  t.teardown(() => {
    fs.rmSync(root, { recursive: true, force: true });
    fs.rmSync(out, { recursive: true, force: true });
  });
  // resnet32's batch norm learns colour in a few steps (LeNet's sigmoids take dozens of epochs)
  const args = [
    '--model',
    'resnet32',
    '--width-divisor',
    '8',
    '--epochs',
    '3',
    '--batch-size',
    '4',
  ];
  const run = await runCli([
    'train',
    '--dataset',
    root,
    ...args,
    '--normalize',
    'dataset',
    '--input-size',
    '16',
    '--threads',
    '1',
    '--out',
    out,
    '--overwrite',
    '--json',
  ]);
  t.is(run.code, 0, run.stderr);
  const done = jsonLines(run.stdout).find((e) => e.event === 'done')!;
  const config = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8'));
  t.is(config.channels, 3);
  t.is(config.inputSize, 16);
  t.is(config.options.normalize, 'dataset');
  const want = channelStatistics((await loadImageFolder(root)).train);
  for (let c = 0; c < 3; c++) {
    t.true(Math.abs(config.normalisation.mean[c] - want.mean[c]) < 1e-9, `mean ${c}`);
    t.true(Math.abs(config.normalisation.std[c] - want.std[c]) < 1e-9, `std ${c}`);
  }
  t.true(config.normalisation.mean[0] > config.normalisation.std[0] / 10);
  // measured 0.78 (chance: 0.33); eval-mode batch norm after 75 steps of 4 images
  t.true(done.eval.accuracy > 0.6, `accuracy ${done.eval.accuracy}: colour tells the classes`);

  const evaluated = await runCli(['eval', '--checkpoint', out, '--dataset', root, '--json']);
  t.is(evaluated.code, 0, evaluated.stderr);
  t.deepEqual(JSON.parse(evaluated.stdout).confusion, done.eval.confusion);

  // predict through the CLI equals the trainer's own prediction of the loaded test images
  const files = ['blue/1.png', 'green/2.png', 'red/3.png'].map((f) =>
    path.join(root, 'testing', f),
  );
  const predicted = await runCli(['predict', '--checkpoint', out, ...files, '--json']);
  t.is(predicted.code, 0, predicted.stderr);
  const lines = jsonLines(predicted.stdout);
  const trainer = await Trainer.load(out);
  t.teardown(() => trainer.dispose());
  t.deepEqual(trainer.normalisation, {
    mean: config.normalisation.mean,
    std: config.normalisation.std,
  });
  const { test: testSet } = await loadImageFolder(root);
  const bytes = 3 * SIDE * SIDE;
  // testing/ holds 20 images per class, classes and files sorted by name
  const order = Array.from({ length: 20 }, (_, j) => `${j}.png`).sort();
  for (const [k, file] of files.entries()) {
    const index = k * 20 + order.indexOf(path.basename(file));
    const [p] = await trainer.predict(testSet.images.subarray(index * bytes, (index + 1) * bytes), {
      count: 1,
      height: SIDE,
      width: SIDE,
    });
    const line = lines.find((l) => l.file === file)!;
    t.is(line.class, p.class, file);
    t.true(Math.abs(line.probability - p.probability) < 1e-6, file);
  }
});

test('normalisation figures and channels are checked with one-line errors', async (t) => {
  const { train } = await smallMnist(20, 5);
  const names = train.classNames;
  await t.throwsAsync(Trainer.create({ classNames: names, normalize: 'imagenet' }), {
    message: /'imagenet' is for RGB images; these have 1 channel/,
  });
  await t.throwsAsync(
    Trainer.create({ classNames: names, channels: 3, normalize: '0.5,0.5/0.2' }),
    {
      message: /2 mean values for 3 channel\(s\)/,
    },
  );
  await t.throwsAsync(Trainer.create({ classNames: names, normalize: '0.5/0' }), {
    message: /every std > 0/,
  });
  await t.throwsAsync(Trainer.create({ classNames: names, channels: 2 as never }), {
    message: /channels: expected 1 or 3/,
  });
  const fixed = await Trainer.create({
    model: 'mlp',
    classNames: names,
    channels: 3,
    normalize: '0.5/0.25',
    threads: 1,
  });
  t.teardown(() => fixed.dispose());
  t.deepEqual(fixed.normalisation, { mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25] });
  await t.throwsAsync(fixed.setData({ train }), {
    message: 'train data has 1 channel(s) but the trainer was built for 3',
  });
  const bad = await runCli(['train', '--normalize', 'imagenet', '--epochs', '1', '--threads', '1']);
  t.not(bad.code, 0);
  t.regex(bad.stderr.trim(), /^[^\n]*'imagenet' is for RGB images[^\n]*$/);
});

test('--channels 3 on grey IDX data: the checkpoint records 3 channels; eval and predict give grey images three', async (t) => {
  const { dir } = await smallIdxFolder(30, 20);
  const out = tempDir('torchfocal-rgb-grey-');
  t.teardown(() => {
    fs.rmSync(dir, { recursive: true, force: true });
    fs.rmSync(out, { recursive: true, force: true });
  });
  const run = await runCli(quickTrainArgs(dir, out, '--channels', '3', '--overwrite'));
  t.is(run.code, 0, run.stderr);
  const done = jsonLines(run.stdout).find((e) => e.event === 'done')!;
  const config = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8'));
  t.is(config.channels, 3);
  t.deepEqual(config.normalisation.mean, [0, 0, 0]);
  const evaluated = await runCli(['eval', '--checkpoint', out, '--json']);
  t.is(evaluated.code, 0, evaluated.stderr);
  t.deepEqual(JSON.parse(evaluated.stdout).confusion, done.eval.confusion);
  // a grey PNG of the first test image: predicted as the API predicts its repeated planes
  const { test: testSet } = await smallMnist(10, 10);
  const png = path.join(out, 'first.png');
  await writePng(png, testSet.images.subarray(0, 784));
  const predicted = await runCli(['predict', '--checkpoint', out, png, '--json']);
  t.is(predicted.code, 0, predicted.stderr);
  const trainer = await Trainer.load(out);
  t.teardown(() => trainer.dispose());
  const rgb = withChannels(testSet, 3);
  const [p] = await trainer.predict(rgb.images.subarray(0, 3 * 784), {
    count: 1,
    height: 28,
    width: 28,
  });
  const [line] = jsonLines(predicted.stdout);
  t.is(line.class, p.class);
  t.true(Math.abs(line.probability - p.probability) < 1e-6);
});

test('a bad --augment is one line naming the part, before any data is read', async (t) => {
  const bad = await runCli(['train', '--augment', 'crop:4,flop', '--dataset', '/nonexistent']);
  t.is(bad.code, 2, 'a usage error');
  t.is(
    bad.stderr.trim(),
    "torchfocal: augment: unknown 'flop' (known: crop:PAD, flip, rrc:SCALE_MIN, jitter:B,C,S, none)",
  );
  const trainer = await Trainer.create({ classNames: ['a', 'b'], augment: 'flip,crop:2' });
  t.teardown(() => trainer.dispose());
  t.is(trainer.options.augment, 'crop:2,flip', 'kept in canonical form');
});
