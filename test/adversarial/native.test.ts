// Issue 16, the API's native boundary: no caller's number sizes an allocation the data does not
// back, no C++ exception escapes into Node (SIGABRT, "terminate called"), non-finite weights are
// refused at load, and bad trainer options are refused in one line.
import test from 'ava';
import path from 'node:path';
import os from 'node:os';
import { ops, runTraining, Trainer } from '../../ts/index';
import { smallIdxFolder } from '../helpers/mnist';
import { native, type NativeTensor } from '../../ts/native';
import fs from 'node:fs';
import { runCli, runProcess, tempDir } from '../helpers/cli';
import { writePng } from '../helpers/imagefolder';
import { CHECKPOINT_FILES, commitCheckpoint, openCheckpoint } from '../../ts/train/checkpoint';
import { readSafetensors, writeSafetensors } from '../../ts/io/safetensors';

const DIST = path.join(__dirname, '..', '..');

/** Runs `body` (a script of the compiled tree) in a child: a native abort shows as a signal. */
async function child(body: string) {
  const script = `const { ops } = require(${JSON.stringify(path.join(DIST, 'ts/index.js'))});
const { native } = require(${JSON.stringify(path.join(DIST, 'ts/native.js'))});
(async () => { ${body} })().then(() => process.exit(0), (e) => { console.log('ERR', e instanceof Error, e.message); process.exit(0); });`;
  return runProcess(process.execPath, ['-e', script]);
}

test('focalLoss: shape [0, 2**33] with a scalar alpha is refused, not a native abort', async (t) => {
  for (const call of ['ops.focalLoss', 'native().focalLoss']) {
    const r = await child(
      `try { await ${call}({ input: new Float32Array(0), shape: [0, 2 ** 33], target: new Int32Array(0), alpha: 0.5 }); console.log('OK'); }
       catch (e) { console.log('ERR', e instanceof Error, e.message); }`,
    );
    t.is(r.signal, null, `${call}: ${r.stderr}`);
    t.is(r.code, 0, `${call}: ${r.stderr}`);
    t.notRegex(r.stderr, /terminate called/);
    t.regex(
      r.stdout,
      /^ERR true focalLoss: C \(shape\[1\]\) must be >= 1, and at most 2\^24/m,
      call,
    );
  }
});

test('focalLoss (native, no TS checks): a target shape the data does not back allocates nothing', async (t) => {
  // [2**33, 0]: the input is empty, but the target would be 2**33 values (32 GB) before the check.
  await t.throwsAsync(
    async () =>
      native().focalLoss({
        input: new Float32Array(0),
        shape: [2 ** 33, 1],
        target: new Int32Array(0),
      } as never),
    { message: /input has 0 values, its shape needs 8589934592/ },
  );
  await t.throwsAsync(
    async () =>
      native().focalLoss({
        input: new Float32Array(4),
        shape: [1e300, 2],
        target: new Int32Array(2),
      } as never),
    { message: /shape must hold integers >= 0/ },
  );
  await t.throwsAsync(
    async () =>
      native().focalLoss({
        input: new Float32Array(4),
        shape: [2, 2],
        target: new Int32Array(2),
        alpha: [1, 2, 3],
      } as never),
    { message: /alpha has 3 values, expected 1 or C = 2/ },
  );
});

test('focalLoss refuses a negative alpha (TS and native)', async (t) => {
  const o = { input: new Float32Array([1, 2, 3, 4]), shape: [2, 2], target: [0, 1] };
  await t.throwsAsync(ops.focalLoss({ ...o, alpha: -0.5 }), {
    message: /alpha must hold numbers >= 0/,
  });
  await t.throwsAsync(ops.focalLoss({ ...o, alpha: [1, -1] }), {
    message: /alpha must hold numbers >= 0/,
  });
  await t.throwsAsync(ops.focalLoss({ ...o, alpha: [1, NaN] }), {
    message: /alpha must be a finite number/,
  });
  await t.throwsAsync(
    async () => native().focalLoss({ ...o, target: new Int32Array([0, 1]), alpha: -0.5 } as never),
    { message: /alpha must hold numbers >= 0/ },
  );
  const ok = await ops.focalLoss({ ...o, alpha: 0.5 });
  t.true(Number.isFinite(ok.loss[0]));
});

function poisoned(state: NativeTensor[], name: string, value: number): NativeTensor[] {
  return state.map((s) => {
    if (s.name !== name) return s;
    // a copy of its own buffer, whether the tensor holds an ArrayBuffer or a view into a file's
    const data = new Float32Array(new Uint8Array(s.data).slice().buffer);
    data[0] = value;
    return { ...s, data: data.buffer };
  });
}

test('loadStateDict and loadWeights refuse NaN or infinite weights, naming the tensor', async (t) => {
  const trainer = await Trainer.create({ model: 'mlp', classNames: ['a', 'b', 'c'], threads: 1 });
  const state = await trainer.stateDict();
  const name = state.find((s) => s.dtype === 'F32')!.name;
  for (const bad of [NaN, Infinity, -Infinity]) {
    const err = await t.throwsAsync(trainer.loadStateDict(poisoned(state, name, bad)));
    t.regex(
      err!.message,
      new RegExp(`tensor '${name.replace('.', '\\.')}' holds non-finite values`),
    );
    t.notRegex(err!.message, /\n/);
  }
  const after = await trainer.stateDict();
  t.deepEqual(
    new Uint8Array(after[0].data as ArrayBuffer),
    new Uint8Array(state[0].data as ArrayBuffer),
  );
  trainer.dispose();
});

