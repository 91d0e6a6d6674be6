import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { Trainer, runtimeInfo, models } from '../ts/index';
import { PYTHON, ROOT, tempDir } from './helpers/cli';
import { smallMnist } from './helpers/mnist';

test('runtime: LibTorch version, threads and a BLAS library are reported', (t) => {
  const info = runtimeInfo();
  t.regex(info.torchVersion, /^\d+\.\d+\.\d+$/);
  t.true(info.threads >= 1);
  t.true(fs.existsSync(path.join(info.torchDir, 'TorchConfig.cmake')), info.torchDir);
  // CUDA is built in exactly when the addon brought LibTorch's CUDA library into the process.
  const maps = fs.readFileSync('/proc/self/maps', 'utf8');
  t.is(info.cudaBuilt, maps.includes('libtorch_cuda'));
  t.is(info.cudaBuilt, info.cudaVersion > 0);
  t.is(info.cudaBuilt, /NVIDIA/.test(info.cudaCompiler), info.cudaCompiler);
  t.true(!info.cudaAvailable || info.cudaBuilt);
  t.is(info.devices.length, info.cudaDevices);
  t.is(info.cudnnVersion > 0, info.cudnnBuilt && info.cudaAvailable);
  t.regex(info.onednn, /^v\d+\.\d+/);
  t.regex(info.cxxCompiler, /^(GNU|Clang) \d+/);
  if (info.blasLibrary.includes('openblas')) t.is(info.blasThreads, 1);
  t.deepEqual(
    models().map((m) => [m.name, m.inputSize]),
    [
      ['mlp', 28],
      ['lenet', 28],
      ['alexnet', 224],
      ['vgg', 224],
      ['googlenet', 96],
      ['resnet', 96],
      ['resnet32', 32],
      ['resnet18', 224],
      ['resnet34', 224],
      ['resnet50', 224],
    ],
  );
});

test('OpenBLAS is single-threaded even when a worker thread loads the addon first', async (t) => {
  // A worker's process.env is a copy: the OPENBLAS_NUM_THREADS it sets never reaches OpenBLAS.
  const index = JSON.stringify(path.join(ROOT, 'dist', 'ts', 'index.js'));
  const script = `
    const { Worker } = require('node:worker_threads');
    const w = new Worker('const { parentPort } = require("node:worker_threads");' +
      'const { runtimeInfo } = require(${index.replace(/"/g, '\\"')});' +
      'const r = runtimeInfo(); parentPort.postMessage([r.blasLibrary, r.blasThreads]);', { eval: true });
    w.on('message', (m) => { console.log(JSON.stringify(m)); process.exit(0); });`;
  const env = { ...process.env };
  delete env.OPENBLAS_NUM_THREADS;
  const out = execFileSync(process.execPath, ['-e', script], { env, encoding: 'utf8' });
  const [library, threads] = JSON.parse(out) as [string, number];
  if (library.includes('openblas')) t.is(threads, 1);
  else t.is(threads, 0, `${library}: no OpenBLAS, no thread count`);
});

test('an MLP learns MNIST digits from 4000 images (real accuracy, per-epoch results)', async (t) => {
  const data = await smallMnist(4000, 1000);
  const trainer = await Trainer.create({
    model: 'mlp',
    classNames: data.train.classNames,
    seed: 3,
    threads: 1,
  });
  t.is(trainer.options.optimizer, 'sgd'); // the original experiment's choice for mlp
  t.is(trainer.options.lr, 0.5);
  await trainer.setData(data);
  const seen: number[] = [];
  let progressCalls = 0;
  const results = await trainer.fit(3, {
    onEpoch: (r) => void seen.push(r.epoch),
    onProgress: () => void progressCalls++,
  });
  t.deepEqual(seen, [0, 1, 2]);
  t.true(progressCalls > 0);
  t.true(results[2].loss < results[0].loss, `loss should fall: ${results.map((r) => r.loss)}`);
  const last = results[2];
  t.true(last.testAcc! > 0.85, `test accuracy ${last.testAcc}`);
  t.is(last.eval!.perClass.length, 10);
  t.is(
    last.eval!.confusion.flat().reduce((a, b) => a + b, 0),
    1000,
  );
  const evaluation = await trainer.evaluate();
  t.is(evaluation.accuracy, last.testAcc!);
  const preds = await trainer.predict(data.test.images.subarray(0, 784 * 20), {
    count: 20,
    height: 28,
    width: 28,
  });
  const correct = preds.filter((p, i) => p.class === data.test.labels[i]).length;
  t.true(correct >= 15, `${correct}/20 predictions right`);
  t.true(Math.abs(preds[0].probabilities.reduce((a, b) => a + b, 0) - 1) < 1e-5);
  trainer.dispose();
  trainer.dispose(); // safe twice
});

