// Long-tailed training: samplers, per-epoch evaluation, through the API and the CLI.
import test from 'ava';
import { loadMnist, runTraining, Trainer, subset } from '../ts/index';
import { jsonLines, runCli, tempDir } from './helpers/cli';

const tailRecall = (perClass: { recall: number }[]) =>
  (perClass[8].recall + perClass[9].recall) / 2;

test('class-balanced and sqrt sampling lift the tail classes of a longtail:100 MNIST', async (t) => {
  const data = await loadMnist();
  const run = (sampler: 'instance' | 'class-balanced' | 'sqrt') =>
    runTraining({ model: 'mlp', epochs: 1, imbalance: 'longtail:100', sampler, seed: 1 }, { data });
  const instance = await run('instance');
  // longtail:100 leaves classes 8 and 9 with 112 and 67 images: plain shuffling rarely shows them.
  t.deepEqual(instance.trainCounts.slice(8), [112, 67]);
  // EVAL's long-tail split: > 100 images many-shot, 20–100 medium, < 20 few (none here).
  const shots = instance.eval.shots!;
  t.deepEqual(
    [shots.many.classes, shots.medium.classes, shots.few.classes],
    [[0, 1, 2, 3, 4, 5, 6, 7, 8], [9], []],
  );
  t.is(shots.medium.meanRecall, instance.eval.perClass[9].recall);
  t.is(shots.few.meanRecall, null);
  const many = instance.eval.perClass.slice(0, 9).reduce((s, k) => s + k.recall, 0) / 9;
  t.true(Math.abs(shots.many.meanRecall! - many) < 1e-12);
  for (const sampler of ['class-balanced', 'sqrt'] as const) {
    const r = await run(sampler);
    t.log(
      `${sampler}: tail recall ${tailRecall(r.eval.perClass).toFixed(3)} vs instance ${tailRecall(instance.eval.perClass).toFixed(3)}`,
    );
    t.true(tailRecall(r.eval.perClass) > tailRecall(instance.eval.perClass) + 0.15, sampler);
    t.true(r.eval.accuracy > 0.7, `${sampler}: accuracy ${r.eval.accuracy}`);
  }
});

test('evalEvery: the test set is evaluated every N epochs and after the last', async (t) => {
  const mnist = await loadMnist();
  const pick = (n: number) => Array.from({ length: n }, (_, i) => i);
  const trainer = await Trainer.create({ model: 'mlp', classNames: mnist.train.classNames });
  try {
    await trainer.setData({
      train: subset(mnist.train, pick(2000)),
      test: subset(mnist.test, pick(500)),
    });
    const results = await trainer.fit(5, { evalEvery: 2 });
    t.deepEqual(
      results.map((r) => r.eval !== undefined),
      [false, true, false, true, true],
    );
    t.true(results[4].testAcc! > 0.5);
    await t.throwsAsync(trainer.fit(1, { evalEvery: 0 }), {
      message: /evalEvery: expected an integer >= 1/,
    });
  } finally {
    trainer.dispose();
  }
});

test('Trainer.create rejects an unknown sampler by name', async (t) => {
  await t.throwsAsync(
    Trainer.create({ model: 'mlp', classNames: ['a', 'b'], sampler: 'balanced' as never }),
    { message: "sampler: unknown sampler 'balanced' (known: instance, class-balanced, sqrt)" },
  );
});

test('CLI: --eval-every puts EVAL in the epoch lines it evaluates; --sampler is checked', async (t) => {
  const out = tempDir();
  const r = await runCli([
    'train',
    '--model',
    'mlp',
    '--epochs',
    '2',
    '--eval-every',
    '2',
    '--sampler',
    'sqrt',
    '--imbalance',
    'step:10:5',
    '--out',
    out,
    '--json',
  ]);
  t.is(r.code, 0, r.stderr);
  const lines = jsonLines(r.stdout);
  t.deepEqual(
    lines.map((l) => [l.event, 'eval' in l]),
    [
      ['epoch', false],
      ['epoch', true],
      ['done', true],
    ],
  );
  t.deepEqual(lines[1].eval, lines[2].eval);
  t.deepEqual(lines[2].eval.shots.many.classes, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  // eval of the checkpoint alone knows the training counts too
  const evaluated = await runCli(['eval', '--checkpoint', out, '--json']);
  t.is(evaluated.code, 0, evaluated.stderr);
  t.deepEqual(jsonLines(evaluated.stdout)[0], lines[2].eval);
  const bad = await runCli(['train', '--sampler', 'balanced', '--json']);
  t.not(bad.code, 0);
  t.regex(bad.stderr, /--sampler.*balanced.*(instance|choices)/);
  t.is(bad.stderr.trim().split('\n').length, 1);
  const badProfile = await runCli(['train', '--imbalance', 'step:10:10', '--epochs', '1']);
  t.not(badProfile.code, 0);
  t.regex(badProfile.stderr, /MINORITY must be a whole number of classes in 1\.\.9/);
});