test('predict and eval of a checkpoint whose weights are NaN: one line naming the tensor, exit 1, no class printed', async (t) => {
  const good = path.join(tempDir(), 'good');
  const digits = Array.from({ length: 10 }, (_, i) => String(i)); // eval's MNIST fits it
  const trainer = await Trainer.create({ model: 'mlp', classNames: digits, threads: 1 });
  await trainer.save(good);
  trainer.dispose();
  // The same checkpoint with one NaN weight, committed with matching checksums (a diverged run's).
  const opened = await openCheckpoint(good);
  const weights = (await readSafetensors(opened.paths.weights)).tensors;
  const name = weights.find((w) => w.dtype === 'F32')!.name;
  const bad = path.join(tempDir(), 'nan');
  const { files, ...config } = opened.config;
  void files;
  await commitCheckpoint(bad, config, async (file, to) => {
    if (file === 'weights') {
      await writeSafetensors(to, poisoned(weights, name, NaN), { format: 'pt', model: 'mlp' });
    } else {
      await fs.promises.copyFile(path.join(good, CHECKPOINT_FILES[file]), to);
    }
  });
  const image = path.join(tempDir(), 'x.png');
  await writePng(image, new Uint8Array(784).fill(128));
  const nonFinite = new RegExp(`tensor '${name.replace('.', '\\.')}' holds non-finite values`);
  for (const args of [
    ['predict', '--checkpoint', bad, image],
    ['predict', '--checkpoint', bad, image, '--json'],
    ['eval', '--checkpoint', bad, '--json'],
  ]) {
    const r = await runCli([...args, '--threads', '1']);
    t.is(r.code, 1, args.join(' '));
    t.is(r.stdout, '', 'no class, no figures');
    t.is(r.stderr.trim().split('\n').length, 1, r.stderr);
    t.regex(r.stderr, nonFinite);
  }
});

test('resolveOptions: lr out of range, syncBn alone and bad class names are refused in one line', async (t) => {
  const base = { model: 'mlp', classNames: ['a', 'b'], threads: 1 };
  for (const lr of [1e38, 1e16, 1e-40]) {
    await t.throwsAsync(Trainer.create({ ...base, lr }), {
      code: 'ERR_TORCHFOCAL_INVALID_ARGUMENT',
      message: /^lr: expected a number in \[1e-30, 1e15\], got/,
    });
  }
  await t.throwsAsync(Trainer.create({ ...base, syncBn: true }), {
    code: 'ERR_TORCHFOCAL_INVALID_ARGUMENT',
    message: /^syncBn: .*needs --nproc/,
  });
  await t.throwsAsync(Trainer.create({ ...base, classNames: [1, 2] as never }), {
    code: 'ERR_TORCHFOCAL_INVALID_ARGUMENT',
    message: /^classNames\[0\]: expected a non-empty string, got 1/,
  });
  await t.throwsAsync(Trainer.create({ ...base, classNames: ['a', ''] }), {
    message: /^classNames\[1\]: expected a non-empty string/,
  });
  await t.throwsAsync(Trainer.create({ ...base, classNames: ['a', 'b', 'a'] }), {
    message: /^classNames: 'a' is given twice/,
  });
  const ok = await Trainer.create({ ...base, lr: 1e12 }); // the README's diverging example
  ok.dispose();
});

test('--threads above the cores is lowered to them, with one warning', async (t) => {
  const { dir } = await smallIdxFolder(120, 200);
  const warnings: string[] = [];
  const r = await runTraining(
    { dataset: dir, model: 'mlp', epochs: 1, threads: 1000 },
    { onWarning: (m) => warnings.push(m) },
  );
  const cores = os.availableParallelism();
  t.deepEqual(warnings, [`--threads 1000: this machine has ${cores} cores; using ${cores}`]);
  t.is(r.history.length, 1);
});

test('fuzz (short form): 300 random typed-array and shape calls, no native crash', async (t) => {
  const seed = String(1 + Math.floor(Math.random() * 1e6));
  const r = await runProcess(process.execPath, [
    path.join(DIST, 'test/fuzz/run.js'),
    '--kinds',
    'ops',
    '--cases',
    '300',
    '--seed',
    seed,
    '--json',
  ]);
  t.notRegex(r.stderr, /terminate called/);
  const { reports } = JSON.parse(r.stdout.trim().split('\n').pop()!);
  t.is(reports[0].kind, 'ops');
  t.log(`ops: ${reports[0].accepted} accepted, ${reports[0].refused} refused (seed ${seed})`);
  t.is(reports[0].accepted + reports[0].refused, 300);
  t.deepEqual(reports[0].crashes, [], `seed ${seed}`);
  t.is(r.code, 0, r.stderr);
});
