// Weights in from PyTorch: every zoo network's state_dict, saved by PyTorch (d2l_models.py, no
// torchvision), loads through Trainer.loadWeights / `train --init-from` and gives PyTorch's
// outputs; strict and partial loading, and their one-line errors.
import test from 'ava';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { Trainer } from '../ts/index';
import { readSafetensors } from '../ts/io/safetensors';
import { PYTHON, ROOT, quickTrainArgs, runCli, tempDir } from './helpers/cli';
import { smallIdxFolder } from './helpers/mnist';

const FIXTURE = path.join(ROOT, 'test', 'fixtures', 'init_from_pytorch.py');
const TEN = Array.from({ length: 10 }, (_, i) => String(i));
const COUNT = 4;
const SIDE = 28;

// Random images (a fixed LCG), as the networks see MNIST: 28×28 uint8, resized on the device.
const images = new Uint8Array(COUNT * SIDE * SIDE);
let state = 12345;
for (let i = 0; i < images.length; i++) {
  state = (state * 1103515245 + 12345) >>> 0;
  images[i] = state >>> 24;
}

// Every network once, a few dtypes, and heads of other sizes: one Python process writes them
// all and prints PyTorch's probabilities (float64, from the values written).
const SPECS = [
  'mlp',
  'lenet',
  'alexnet',
  'vgg:10:8',
  'googlenet',
  'resnet',
  'resnet32',
  'mlp:10:1:F64',
  'lenet:10:1:F16',
  'lenet:10:1:BF16',
  'lenet:3',
  'mlp:3',
] as const;
type Spec = (typeof SPECS)[number];

const pytorch = (async () => {
  const dir = tempDir();
  const input = path.join(dir, 'images.bin');
  fs.writeFileSync(input, images);
  const { stdout } = await promisify(execFile)(
    PYTHON,
    [FIXTURE, dir, input, String(COUNT), String(SIDE), String(SIDE), ...SPECS],
    { maxBuffer: 1 << 24, env: { ...process.env, OMP_NUM_THREADS: '1' } },
  );
  const probs = JSON.parse(stdout) as Record<Spec, number[][]>;
  const file = (spec: Spec) => path.join(dir, `${spec.replace(/:/g, '-')}.safetensors`);
  return { probs, file };
})();

async function trainer(model: string, widthDivisor = 1, classNames = TEN): Promise<Trainer> {
  return Trainer.create({ model, classNames, widthDivisor, threads: 1, seed: 3 });
}

async function maxDiff(t: Trainer, expected: number[][]): Promise<number> {
  const got = await t.predict(images, { count: COUNT, height: SIDE, width: SIDE });
  let worst = 0;
  got.forEach((p, i) =>
    p.probabilities.forEach((v, c) => (worst = Math.max(worst, Math.abs(v - expected[i][c])))),
  );
  return worst;
}

const ROUND_TRIPS: [Spec, string, number][] = [
  ['mlp', 'mlp', 1],
  ['lenet', 'lenet', 1],
  ['alexnet', 'alexnet', 1],
  ['vgg:10:8', 'vgg', 8],
  ['googlenet', 'googlenet', 1],
  ['resnet', 'resnet', 1],
  ['resnet32', 'resnet32', 1],
  ['mlp:10:1:F64', 'mlp', 1],
  ['lenet:10:1:F16', 'lenet', 1],
  ['lenet:10:1:BF16', 'lenet', 1],
];

for (const [spec, model, divisor] of ROUND_TRIPS) {
  test.serial(`${spec}: PyTorch's weights give PyTorch's probabilities to 1e-5`, async (t) => {
    const { probs, file } = await pytorch;
    const net = await trainer(model, divisor);
    try {
      // the check has teeth: torchfocal's own initialisation gives other probabilities
      const before = await maxDiff(net, probs[spec]);
      const report = await net.loadWeights(file(spec));
      t.deepEqual(report.reinitialised, []);
      t.false(report.partial);
      t.regex(report.sha256, /^[0-9a-f]{64}$/);
      t.is(report.file, path.resolve(file(spec)));
      const diff = await maxDiff(net, probs[spec]);
      t.log(
        `${spec}: max |p - p_pytorch| = ${diff.toExponential(2)} (before loading: ${before.toExponential(2)})`,
      );
      t.true(diff < 1e-5, `${spec}: ${diff}`);
      t.true(before > 1e-3, `${spec}: ${before}`);
    } finally {
      net.dispose();
    }
  });
}

test.serial('strict: a head of another size is one error line naming the file', async (t) => {
  const { file } = await pytorch;
  const net = await trainer('lenet');
  try {
    const before = await net.handle.stateDict();
    const err = await t.throwsAsync(net.loadWeights(file('lenet:3')));
    t.is(
      err?.message,
      `${file('lenet:3')}: 2 shape mismatches ` +
        '(11.weight: file [3,84], model [10,84], 11.bias: file [3], model [10])',
    );
    t.deepEqual(await net.handle.stateDict(), before, 'nothing was copied');
    t.is(net.initFrom, undefined);
    // another network: missing and unexpected names, lists cut after four
    const other = await t.throwsAsync(net.loadWeights(file('mlp')));
    t.regex(
      other?.message ?? '',
      /^\/.*mlp\.safetensors: 8 missing \(0\.bias, 0\.weight, 11\.bias, 11\.weight, …\), 2 unexpected \(1\.weight, 1\.bias\), 2 shape mismatches \(3\.weight: file \[10,256\], model \[16,6,5,5\], 3\.bias: file \[10\], model \[16\]\)$/,
    );
  } finally {
    net.dispose();
  }
});

