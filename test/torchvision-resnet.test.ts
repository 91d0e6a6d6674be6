// torchvision's ResNets (models/torchvision_resnet.cpp) against torchvision itself
// (python3-torchvision, test/fixtures/torchvision_resnet.py): with the same random weights,
// resnet18/34/50 give torchvision's outputs to 1e-5 relative (float32, CPU); the state_dicts load
// strictly both ways; a 1000-class torchvision state_dict starts a 10-class run with
// --init-from-partial; a narrow resnet18 trains from the command line on MNIST made RGB.
import test from 'ava';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { Trainer } from '../ts/index';
import { readSafetensors, writeSafetensors } from '../ts/io/safetensors';
import { jsonLines, PYTHON, ROOT, runCli, tempDir } from './helpers/cli';
import { smallIdxFolder } from './helpers/mnist';

const FIXTURE = path.join(ROOT, 'test', 'fixtures', 'torchvision_resnet.py');
const TEN = Array.from({ length: 10 }, (_, i) => String(i));
const MODELS = ['resnet18', 'resnet34', 'resnet50'] as const;
const TOLERANCE = 1e-5; // max |Δ| / max |y|, the bar
const COUNT = 2;
const SIDE = 64; // small, so the CPU is quick: the pool is adaptive, and no resize runs at 64

// Random RGB images (a fixed LCG), COUNT × 3 × SIDE × SIDE.
const images = new Uint8Array(COUNT * 3 * SIDE * SIDE);
let seed = 424242;
for (let i = 0; i < images.length; i++) {
  seed = (seed * 1103515245 + 12345) >>> 0;
  images[i] = seed >>> 24;
}
const work = tempDir();
const imagesFile = path.join(work, 'images.bin');
fs.writeFileSync(imagesFile, images);
test.after.always(() => fs.rmSync(work, { recursive: true, force: true }));

const python = (args: string[]) =>
  promisify(execFile)(PYTHON, [FIXTURE, ...args], {
    maxBuffer: 1 << 24,
    env: { ...process.env, OMP_NUM_THREADS: '1' },
  }).then(({ stdout }) => JSON.parse(stdout));

// One Python process writes every torchvision state_dict and prints its logits.
const SPECS = [...MODELS, 'resnet18:1000'];
const torchvision = (async () => {
  const args = ['export', work, imagesFile, String(COUNT), String(SIDE), ...SPECS];
  const logits = (await python(args)) as Record<string, number[][]>;
  const file = (spec: string) => path.join(work, `${spec.replace(/:/g, '-')}.safetensors`);
  return { logits, file };
})();

async function trainer(model: string): Promise<Trainer> {
  return Trainer.create({
    model,
    classNames: TEN,
    channels: 3,
    inputSize: SIDE,
    threads: 1,
    seed: 3,
  });
}

/** Each row less its mean: logits up to the constant per row that softmax discards. */
function centred(rows: number[][]): number[][] {
  return rows.map((r) => {
    const mean = r.reduce((a, b) => a + b, 0) / r.length;
    return r.map((v) => v - mean);
  });
}

/** torchfocal's logits of the images (centred): predict gives probabilities, whose logs are. */
async function ourLogits(net: Trainer): Promise<number[][]> {
  const got = await net.predict(images, { count: COUNT, height: SIDE, width: SIDE });
  return centred(got.map((p) => p.probabilities.map(Math.log)));
}

/** max |a − b| / max |b| */
function relative(a: number[][], b: number[][]): number {
  let diff = 0;
  let scale = 0;
  b.forEach((row, i) =>
    row.forEach((v, c) => {
      diff = Math.max(diff, Math.abs(a[i][c] - v));
      scale = Math.max(scale, Math.abs(v));
    }),
  );
  return diff / scale;
}

const names = async (file: string) =>
  (await readSafetensors(file)).tensors.map((x) => x.name).sort();

for (const model of MODELS) {
  test.serial(
    `${model}: torchvision's state_dict loads strictly and gives its outputs`,
    async (t) => {
      const { logits, file } = await torchvision;
      const expected = centred(logits[model]);
      const net = await trainer(model);
      try {
        // the check has teeth: torchfocal's own initialisation gives other outputs
        const before = relative(await ourLogits(net), expected);
        const report = await net.loadWeights(file(model));
        t.false(report.partial);
        t.deepEqual(report.reinitialised, []);
        // every tensor of torchvision's state_dict, and nothing else, is the model's
        t.deepEqual(report.loaded.slice().sort(), await names(file(model)));
        t.deepEqual((await net.stateDict()).map((x) => x.name).sort(), await names(file(model)));
        const diff = relative(await ourLogits(net), expected);
        t.log(
          `${model}: max |Δ| / max |y| = ${diff.toExponential(2)} (before loading: ${before.toExponential(2)})`,
        );
        t.true(diff <= TOLERANCE, `${model}: ${diff}`);
        t.true(before > 1e-2, `${model}: ${before}`);
      } finally {
        net.dispose();
      }
    },
  );

  test.serial(`${model}: torchfocal's state_dict loads strictly into torchvision`, async (t) => {
    const net = await trainer(model);
    try {
      const file = path.join(work, `torchfocal-${model}.safetensors`);
      await writeSafetensors(file, await net.stateDict());
      // the fixture's load_state_dict(strict=True) fails on any missing or unexpected name
      const { logits } = (await python([
        'load',
        model,
        '10',
        file,
        imagesFile,
        String(COUNT),
        String(SIDE),
      ])) as { logits: number[][] };
      const diff = relative(await ourLogits(net), centred(logits));
      t.log(`${model}: max |Δ| / max |y| = ${diff.toExponential(2)}`);
      t.true(diff <= TOLERANCE, `${model}: ${diff}`);
    } finally {
      net.dispose();
    }
  });
}

