// Model selection by a validation set: the split, the monitored pick, best/, early stopping.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { classCounts, loadMnist, runTraining, subset, Trainer, type Dataset } from '../ts/index';
import { validationCount, validationSplit } from '../ts/data/validation';
import { EpochSelector } from '../ts/train/selection';
import { jsonLines, quickTrainArgs, runCli, tempDir } from './helpers/cli';
import { smallIdxFolder, smallMnist } from './helpers/mnist';
import { mnistImageFolder } from './helpers/imagefolder';

test('the split is stratified, seeded, disjoint, and keeps one image of a class of two', async (t) => {
  const { train } = await smallMnist(2000, 10);
  // Starve class 3 to two images and class 5 to one: the rules for small classes show.
  const counts = classCounts(train);
  const keep: number[] = [];
  const seen = new Array<number>(10).fill(0);
  for (let i = 0; i < train.count; i++) {
    const c = train.labels[i];
    const limit = c === 3 ? 2 : c === 5 ? 1 : Infinity;
    if (seen[c]++ < limit) keep.push(i);
  }
  const cut = subset(train, keep);
  const a = validationSplit(cut, 0.1, 7);
  const b = validationSplit(cut, 0.1, 7);
  const c = validationSplit(cut, 0.1, 8);
  const before = classCounts(cut);
  const valCounts = classCounts(a.val);
  t.deepEqual(
    valCounts,
    before.map((n) => validationCount(n, 0.1)),
  );
  t.is(valCounts[3], 1, 'a class of two gives one image');
  t.is(valCounts[5], 0, 'a class of one stays in training');
  for (const [k, n] of before.entries()) {
    if (k !== 3 && k !== 5) t.is(valCounts[k], Math.round(0.1 * n));
  }
  t.deepEqual(
    classCounts(a.train).map((n, k) => n + valCounts[k]),
    before,
  );
  t.deepEqual(a.val.labels, b.val.labels, 'same seed, same split');
  t.deepEqual(Buffer.from(a.val.images), Buffer.from(b.val.images));
  t.notDeepEqual(
    Buffer.from(a.val.images),
    Buffer.from(c.val.images),
    'another seed, another split',
  );
  // Disjoint: every image of the cut set is in exactly one part (MNIST has no duplicate pixels
  // among these, so the pixels identify the image).
  const key = (ds: Dataset, i: number) =>
    Buffer.from(ds.images.subarray(i * 784, (i + 1) * 784)).toString('base64');
  const all = new Set(Array.from({ length: cut.count }, (_, i) => key(cut, i)));
  const parts = [
    ...Array.from({ length: a.train.count }, (_, i) => key(a.train, i)),
    ...Array.from({ length: a.val.count }, (_, i) => key(a.val, i)),
  ];
  t.is(parts.length, cut.count);
  t.is(new Set(parts).size, all.size);
  t.true(parts.every((p) => all.has(p)));
  t.true(counts.every((n) => n > 2));
  t.throws(() => validationSplit(cut, 1, 0), { message: /fraction in \(0, 1\)/ });
});

test('the selector keeps the first best epoch and counts the epochs since', (t) => {
  const s = new EpochSelector('val-loss');
  const v = (loss: number) => ({ loss, accuracy: 0, balancedAccuracy: 0, macroF1: 0 });
  t.true(s.observe(0, v(1)));
  t.true(s.observe(1, v(0.5)));
  t.false(s.observe(2, v(0.5)), 'an equal figure is no improvement');
  t.false(s.observe(3, v(Number.NaN)));
  t.deepEqual(s.best, { epoch: 1, monitor: 'val-loss', value: 0.5 });
  t.is(s.sinceBest, 2);
  const acc = new EpochSelector('val-macro-f1');
  acc.observe(0, { ...v(9), macroF1: 0.4 });
  t.true(acc.observe(1, { ...v(9), macroF1: 0.6 }), 'higher is better for the scores');
  t.throws(() => new EpochSelector('test-accuracy' as never), { message: /unknown figure/ });
});

