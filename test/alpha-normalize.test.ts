// `alphaNormalize` against PyTorch: one full-batch SGD step of the MLP from the same weights
// (loaded with loadWeights), under class weights, label smoothing and focal's γ. 'weights'
// is PyTorch's CrossEntropyLoss(weight=) (divide by Σ α_{y_i}); 'mean' divides by N.
import test from 'ava';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { Trainer, type Dataset } from '../ts/index';
import { PYTHON, ROOT, quickTrainArgs, runCli, tempDir } from './helpers/cli';
import { smallIdxFolder } from './helpers/mnist';

const FIXTURE = path.join(ROOT, 'test', 'fixtures', 'alpha_normalize_init_step.py');
const TEN = Array.from({ length: 10 }, (_, i) => String(i));
const N = 48;
const LR = 0.5;
const ALPHA = [1, 2, 1, 3, 1, 1, 100, 1, 0.5, 1];

interface Case {
  loss: 'ce' | 'focal';
  alpha: number[];
  gamma?: number;
  labelSmoothing?: number;
  alphaNormalize: 'mean' | 'weights';
}
const CASES: Case[] = [
  { loss: 'ce', alpha: ALPHA, alphaNormalize: 'weights' },
  { loss: 'ce', alpha: ALPHA, labelSmoothing: 0.1, alphaNormalize: 'weights' },
  { loss: 'focal', alpha: ALPHA, gamma: 2, alphaNormalize: 'weights' },
  { loss: 'focal', alpha: ALPHA, gamma: 2, labelSmoothing: 0.1, alphaNormalize: 'weights' },
  { loss: 'ce', alpha: ALPHA, labelSmoothing: 0.1, alphaNormalize: 'mean' },
];

// Random images and labels (a fixed LCG), every class present.
let state = 777;
const next = () => (state = (Math.imul(state, 1103515245) + 12345) >>> 0);
const images = Uint8Array.from({ length: N * 784 }, () => next() >>> 24);
const labels = Int32Array.from({ length: N }, (_, i) => (i < 10 ? i : (next() >>> 8) % 10));
const train: Dataset = {
  images,
  labels,
  count: N,
  channels: 1,
  height: 28,
  width: 28,
  classNames: TEN,
  source: 'random',
};

const pytorch = (async () => {
  const dir = tempDir();
  fs.writeFileSync(path.join(dir, 'images.bin'), images);
  fs.writeFileSync(path.join(dir, 'labels.bin'), new Uint8Array(labels.buffer));
  const { stdout } = await promisify(execFile)(
    PYTHON,
    [
      FIXTURE,
      dir,
      path.join(dir, 'images.bin'),
      path.join(dir, 'labels.bin'),
      String(N),
      String(LR),
      ...CASES.map((c) => JSON.stringify(c)),
    ],
    { maxBuffer: 1 << 26, env: { ...process.env, OMP_NUM_THREADS: '1' } },
  );
  const results = JSON.parse(stdout) as { loss: number; after: Record<string, number[]> }[];
  return { init: path.join(dir, 'init.safetensors'), results };
})();

CASES.forEach((c, k) => {
  const name = `${c.loss} α${c.labelSmoothing ? `, smoothing ${c.labelSmoothing}` : ''}, ${c.alphaNormalize}`;
  test.serial(`${name}: loss and SGD step equal PyTorch's`, async (t) => {
    const { init, results } = await pytorch;
    const expected = results[k];
    const trainer = await Trainer.create({
      model: 'mlp',
      classNames: TEN,
      optimizer: 'sgd',
      lr: LR,
      batchSize: N,
      threads: 1,
      ...c,
    });
    try {
      await trainer.loadWeights(init);
      await trainer.setData({ train });
      const [epoch] = await trainer.fit(1);
      t.is(epoch.steps, 1);
      const lossError = Math.abs(epoch.loss - expected.loss) / expected.loss;
      let stepError = 0;
      for (const x of await trainer.handle.stateDict()) {
        const want = expected.after[x.name];
        if (!want) continue;
        const got = new Float32Array(x.data as ArrayBuffer);
        got.forEach((v, i) => (stepError = Math.max(stepError, Math.abs(v - want[i]))));
      }
      t.log(
        `${name}: loss ${epoch.loss.toFixed(6)} vs ${expected.loss.toFixed(6)} (rel ${lossError.toExponential(1)}), ` +
          `weights after the step: max |Δ| ${stepError.toExponential(1)}`,
      );
      t.true(lossError < 1e-6, `${lossError}`);
      t.true(stepError < 1e-6, `${stepError}`);
    } finally {
      trainer.dispose();
    }
  });
});

test.serial('--alpha-normalize reaches the checkpoint; a bad value is one line', async (t) => {
  const { dir } = await smallIdxFolder(60, 100);
  const out = path.join(tempDir(), 'run');
  const extra = ['--alpha', '2', '--alpha-normalize', 'weights', '--epochs', '1'];
  const r = await runCli(quickTrainArgs(dir, out, ...extra));
  t.is(r.code, 0, r.stderr);
  const { options } = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8'));
  t.is(options.alphaNormalize, 'weights');
  const bad = await runCli(['train', '--dataset', dir, '--alpha-normalize', 'sum']);
  t.not(bad.code, 0);
  t.is(bad.stderr.trim().split('\n').length, 1, bad.stderr);
  t.regex(bad.stderr, /--alpha-normalize.*sum/);
});
