// Signals everywhere (issue 16, failure 9): SIGINT or SIGTERM at any moment of `train`, of the
// `--nproc` launcher and of an experiment ends in at most 2 s with 130 or 143, a truthful line
// and a resume command only when there is something to resume. Also failure 6 (an experiment
// checks every run before the first starts) and failure 12's report and sweep-name cases.
import test, { type ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { openCheckpoint } from '../../ts/index';
import { escapeMarkdown } from '../../ts/report/write';
import { parseSweepConfig } from '../../ts/experiment/sweep';
import { CLI, jsonLines, runCli, tempDir } from '../helpers/cli';
import { smallIdxFolder } from '../helpers/mnist';

interface Killed {
  code: number | null;
  stdout: string;
  stderr: string;
  /** milliseconds from the signal to the exit */
  ms: number;
}

/** Runs the CLI; once `ready(stdout)` holds, waits `delayMs` and sends `signal` to its pid. */
function signalWhen(
  args: string[],
  ready: (stdout: string) => boolean,
  signal: NodeJS.Signals,
  delayMs = 0,
): Promise<Killed> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let sentAt = 0;
    child.stderr.on('data', (d) => (stderr += d));
    child.stdout.on('data', (d) => {
      stdout += d;
      if (sentAt === 0 && ready(stdout)) {
        sentAt = -1;
        setTimeout(() => {
          sentAt = Date.now();
          child.kill(signal);
        }, delayMs);
      }
    });
    child.on('error', reject);
    child.on('close', (code) =>
      resolve({ code, stdout, stderr, ms: sentAt > 0 ? Date.now() - sentAt : NaN }),
    );
  });
}

/** The bound of every signal case: the exit code the signal asks for, within 2 s of it. */
function stoppedInTime(t: ExecutionContext, r: Killed, code: 130 | 143, what = ''): void {
  t.log(
    `${what ? `${what} ` : ''}${code === 130 ? 'SIGINT' : 'SIGTERM'}: exit ${r.code} ${r.ms} ms after the signal`,
  );
  t.is(r.code, code, r.stderr);
  t.true(r.ms <= 2000, `${r.ms} ms`);
}

const epochLines = (stdout: string, run?: string) =>
  jsonLines(stdout).filter((e) => e.event === 'epoch' && (run === undefined || e.run === run));

// 60 training images (one step) and 5,000 test images on a quarter-width ResNet, one thread: an
// epoch is a fraction of a second of training and ~4 s of evaluation, so a signal 1.5 s after an
// epoch line lands in the next evaluation, which must stop within 2 s (it used to run to its
// end). Batches of 16 and an 8 MB checkpoint: the stop waits for one batch and the write, and the
// bound holds with ava's other tests sharing the cores. (A full ResNet-18's checkpoint with
// Adam's moments, 134 MB, takes 1.3 s to write here.)
let evalHeavy: Promise<string> | undefined;
const evalHeavyFolder = () => (evalHeavy ??= smallIdxFolder(1000, 2).then((f) => f.dir));
const evalHeavyRun = async (out: string, ...extra: string[]) => [
  'train',
  '--dataset',
  await evalHeavyFolder(),
  '--model',
  'resnet',
  '--width-divisor',
  '4',
  '--eval-batch-size',
  '16',
  '--threads',
  '1',
  '--out',
  out,
  '--json',
  ...extra,
];

test.serial(
  "SIGINT in an epoch's evaluation stops it within 2 s; the resume evaluates that epoch as an uninterrupted run did",
  async (t) => {
    const out = path.join(tempDir(), 'run');
    const r = await signalWhen(
      await evalHeavyRun(out, '--epochs', '2'),
      (s) => epochLines(s).length === 1,
      'SIGINT',
      1500,
    );
    stoppedInTime(t, r, 130);
    t.is(epochLines(r.stdout).length, 1);
    t.true(r.stderr.includes(`train --out ${out} --resume`), r.stderr);
    // Epoch 1 trained (its one step) but was not evaluated: kept as interrupted after that step.
    const { config } = await openCheckpoint(out);
    t.is(config.epochsDone, 1);
    t.like(config.partialEpoch, { epoch: 1, step: 1 });

    const resumed = await runCli([...(await evalHeavyRun(out)), '--resume']);
    t.is(resumed.code, 0, resumed.stderr);
    const reference = await runCli(
      await evalHeavyRun(path.join(tempDir(), 'ref'), '--epochs', '2'),
    );
    t.is(reference.code, 0, reference.stderr);
    const [again] = epochLines(resumed.stdout);
    const want = epochLines(reference.stdout)[1];
    t.is(again.epoch, 1);
    t.is(again.loss, want.loss);
    t.is(again.trainAcc, want.trainAcc);
    t.is(again.testAcc, want.testAcc);
    const done = (stdout: string) => jsonLines(stdout).find((e) => e.event === 'done')!;
    t.deepEqual(done(resumed.stdout).eval.confusion, done(reference.stdout).eval.confusion);
  },
);