test('a call while an epoch is in flight gets a clear error; abort stops the loop', async (t) => {
  const data = await smallMnist(6000, 100);
  const trainer = await Trainer.create({
    model: 'lenet',
    classNames: data.train.classNames,
    threads: 1,
    batchSize: 32,
  });
  await trainer.setData(data);
  const controller = new AbortController();
  const running = trainer.fit(5, { signal: controller.signal });
  await new Promise((r) => setTimeout(r, 50));
  await t.throwsAsync(trainer.evaluate(), { message: /busy/ });
  controller.abort();
  const err = await t.throwsAsync(running);
  t.is(err?.name, 'AbortError');
  // the trainer stays usable after an abort
  const m = await trainer.evaluate();
  t.is(
    m.perClass.reduce((s, k) => s + k.support, 0),
    100,
  );
  trainer.dispose();
  await t.throwsAsync(trainer.evaluate(), { message: /disposed/ });
});

test('one-image predict: at once when the engine is idle, queued behind another epoch when not; the same probabilities either way', async (t) => {
  const data = await smallMnist(2000, 50);
  const options = { model: 'lenet', classNames: data.train.classNames, threads: 1, seed: 3 };
  const busy = await Trainer.create({ ...options, batchSize: 16 });
  const serving = await Trainer.create(options);
  await busy.setData({ train: data.train });
  const one = data.test.images.subarray(0, 784);
  const shape = { count: 1, height: 28, width: 28 };
  const idle = await serving.predict(one, shape);
  // The other trainer's epoch holds the engine thread: the prediction waits its turn (the
  // JS thread is never blocked on someone else's job, so the timer below still fires).
  const epoch = busy.fit(1);
  await new Promise((r) => setTimeout(r, 20));
  let ticks = 0;
  const timer = setInterval(() => ticks++, 1);
  const queued = await serving.predict(one, shape);
  clearInterval(timer);
  await epoch;
  t.deepEqual(queued[0].probabilities, idle[0].probabilities);
  t.true(ticks > 0);
  // An engine error on the immediate path rejects like any other.
  const unnormalised = await Trainer.create({ ...options, normalize: 'dataset' });
  await t.throwsAsync(unnormalised.predict(one, shape), {
    message: /predict: normalize 'dataset' needs the training data first/,
  });
  for (const trainer of [busy, serving, unnormalised]) trainer.dispose();
});

// One CPU image runs on the JS thread itself, the engine thread held idle: on single-threaded
// kernels, so the JS thread never opens an OpenMP team (a worker pool of its own); the same
// probabilities as the image inside a batch, which runs on the engine thread. A batch-norm
// network too (its fused evaluation pass). In a process of its own: ava's workers share this one,
// and the other test files start threads in it.
test('one-image predict on the JS thread starts no thread and equals the batched prediction', (t) => {
  const index = JSON.stringify(path.join(__dirname, '..', 'ts', 'index.js'));
  const script = `
    const fs = require('node:fs');
    const { Trainer } = require(${index});
    const threads = () => fs.readdirSync('/proc/self/task').length;
    (async () => {
      const out = {};
      for (const [model, channels, side] of [['lenet', 1, 28], ['resnet32', 3, 32], ['resnet', 3, 28]]) {
        const size = channels * side * side, count = 64;
        const images = Uint8Array.from({ length: count * size }, (_, i) => (i * 7919) % 251);
        const labels = Int32Array.from({ length: count }, (_, i) => i % 10);
        const classNames = [...'0123456789'];
        const trainer = await Trainer.create({ model, classNames, channels, threads: 2, seed: 1, widthDivisor: model === 'resnet' ? 8 : 1 });
        const shape = { height: side, width: side, channels };
        const train = { images, labels, count, channels, height: side, width: side, classNames, source: 'test' };
        await trainer.setData({ train });
        await trainer.fit(1);
        const batch = await trainer.predict(images.subarray(0, 3 * size), { ...shape, count: 3 });
        const before = threads();
        let one;
        for (let i = 0; i < 50; i++) one = await trainer.predict(images.subarray(0, size), { ...shape, count: 1 });
        const maxDiff = Math.max(...one[0].probabilities.map((p, k) => Math.abs(p - batch[0].probabilities[k])));
        out[model] = { before, after: threads(), maxDiff };
        trainer.dispose();
      }
      console.log(JSON.stringify(out));
    })().catch((e) => { console.error(e); process.exit(1); });`;
  const out = JSON.parse(execFileSync(process.execPath, ['-e', script], { encoding: 'utf8' }));
  for (const model of ['lenet', 'resnet32', 'resnet']) {
    t.is(out[model].after, out[model].before, model);
    t.true(out[model].maxDiff < 1e-5, `${model}: ${out[model].maxDiff}`);
  }
});

