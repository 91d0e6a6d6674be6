// The optimizer flags through the CLI: into the checkpoint's config and its training state (the
// per-step maths against torch.optim is test/native/test_optimizers.cpp), bad ones one line each.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { quickTrainArgs, runCli, tempDir, type CliResult } from './helpers/cli';
import { smallIdxFolder } from './helpers/mnist';

/** The tensor names of a safetensors file (its JSON header). */
function tensorNames(file: string): string[] {
  const buf = fs.readFileSync(file);
  const header = JSON.parse(buf.subarray(8, 8 + Number(buf.readBigUInt64LE(0))).toString('utf8'));
  return Object.keys(header).filter((k) => k !== '__metadata__');
}

function oneLineError(t: any, r: CliResult, pattern: RegExp): void {
  t.not(r.code, 0, r.stderr);
  t.is(r.stderr.trim().split('\n').length, 1, r.stderr);
  t.regex(r.stderr, pattern);
}

test('the optimizer flags reach the checkpoint, and its state holds their buffers', async (t) => {
  const { dir } = await smallIdxFolder(60, 100);
  const cases: [string[], Record<string, unknown>, string][] = [
    [
      ['--optimizer', 'sgd', '--lr', '0.05', '--momentum', '0.9', '--nesterov'],
      { optimizer: 'sgd', momentum: 0.9, nesterov: true, weightDecay: 0, clipGradNorm: 0 },
      'sgd.momentum_buffer/',
    ],
    [
      ['--optimizer', 'adamw', '--clip-grad-norm', '1', '--warmup-epochs', '1'],
      { optimizer: 'adamw', weightDecay: 0.01, clipGradNorm: 1, warmupEpochs: 1, momentum: 0 },
      'adamw.exp_avg/',
    ],
    [
      ['--optimizer', 'adam', '--weight-decay', '0.001', '--lr-schedule', 'cosine'],
      { optimizer: 'adam', weightDecay: 0.001, nesterov: false, warmupEpochs: 0 },
      'adam.exp_avg/',
    ],
  ];
  for (const [extra, expected, entry] of cases) {
    const out = path.join(tempDir(), 'run');
    const r = await runCli(quickTrainArgs(dir, out, ...extra));
    t.is(r.code, 0, r.stderr);
    const { options } = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8'));
    for (const [key, value] of Object.entries(expected)) t.is(options[key], value, key);
    const names = tensorNames(path.join(out, 'train-state.safetensors'));
    t.true(
      names.some((n) => n.startsWith(entry)),
      `${entry} in ${names.join(', ')}`,
    );
  }
});

test('bad optimizer flags and combinations: one line naming the option', async (t) => {
  const { dir } = await smallIdxFolder(60, 100);
  for (const [extra, message] of [
    [['--optimizer', 'rmsprop'], /--optimizer.*expected one of adam, adamw, sgd/],
    [['--momentum', '-1'], /--momentum.*expected a number >= 0/],
    [['--weight-decay', 'x'], /--weight-decay.*expected a number >= 0/],
    [['--clip-grad-norm', '0'], /--clip-grad-norm.*expected a number > 0/],
    [['--warmup-epochs', '1.5'], /--warmup-epochs.*integer/],
    [['--optimizer', 'adam', '--momentum', '0.9'], /momentum: applies to optimizer 'sgd' only/],
    [['--optimizer', 'sgd', '--nesterov'], /nesterov: needs optimizer 'sgd' with momentum > 0/],
    [['--warmup-epochs', '1', '--lr-schedule', 'onecycle'], /warmupEpochs: .*onecycle/],
    [['--warmup-epochs', '2', '--lr-schedule', 'cosine'], /warmupEpochs: 2 leaves none/],
  ] as const) {
    const out = path.join(tempDir(), 'run');
    oneLineError(t, await runCli(quickTrainArgs(dir, out, ...extra)), message);
    t.false(fs.existsSync(out), `${extra.join(' ')}: nothing written`);
  }
});