test('starved-six MNIST: the pick uses validation only; the test set is read after the last epoch', async (t) => {
  const mnist = await loadMnist();
  // The test images, watched: when were they first read, counted in finished epochs?
  let epochsFinished = 0;
  let testReadAfter: number | undefined;
  const pixels = mnist.test.images;
  const watched: Dataset = Object.defineProperty({ ...mnist.test }, 'images', {
    get() {
      testReadAfter ??= epochsFinished;
      return pixels;
    },
  });
  const epochs: { epoch: number; testAcc?: number; val?: unknown }[] = [];
  const out = path.join(tempDir(), 'run');
  const result = await runTraining(
    {
      model: 'mlp',
      epochs: 3,
      threads: 2,
      imbalance: '6=0.01',
      valSplit: 0.1,
      saveBest: true,
      earlyStop: 3,
      out,
    },
    {
      data: { ...mnist, test: watched },
      onEpoch: (r) => {
        epochs.push(r);
        epochsFinished++;
      },
    },
  );
  t.is(epochs.length, 3);
  t.is(testReadAfter, 3, 'the test pixels were first read after the last epoch');
  t.true(epochs.every((r) => r.testAcc === undefined && r.val !== undefined));
  const best = result.best!;
  t.is(best.monitor, 'val-balanced-accuracy');
  const values = result.history.map((r) => r.val!.balancedAccuracy);
  t.is(best.value, Math.max(...values));
  t.is(best.epoch, values.indexOf(best.value));
  t.true(result.eval.accuracy > 0.8);
  // best/ holds the picked epoch: evaluated again, it gives the reported test figures
  const again = await runCli(['eval', '--checkpoint', path.join(out, 'best'), '--json']);
  t.is(again.code, 0, again.stderr);
  const figures = JSON.parse(again.stdout);
  t.is(figures.accuracy, result.eval.accuracy);
  t.is(figures.balancedAccuracy, result.eval.balancedAccuracy);
  t.deepEqual(figures.confusion, result.eval.confusion);
  const saved = JSON.parse(fs.readFileSync(path.join(out, 'best', 'config.json'), 'utf8'));
  t.is(saved.epochsDone, best.epoch + 1);
});

test('CLI: --val-split, --save-best, --early-stop; eval of best/ gives the reported figures', async (t) => {
  const { dir } = await smallIdxFolder();
  const out = path.join(tempDir(), 'run');
  const args = quickTrainArgs(dir, out, '--imbalance', '6=0.05', '--val-split', '0.2');
  const run = await runCli([...args, '--epochs', '4', '--save-best', '--early-stop', '3']);
  t.is(run.code, 0, run.stderr);
  const lines = jsonLines(run.stdout);
  const epochLines = lines.filter((l) => l.event === 'epoch');
  t.true(epochLines.length >= 1 && epochLines.length <= 4);
  for (const l of epochLines) {
    t.is(l.testAcc, undefined);
    t.deepEqual(Object.keys(l.val), ['loss', 'accuracy', 'balancedAccuracy', 'macroF1']);
  }
  const done = lines.find((l) => l.event === 'done')!;
  t.is(done.best.monitor, 'val-balanced-accuracy');
  const picked = epochLines.find((l) => l.epoch === done.best.epoch)!;
  t.is(picked.val.balancedAccuracy, Math.round(done.best.value * 1e4) / 1e4);
  const evaluated = await runCli(['eval', '--checkpoint', path.join(out, 'best'), '--json']);
  t.is(evaluated.code, 0, evaluated.stderr);
  const again = JSON.parse(evaluated.stdout);
  t.is(again.accuracy, done.eval.accuracy);
  t.deepEqual(again.confusion, done.eval.confusion);

  // The run is finished: a resume says so instead of training or re-evaluating.
  const resumed = await runCli([...args, '--epochs', String(epochLines.length), '--resume']);
  t.is(resumed.code, 1);
  t.regex(resumed.stderr, /^torchfocal: --resume: .* is finished: /);
  t.is(resumed.stderr.trim().split('\n').length, 1);
});