test('bad options and data are rejected with errors naming the argument', async (t) => {
  const names = ['a', 'b', 'c'];
  await t.throwsAsync(Trainer.create({ model: 'nosuchnet', classNames: names }), {
    message: /unknown model 'nosuchnet' \(known: mlp, lenet/,
  });
  await t.throwsAsync(Trainer.create({ classNames: names, alpha: [1, 2] }), {
    message: /alpha: 2 values for 3 classes/,
  });
  await t.throwsAsync(Trainer.create({ classNames: names, batchSize: 0 }), {
    message: /batchSize/,
  });
  await t.throwsAsync(Trainer.create({ classNames: names, loss: 'hinge' }), {
    message: /unknown loss 'hinge'/,
  });
  await t.throwsAsync(Trainer.create({ classNames: names, device: 'tpu' }), {
    message: /unknown device 'tpu'/,
  });
  const trainer = await Trainer.create({ model: 'mlp', classNames: names, threads: 1 });
  const images = new Uint8Array(4 * 28 * 28);
  await t.throwsAsync(
    trainer.setData({
      train: {
        images,
        labels: new Int32Array([0, 1, 2, 7]),
        count: 4,
        channels: 1,
        height: 28,
        width: 28,
        classNames: names,
        source: 't',
      },
    }),
    { message: /value 7 is out of range for 3 classes/ },
  );
  await t.throwsAsync(
    trainer.setData({
      train: {
        images,
        labels: new Int32Array([0, 1, 2]),
        count: 4,
        channels: 1,
        height: 28,
        width: 28,
        classNames: names,
        source: 't',
      },
    }),
    { message: /3 labels for 4 images/ },
  );
  await t.throwsAsync(trainer.fit(1), { message: /no training data/ });
  await t.throwsAsync(trainer.predict(images, { count: 5, height: 28, width: 28 }), {
    message: /bytes but count × channels × height × width = 3920/,
  });
  trainer.dispose();
});

test('checkpoint: safetensors weights load into the original PyTorch definitions and give the same outputs', async (t) => {
  const data = await smallMnist(2000, 64);
  const trainer = await Trainer.create({
    model: 'lenet',
    classNames: data.train.classNames,
    seed: 5,
    threads: 1,
  });
  await trainer.setData(data);
  await trainer.fit(1);
  const dir = tempDir();
  await trainer.save(dir, { note: 'test' });
  t.deepEqual(fs.readdirSync(dir).sort(), [
    'config.json',
    'metrics.jsonl',
    'model.safetensors',
    'train-state.safetensors',
  ]);
  const probs = await trainer.predict(data.test.images.subarray(0, 784 * 8), {
    count: 8,
    height: 28,
    width: 28,
  });
  fs.writeFileSync(path.join(dir, 'images.bin'), data.test.images.subarray(0, 784 * 8));
  const out = execFileSync(
    PYTHON,
    [
      path.join(ROOT, 'test', 'fixtures', 'load_safetensors.py'),
      'lenet',
      path.join(dir, 'model.safetensors'),
      path.join(dir, 'images.bin'),
    ],
    { encoding: 'utf8' },
  );
  const py = JSON.parse(out) as { names: [string, number[]][]; probs: number[][] };
  t.deepEqual(
    py.names.map(([n]) => n),
    [
      '0.bias',
      '0.weight',
      '11.bias',
      '11.weight',
      '3.bias',
      '3.weight',
      '7.bias',
      '7.weight',
      '9.bias',
      '9.weight',
    ],
  );
  for (let i = 0; i < 8; i++) {
    for (let k = 0; k < 10; k++)
      t.true(Math.abs(py.probs[i][k] - probs[i].probabilities[k]) < 1e-5);
  }
  // reload alone from the directory: same predictions, epoch counter restored
  const again = await Trainer.load(dir, { threads: 1 });
  t.is(again.epochsDone, 1);
  const probs2 = await again.predict(data.test.images.subarray(0, 784 * 8), {
    count: 8,
    height: 28,
    width: 28,
  });
  t.deepEqual(
    probs2.map((p) => p.probabilities),
    probs.map((p) => p.probabilities),
  );
  again.dispose();
  trainer.dispose();
});

test('every zoo network has the parameter names and shapes PyTorch gives the same definitions', async (t) => {
  const py = JSON.parse(
    execFileSync(PYTHON, [path.join(ROOT, 'bench', 'd2l_models.py')], {
      encoding: 'utf8',
      maxBuffer: 1 << 24,
    }),
  ) as { name: string; params: [string, number[]][] }[];
  for (const ref of py) {
    const trainer = await Trainer.create({
      model: ref.name,
      classNames: Array.from({ length: 10 }, (_, c) => String(c)),
      threads: 1,
    });
    const state = await trainer.handle.stateDict();
    const ours = state.map((s) => [s.name, s.shape] as [string, number[]]).sort();
    t.deepEqual(ours, ref.params.slice().sort(), ref.name);
    trainer.dispose();
  }
});