test.serial(
  "SIGTERM in a run's final evaluation (the test set after validation) stops it within 2 s, saying all epochs are kept",
  async (t) => {
    const out = path.join(tempDir(), 'run');
    const r = await signalWhen(
      await evalHeavyRun(out, '--epochs', '1', '--val-split', '0.1'),
      (s) => epochLines(s).length === 1,
      'SIGTERM',
      500,
    );
    stoppedInTime(t, r, 143);
    t.regex(r.stderr, /interrupted during the final evaluation: .* holds all 1 epochs/);
    t.true(r.stderr.includes(`train --out ${out} --resume --epochs 2`), r.stderr);
    t.is((await openCheckpoint(out)).config.epochsDone, 1);
    t.false(fs.existsSync(path.join(out, 'report.json')), 'no report of an interrupted run');
  },
);

test.serial(
  'SIGINT sent to the --nproc launcher by pid stops the ranks: 130 and the resume command',
  async (t) => {
    const { dir } = await smallIdxFolder(30, 50);
    const out = path.join(tempDir(), 'run');
    const args = ['train', '--nproc', '2', '--dataset', dir, '--epochs', '3', '--out', out];
    const r = await signalWhen(
      [...args, '--json'],
      (s) => epochLines(s).length === 1,
      'SIGINT',
      100,
    );
    stoppedInTime(t, r, 130, 'launcher');
    t.true(epochLines(r.stdout).length < 3, 'the run did not complete');
    t.true(r.stderr.includes(`train --out ${out} --resume --epochs 3 --nproc 2`), r.stderr);
    t.true((await openCheckpoint(out)).config.epochsDone >= 1);
  },
);

test.serial(
  'experiment starve: SIGINT reports the finished runs; --resume keeps them, continues the stopped one, runs the rest',
  async (t) => {
    // 6,000 training images: the stopped run's second epoch must outlast the signal's delivery
    // (with 2,000 a fast moment of the machine finished it first, and the run counted as done).
    const { dir } = await smallIdxFolder(10, 50);
    const out = path.join(tempDir(), 'starve');
    const args = ['experiment', 'starve', '--dataset', dir, '--model', 'mlp', '--epochs', '2'];
    const full = [...args, '--threads', '1', '--keep', '0.1', '--out', out, '--json'];
    const r = await signalWhen(
      full,
      (s) => epochLines(s, 'imbalanced-ce').length === 1,
      'SIGINT',
      30,
    );
    stoppedInTime(t, r, 130, 'experiment');
    const stopped = jsonLines(r.stdout).find((e) => e.event === 'interrupted');
    t.deepEqual(stopped?.finished, ['balanced-ce']);
    t.is(stopped?.interrupted, 'imbalanced-ce');
    t.is(stopped?.pending, 1);
    t.regex(
      r.stderr,
      /interrupted: 1 run\(s\) finished \(balanced-ce\), reported in .*report\.html/,
    );
    t.true(r.stderr.includes(`${full.join(' ')} --resume`), r.stderr);
    const partial = JSON.parse(fs.readFileSync(path.join(out, 'report.json'), 'utf8'));
    t.deepEqual(
      partial.runs.map((run: { name: string }) => run.name),
      ['balanced-ce'],
    );
    const stoppedAt = (await openCheckpoint(path.join(out, 'imbalanced-ce'))).config;

    const resumed = await runCli([...full, '--resume']);
    t.is(resumed.code, 0, resumed.stderr);
    t.is(
      epochLines(resumed.stdout, 'balanced-ce').length,
      0,
      'the finished run is not trained again',
    );
    const continued = epochLines(resumed.stdout, 'imbalanced-ce').map((e) => e.epoch);
    // stopped in epoch 1, or in its final evaluation (then evaluated from its checkpoint)
    t.deepEqual(continued, stoppedAt.epochsDone === 2 ? [] : [1]);
    t.is(epochLines(resumed.stdout, 'imbalanced-focal').length, 2);
    const rows = jsonLines(resumed.stdout).find((e) => e.event === 'experiment')!.rows;
    t.deepEqual(
      rows.map((row: { name: string; epochs: number }) => [row.name, row.epochs]),
      [
        ['balanced-ce', 2],
        ['imbalanced-ce', 2],
        ['imbalanced-focal', 2],
      ],
    );
  },
);

