// Learning-rate schedules: every step's rate against PyTorch's own schedulers on fresh random
// sizes, the options' errors, and a run that continues its schedule from a checkpoint.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { learningRates, Trainer } from '../ts/index';
import { PYTHON, quickTrainArgs, ROOT, runCli, tempDir } from './helpers/cli';
import { smallIdxFolder, smallMnist } from './helpers/mnist';

const pytorchRates = (cases: { schedule: string; lr: number; steps: number }[]): number[][] =>
  JSON.parse(
    execFileSync(
      PYTHON,
      [path.join(ROOT, 'test', 'fixtures', 'lr_schedules.py'), JSON.stringify(cases)],
      {
        encoding: 'utf8',
        maxBuffer: 1 << 26,
      },
    ),
  );

test("every step's rate is PyTorch's OneCycleLR / CosineAnnealingLR rate", (t) => {
  const cases: { schedule: 'onecycle' | 'cosine'; lr: number; steps: number }[] = [];
  for (const schedule of ['onecycle', 'cosine'] as const) {
    // the smallest schedules (OneCycleLR's first phase ends before step 0 up to 3 steps) and random ones
    for (const steps of [1, 2, 3, 4, 7, 10 + Math.floor(Math.random() * 5000)]) {
      cases.push({ schedule, lr: 10 ** (-4 + 4 * Math.random()), steps });
    }
  }
  const expected = pytorchRates(cases);
  cases.forEach((c, i) => {
    const ours = learningRates(c.schedule, c.lr, c.steps);
    t.is(ours.length, c.steps);
    let worst = 0;
    ours.forEach((r, k) => {
      worst = Math.max(worst, Math.abs(r - expected[i][k]) / c.lr);
    });
    t.true(worst < 1e-12, `${JSON.stringify(c)}: ${worst}`);
  });
  t.deepEqual([...learningRates('constant', 0.5, 3)], [0.5, 0.5, 0.5]);
});

test('schedule options: unknown names and missing or misplaced spans are one-line errors', async (t) => {
  const base = { model: 'mlp', classNames: ['a', 'b'], threads: 1 };
  await t.throwsAsync(Trainer.create({ ...base, lrSchedule: 'step' as never }), {
    message: "lrSchedule: unknown schedule 'step' (known: constant, onecycle, cosine)",
  });
  await t.throwsAsync(Trainer.create({ ...base, lrSchedule: 'onecycle' }), {
    message: 'scheduleEpochs: expected an integer >= 1, got 0',
  });
  await t.throwsAsync(Trainer.create({ ...base, scheduleEpochs: 3 }), {
    message: "scheduleEpochs: only a 'onecycle' or 'cosine' lrSchedule spans epochs",
  });
  t.throws(() => learningRates('linear' as never, 0.1, 10), {
    message: "learningRates: unknown lr_schedule 'linear' (known: constant, onecycle, cosine)",
  });
  t.throws(() => learningRates('cosine', -1, 10), { message: /lr must be a number > 0/ });
  t.throws(() => learningRates('cosine', 0.1, 0), {
    message: /^option 'steps' must be an integer in \[1, /,
  });
});

test('a run saved mid-schedule and loaded again trains on as the run that never stopped', async (t) => {
  const data = await smallMnist(2000, 200);
  const options = {
    model: 'mlp',
    classNames: data.train.classNames,
    threads: 1,
    lr: 0.2,
    lrSchedule: 'onecycle' as const,
    scheduleEpochs: 3,
  };
  const straight = await Trainer.create(options);
  await straight.setData(data);
  const whole = await straight.fit(3);
  straight.dispose();

  const first = await Trainer.create(options);
  await first.setData(data);
  await first.fit(1);
  const dir = tempDir();
  await first.save(dir, {});
  first.dispose();
  const config = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
  t.is(config.options.lrSchedule, 'onecycle');
  t.is(config.options.scheduleEpochs, 3);
  const second = await Trainer.load(dir, { threads: 1 });
  await second.setData(data);
  const rest = await second.fit(2);
  second.dispose();
  t.deepEqual(
    rest.map((r) => r.loss),
    whole.slice(1).map((r) => r.loss),
  );

  // The schedule is in effect: the same run at a constant rate trains differently.
  const constant = await Trainer.create({ ...options, lrSchedule: 'constant', scheduleEpochs: 0 });
  await constant.setData(data);
  const flat = await constant.fit(1);
  constant.dispose();
  t.not(flat[0].loss, whole[0].loss);
});

test('train --lr-schedule: spans --epochs, is kept in the checkpoint; a bad name is refused', async (t) => {
  const out = path.join(tempDir(), 'run');
  const ok = await runCli(
    quickTrainArgs((await smallIdxFolder()).dir, out, '--lr-schedule', 'cosine'),
  );
  t.is(ok.code, 0, ok.stderr);
  const config = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8'));
  t.is(config.options.lrSchedule, 'cosine');
  t.is(config.options.scheduleEpochs, 2);
  const bad = await runCli(['train', '--lr-schedule', 'linear']);
  t.is(bad.code, 2, 'a usage error');
  t.regex(
    bad.stderr.trim(),
    /^torchfocal: option '--lr-schedule <name>' argument 'linear' is invalid/,
  );
  t.is(bad.stderr.trim().split('\n').length, 1);
});