test.serial(
  'partial: only the mismatched head keeps its initialisation, and says so',
  async (t) => {
    const { probs, file } = await pytorch;
    const fresh = await trainer('lenet');
    const net = await trainer('lenet');
    try {
      const init = new Map((await fresh.handle.stateDict()).map((x) => [x.name, x]));
      const report = await net.loadWeights(file('lenet:3'), { partial: true });
      t.true(report.partial);
      t.deepEqual(report.reinitialised, [
        { name: '11.weight', fileShape: [3, 84], modelShape: [10, 84] },
        { name: '11.bias', fileShape: [3], modelShape: [10] },
      ]);
      t.is(report.loaded.length, 8);
      const weights = await readSafetensors(file('lenet:3'));
      const fromFile = new Map(weights.tensors.map((x) => [x.name, x]));
      for (const x of await net.handle.stateDict()) {
        const expected = x.name.startsWith('11.') ? init.get(x.name)! : fromFile.get(x.name)!;
        t.deepEqual(new Uint8Array(x.data as ArrayBuffer), new Uint8Array(expected.data), x.name);
      }
      // and a file that fits is loaded whole in partial mode too
      const whole = await net.loadWeights(file('lenet'), { partial: true });
      t.deepEqual(whole.reinitialised, []);
      t.true((await maxDiff(net, probs.lenet)) < 1e-5);
    } finally {
      fresh.dispose();
      net.dispose();
    }
  },
);

/** A 3-class image folder (4 training and 1 test image per class): another head than MNIST's. */
async function threeClasses(): Promise<string> {
  const root = tempDir();
  for (const split of ['training', 'testing']) {
    for (const cls of ['a', 'b', 'c']) {
      fs.mkdirSync(path.join(root, split, cls), { recursive: true });
      for (let k = 0; k < (split === 'training' ? 4 : 1); k++) {
        const start = (cls.charCodeAt(0) * 7 + k * 784) % (images.length - 784);
        await sharp(Buffer.from(images.subarray(start, start + 784)), {
          raw: { width: 28, height: 28, channels: 1 },
        })
          .png()
          .toFile(path.join(root, split, cls, `${k}.png`));
      }
    }
  }
  return root;
}

test.serial('train --init-from: the run starts from the file and records it', async (t) => {
  const { file } = await pytorch;
  const { dir } = await smallIdxFolder(60, 100);
  const out = path.join(tempDir(), 'run');
  const args = quickTrainArgs(
    dir,
    out,
    '--init-from',
    file('mlp'),
    '--lr',
    '1e-9',
    '--epochs',
    '1',
  );
  const r = await runCli(args);
  t.is(r.code, 0, r.stderr);
  const config = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8'));
  t.like(config.initFrom, { file: file('mlp'), partial: false, reinitialised: [] });
  t.regex(config.initFrom.sha256, /^[0-9a-f]{64}$/);
  // lr 1e-9 for one epoch: the checkpoint's weights are still the file's
  const saved = new Map(
    (await readSafetensors(path.join(out, 'model.safetensors'))).tensors.map((x) => [x.name, x]),
  );
  for (const x of (await readSafetensors(file('mlp'))).tensors) {
    const a = new Float32Array(new Uint8Array(x.data).slice().buffer);
    const b = new Float32Array(new Uint8Array(saved.get(x.name)!.data).slice().buffer);
    t.true(
      a.every((v, i) => Math.abs(v - b[i]) < 1e-6),
      x.name,
    );
  }
  // with --resume it is refused
  const resumed = await runCli([...args, '--resume']);
  t.not(resumed.code, 0); // 1, or 2 where it counts as a bad argument
  t.regex(resumed.stderr.trim(), /^torchfocal: --init-from .*--resume/);
  t.is(resumed.stderr.trim().split('\n').length, 1);
});

test.serial(
  'train --init-from on 3 classes: one strict error line; --init-from-partial re-initialises the head',
  async (t) => {
    const { file } = await pytorch;
    const dir = await threeClasses();
    const out = path.join(tempDir(), 'run');
    const args = quickTrainArgs(dir, out, '--init-from', file('mlp'));
    const strict = await runCli(args);
    t.is(strict.code, 1);
    t.is(strict.stderr.trim().split('\n').length, 1, strict.stderr);
    t.is(
      strict.stderr.trim(),
      `torchfocal: init-from ${file('mlp')}: 2 shape mismatches (3.weight: file [10,256], ` +
        'model [3,256], 3.bias: file [10], model [3]); --init-from-partial keeps those initialised',
    );
    t.false(fs.existsSync(path.join(out, 'config.json')));
    const partial = await runCli([...args, '--init-from-partial']);
    t.is(partial.code, 0, partial.stderr);
    t.regex(
      partial.stderr,
      /^init-from: re-initialised 2 \(3\.weight: file \[10,256\], model \[3,256\]; 3\.bias: file \[10\], model \[3\]\)$/m,
    );
    const config = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8'));
    t.is(config.initFrom.partial, true);
    t.deepEqual(
      config.initFrom.reinitialised.map((r: { name: string }) => r.name),
      ['3.weight', '3.bias'],
    );
  },
);