test.serial(
  'experiment sweep: SIGTERM before any run finished ends 143; the stopped run is resumable',
  async (t) => {
    const { dir } = await smallIdxFolder(15, 50);
    const work = tempDir();
    const config = path.join(work, 'sweep.json');
    fs.writeFileSync(
      config,
      JSON.stringify({ dataset: dir, models: ['mlp'], losses: ['ce'], seeds: [0, 1], epochs: 5 }),
    );
    const out = path.join(work, 'out');
    const args = ['experiment', '--config', config, '--threads', '1', '--out', out, '--json'];
    const r = await signalWhen(args, (s) => epochLines(s).length === 1, 'SIGTERM', 30);
    stoppedInTime(t, r, 143, 'sweep');
    t.regex(r.stderr, /no run finished; .* was stopped, .* holds it up to its last finished step/);
    t.true(r.stderr.includes('--resume'), r.stderr);
    const resumed = await runCli([...args, '--resume']);
    t.is(resumed.code, 0, resumed.stderr);
    const runs = jsonLines(resumed.stdout).filter((e) => e.event === 'run');
    t.is(runs.length, 2);
    t.true(epochLines(resumed.stdout).length < 10, 'the stopped run continued, not restarted');
  },
);

test.serial(
  'experiment starve: SIGINT before any checkpoint prints no resume command',
  async (t) => {
    const { dir } = await smallIdxFolder(30, 50);
    const out = path.join(tempDir(), 'starve');
    const args = ['experiment', 'starve', '--dataset', dir, '--model', 'mlp', '--epochs', '1'];
    const r = await signalWhen(
      [...args, '--threads', '1', '--out', out],
      (s) => s.includes('== balanced-ce'),
      'SIGINT',
    );
    stoppedInTime(t, r, 130, 'experiment');
    if (!fs.existsSync(path.join(out, 'balanced-ce', 'config.json'))) {
      t.regex(r.stderr, /no run finished.*nothing was kept/);
      t.false(r.stderr.includes('--resume'), r.stderr);
    }
  },
);

test('experiment starve checks every run before the first starts', async (t) => {
  const { dir } = await smallIdxFolder(30, 50);
  const base = ['experiment', 'starve', '--dataset', dir, '--model', 'mlp', '--epochs', '1'];
  for (const extra of [
    ['--losses', 'foo'],
    ['--keep', '1e-9'],
  ]) {
    const out = path.join(tempDir(), 'starve');
    const started = Date.now();
    const r = await runCli([...base, '--threads', '1', '--out', out, '--json', ...extra]);
    t.not(r.code, 0, extra.join(' '));
    t.is(epochLines(r.stdout).length, 0, `${extra.join(' ')}: ${r.stdout}`);
    t.false(fs.existsSync(path.join(out, 'balanced-ce')), extra.join(' '));
    t.is(r.stderr.trim().split('\n').length, 1, r.stderr);
    t.log(`${extra.join(' ')}: ${r.stderr.trim()} (${Date.now() - started} ms)`);
  }
});

test('a sweep refuses a control character in a loss name before training', (t) => {
  const err = t.throws(() => parseSweepConfig({ losses: [{ loss: 'ce', name: 'a\u0000b' }] }));
  t.regex(err!.message, /losses\[0\]\.name: .* control character/);
});

test('report.md escapes raw HTML in class names', (t) => {
  const md = escapeMarkdown('<img src=x onerror=alert(1)> & <b>');
  t.false(/[<>]/.test(md), md);
  t.is(md, '&lt;img src=x onerror=alert(1)&gt; &amp; &lt;b&gt;');
});