test('early stopping: no better figure for N epochs ends the run', async (t) => {
  const data = await smallMnist(600, 100);
  // A rate too small to change a figure: epoch 0 stays the best, and the run stops after N more.
  const result = await runTraining(
    { model: 'mlp', epochs: 10, threads: 1, lr: 1e-12, valSplit: 0.2, earlyStop: 2 },
    { data },
  );
  t.is(result.history.length, 3);
  t.deepEqual(result.best?.epoch, 0);
});

test('selection options need a validation set, and one of them', async (t) => {
  const { dir } = await smallIdxFolder();
  const out = path.join(tempDir(), 'run');
  for (const [extra, message] of [
    [['--save-best'], /--save-best, --early-stop and --monitor pick epochs by a validation set/],
    [['--val-split', '0.1', '--val-dataset', dir], /give one of them/],
    [
      ['--val-split', '0.1', '--eval-every', '2'],
      /with a validation set the test set is evaluated once/,
    ],
  ] as const) {
    const r = await runCli(quickTrainArgs(dir, out, ...extra));
    t.is(r.code, 1, r.stderr);
    t.regex(r.stderr, message);
    t.is(r.stderr.trim().split('\n').length, 1);
  }
  const bad = await runCli(quickTrainArgs(dir, out, '--val-split', '1'));
  t.not(bad.code, 0);
  t.regex(bad.stderr, /fraction in \(0, 1\)/);
});

test('the validation loss is the training loss over the validation images (cross-entropy from predict)', async (t) => {
  const { train, test: held } = await smallMnist(300, 250);
  const trainer = await Trainer.create({
    model: 'mlp',
    classNames: train.classNames,
    threads: 1,
    evalBatchSize: 64,
  });
  try {
    await trainer.setData({ train, val: held });
    await trainer.fit(1);
    const val = await trainer.evaluateValidation();
    const probs = await trainer.predict(held.images, held);
    let nll = 0;
    let correct = 0;
    probs.forEach((p, i) => {
      nll -= Math.log(p.probabilities[held.labels[i]]);
      if (p.class === held.labels[i]) correct++;
    });
    t.true(Math.abs(val.loss - nll / held.count) < 1e-4 * Math.max(1, nll / held.count));
    t.is(val.accuracy, correct / held.count);
    t.is(trainer.history[0].val?.loss, val.loss, 'the epoch carries the same figures');
  } finally {
    trainer.dispose();
  }
});

test('--val-dataset: a folder of the training classes picks the epoch; other classes are refused', async (t) => {
  const root = await mnistImageFolder(20, 10, ['zero', 'one', 'two']);
  // the test split's images as a validation folder of their own: ROOT/testing/<class>/*
  const valDir = path.join(root, 'testing');
  const out = path.join(tempDir(), 'run');
  const r = await runCli(
    quickTrainArgs(root, out, '--val-dataset', valDir, '--monitor', 'val-loss'),
  );
  t.is(r.code, 0, r.stderr);
  const lines = jsonLines(r.stdout);
  const done = lines.find((l) => l.event === 'done')!;
  t.is(done.best.monitor, 'val-loss');
  const losses = lines.filter((l) => l.event === 'epoch').map((l) => l.val.loss);
  t.is(losses[done.best.epoch], Math.min(...losses));
  const config = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8'));
  t.is(config.data.validation.dataset, valDir);
  t.deepEqual(config.data.valCounts, [10, 10, 10]);

  const renamed = path.join(tempDir(), 'val');
  fs.cpSync(valDir, renamed, { recursive: true });
  fs.renameSync(path.join(renamed, 'two'), path.join(renamed, 'deux'));
  const wrong = await runCli(
    quickTrainArgs(root, path.join(tempDir(), 'run'), '--val-dataset', renamed),
  );
  t.is(wrong.code, 1);
  t.regex(
    wrong.stderr,
    /^torchfocal: --val-dataset: .*val: its class folders are not the training classes: it lacks 'two' and has 'deux' not among them\n$/,
  );
});
