// The colour long-tail digits (ts/data/colour-digits.ts): its profile, its one write to the
// cache, and the long-tail recipe it exists for: augmentation with a long-tail loss.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { classCounts, loadDataset, makeColourDigits } from '../ts/index';
import { jsonLines, runCli, tempDir } from './helpers/cli';

test('colour-digits: 32×32 RGB, the longtail:100 profile from 500, 100 test images a class, written to the cache once', async (t) => {
  const cache = tempDir('torchfocal-cache-');
  t.teardown(() => fs.rmSync(cache, { recursive: true, force: true }));
  const previous = process.env.TORCHFOCAL_CACHE;
  process.env.TORCHFOCAL_CACHE = cache;
  t.teardown(() => {
    if (previous === undefined) delete process.env.TORCHFOCAL_CACHE;
    else process.env.TORCHFOCAL_CACHE = previous;
  });
  const { train, test: testSet, name } = await loadDataset('colour-digits');
  t.is(name, 'colour-digits');
  t.is(train.channels, 3);
  t.is(train.height, 32);
  t.is(train.width, 32);
  // LDAM-DRW's get_img_num_per_cls: int(500 · (1/100)^(k/9))
  const want = Array.from({ length: 10 }, (_, k) => Math.floor(500 * 0.01 ** (k / 9) + 1e-9));
  t.deepEqual(classCounts(train), want);
  t.deepEqual(classCounts(testSet), new Array(10).fill(100));
  // colour for real: many pixels whose channels differ
  let coloured = 0;
  for (let p = 0; p < 1024; p++) {
    if (train.images[p] !== train.images[1024 + p]) coloured++;
  }
  t.true(coloured > 500, `${coloured} of 1024 pixels coloured`);
  // written once: a second load reads the same files
  const folder = path.join(cache, 'colour-digits-lt100');
  const first = path.join(folder, 'training', '9', '00000.png');
  const stamp = fs.statSync(first).mtimeMs;
  const again = await loadDataset('colour-digits');
  t.is(fs.statSync(first).mtimeMs, stamp);
  t.deepEqual(again.train.images, train.images);
  t.deepEqual(fs.readdirSync(cache), ['colour-digits-lt100'], 'no temporary folder left');
  // the in-memory set is the same set: the PNGs are lossless
  const made = await makeColourDigits();
  t.deepEqual(made.train.labels, train.labels);
  t.deepEqual(made.train.images, train.images);
});

test('colour-digits: with --augment crop:4,flip, logit-adjust beats ce on balanced accuracy', async (t) => {
  const cache = tempDir('torchfocal-cache-');
  const out = tempDir('torchfocal-colour-digits-');
  t.teardown(() => {
    fs.rmSync(cache, { recursive: true, force: true });
    fs.rmSync(out, { recursive: true, force: true });
  });
  const run = async (loss: string) => {
    const args = [
      'train',
      '--dataset',
      'colour-digits',
      '--model',
      'resnet32',
      '--width-divisor',
      '2',
      '--augment',
      'crop:4,flip',
      '--normalize',
      'dataset',
      '--lr',
      '0.003',
      '--lr-schedule',
      'cosine',
      '--epochs',
      '12',
      '--batch-size',
      '64',
      '--threads',
      '2',
      '--loss',
      loss,
      '--out',
      path.join(out, loss),
      '--json',
    ];
    const r = await runCli(args, { env: { TORCHFOCAL_CACHE: cache } });
    t.is(r.code, 0, r.stderr);
    return jsonLines(r.stdout).find((e) => e.event === 'done')!.eval.balancedAccuracy as number;
  };
  const ce = await run('ce');
  const adjusted = await run('logit-adjust');
  t.log(`balanced accuracy: ce ${ce.toFixed(3)}, logit-adjust ${adjusted.toFixed(3)}`);
  // measured (seeds 0 and 1): ce 0.608 and 0.626, logit-adjust 0.769 and 0.704
  t.true(adjusted > ce + 0.05, `logit-adjust ${adjusted} vs ce ${ce}`);
  t.true(ce > 0.4, `ce ${ce}: the set is learnable at all`);
});