test.serial(
  'partial: a 1000-class torchvision resnet18 loads into a 10-class one but for fc',
  async (t) => {
    const { file } = await torchvision;
    const fresh = await trainer('resnet18');
    const net = await trainer('resnet18');
    try {
      const init = new Map((await fresh.stateDict()).map((x) => [x.name, x]));
      const report = await net.loadWeights(file('resnet18:1000'), { partial: true });
      t.deepEqual(report.reinitialised, [
        { name: 'fc.weight', fileShape: [1000, 512], modelShape: [10, 512] },
        { name: 'fc.bias', fileShape: [1000], modelShape: [10] },
      ]);
      const fromFile = new Map(
        (await readSafetensors(file('resnet18:1000'))).tensors.map((x) => [x.name, x]),
      );
      t.is(report.loaded.length, fromFile.size - 2);
      for (const x of await net.stateDict()) {
        const expected = x.name.startsWith('fc.') ? init.get(x.name)! : fromFile.get(x.name)!;
        // Buffer.compare: t.deepEqual takes minutes over 45 MB
        const same = Buffer.compare(
          new Uint8Array(x.data as ArrayBuffer),
          new Uint8Array(expected.data as ArrayBuffer),
        );
        t.is(same, 0, x.name);
      }
    } finally {
      fresh.dispose();
      net.dispose();
    }
  },
);

test.serial(
  'train --init-from a 1000-class torchvision resnet18: strict is one error line, --init-from-partial trains',
  async (t) => {
    const { file } = await torchvision;
    const tv = file('resnet18:1000');
    const { dir } = await smallIdxFolder(300, 500);
    const out = path.join(tempDir(), 'run');
    const args = [
      'train',
      '--dataset',
      dir,
      '--model',
      'resnet18',
      '--channels',
      '3',
      '--input-size',
      '32',
      '--epochs',
      '1',
      '--threads',
      '1',
      '--json',
      '--out',
      out,
      '--init-from',
      tv,
    ];
    const strict = await runCli(args);
    t.is(strict.code, 1);
    t.is(
      strict.stderr.trim(),
      `torchfocal: init-from ${tv}: 2 shape mismatches (fc.weight: file [1000,512], ` +
        'model [10,512], fc.bias: file [1000], model [10]); --init-from-partial keeps those initialised',
    );
    const partial = await runCli([...args, '--init-from-partial']);
    t.is(partial.code, 0, partial.stderr);
    t.regex(
      partial.stderr,
      /^init-from: re-initialised 2 \(fc\.weight: file \[1000,512\], model \[10,512\]; fc\.bias: file \[1000\], model \[10\]\)$/m,
    );
    const config = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8'));
    t.like(config, { channels: 3, inputSize: 32 });
    t.like(config.initFrom, { file: tv, partial: true });
    t.deepEqual(
      config.initFrom.reinitialised.map((r: { name: string }) => r.name),
      ['fc.weight', 'fc.bias'],
    );
  },
);

test('train --model resnet18 --width-divisor 8 --input-size 32 --channels 3 on MNIST', async (t) => {
  const { dir } = await smallIdxFolder(15, 50);
  const out = path.join(tempDir(), 'run');
  const r = await runCli([
    'train',
    '--dataset',
    dir,
    '--model',
    'resnet18',
    '--width-divisor',
    '8',
    '--input-size',
    '32',
    '--channels',
    '3',
    '--epochs',
    '1',
    '--threads',
    '1',
    '--json',
    '--out',
    out,
  ]);
  t.is(r.code, 0, r.stderr);
  const [epoch, done] = jsonLines(r.stdout);
  t.true(Number.isFinite(epoch.loss));
  t.log(`1 epoch: loss ${epoch.loss}, test accuracy ${done.eval.accuracy}, ${epoch.seconds} s`);
  t.true(done.eval.accuracy > 0.3, 'it learns: 10 classes, chance is 0.1');
  const weights = new Map(
    (await readSafetensors(path.join(out, 'model.safetensors'))).tensors.map((x) => [x.name, x]),
  );
  t.deepEqual(weights.get('conv1.weight')?.shape, [8, 3, 7, 7]);
  t.deepEqual(weights.get('fc.weight')?.shape, [10, 64]);
});
