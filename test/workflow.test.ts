// The everyday workflow's papercuts: each test here failed before its fix (issue 15).
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import cliProgress from 'cli-progress';
import { ERROR_CODES, hasErrorCode, losses, runTraining, Trainer } from '../ts/index';
import { EpochProgress, invokedAs } from '../ts/cli/output';
import { starveTable } from '../ts/cli/experiment';
import { spawn } from 'node:child_process';
import {
  CLI,
  jsonLines,
  quickTrainArgs,
  ROOT,
  runCli,
  tempDir,
  type CliResult,
} from './helpers/cli';
import { smallIdxFolder, smallMnist } from './helpers/mnist';

function oneLine(t: any, r: CliResult, code: number, pattern: RegExp): void {
  t.is(r.code, code, r.stderr);
  t.is(r.stderr.trim().split('\n').length, 1, r.stderr);
  t.regex(r.stderr, pattern);
}

test('usage errors are one `torchfocal:` line and exit 2', async (t) => {
  const cases: [string[], RegExp][] = [
    [['trian'], /^torchfocal: unknown command 'trian' \(Did you mean train\?\)\n$/],
    [['train', '--bogus'], /^torchfocal: unknown option '--bogus'\n$/],
    [['train', '--epochs', 'x'], /^torchfocal: option '--epochs <n>' argument 'x' is invalid/],
    [['train', '--loss', 'fcal'], /^torchfocal: .*expected one of ce, focal, .*got 'fcal'/],
    [['predict', 'x.png'], /^torchfocal: required option '--checkpoint <dir>' not specified/],
    [['experiment', 'starve', '--keep', '2'], /^torchfocal: option '--keep/],
  ];
  for (const [args, pattern] of cases) oneLine(t, await runCli(args), 2, pattern);
});

test('train --help lists every registered loss and --alpha auto', async (t) => {
  const r = await runCli(['train', '--help']);
  t.is(r.code, 0);
  const help = r.stdout.replace(/\s+/g, ' ');
  const registered = losses().map((l) => l.name);
  t.true(registered.length >= 7);
  for (const loss of registered) {
    t.regex(help, new RegExp(`--loss <name> the loss: .*\\b${loss}\\b`), loss);
  }
  t.regex(help, /--alpha <list> .* or auto/);
});

test('--out holding a checkpoint is refused without --resume or --overwrite', async (t) => {
  const { dir } = await smallIdxFolder();
  const out = path.join(tempDir(), 'run');
  t.is((await runCli(quickTrainArgs(dir, out, '--epochs', '1'))).code, 0);
  const before = fs.readFileSync(path.join(out, 'config.json'), 'utf8');
  const again = await runCli(['train', '--dataset', dir, '--model', 'lenet', '--out', out]);
  oneLine(
    t,
    again,
    2,
    /already holds a checkpoint: continue it with --resume, or replace it with --overwrite/,
  );
  t.is(fs.readFileSync(path.join(out, 'config.json'), 'utf8'), before, 'nothing was replaced');
  const replaced = await runCli(
    quickTrainArgs(dir, out, '--epochs', '1', '--lr', '0.1', '--overwrite'),
  );
  t.is(replaced.code, 0, replaced.stderr);
  t.is(JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')).options.lr, 0.1);
});

test('--resume refuses changed options in one line, allows how it runs, and knows when it is done', async (t) => {
  const { dir } = await smallIdxFolder();
  const out = path.join(tempDir(), 'run');
  const first = await runCli(quickTrainArgs(dir, out, '--epochs', '1', '--loss', 'focal'));
  t.is(first.code, 0, first.stderr);
  const resume = ['train', '--out', out, '--resume'];
  const changed = await runCli([
    ...resume,
    '--epochs',
    '2',
    '--lr',
    '0.01',
    '--loss',
    'ce',
    '--gamma',
    '2',
  ]);
  oneLine(t, changed, 2, /was started with --loss focal \(now ce\), --lr 0\.5 \(now 0\.01\);/);
  t.notRegex(changed.stderr, /--gamma/, 'an option given with its value unchanged is fine');
  // threads and batch sizes may change; the run goes on to the epochs it was started with (1)
  const done = await runCli([...resume, '--threads', '1']);
  oneLine(
    t,
    done,
    1,
    /--resume: .* is finished: it has trained its 1 epochs; ask for more with --epochs N/,
  );
  const more = await runCli([
    ...resume,
    '--threads',
    '1',
    '--eval-batch-size',
    '500',
    '--epochs',
    '2',
    '--json',
  ]);
  t.is(more.code, 0, more.stderr);
  t.deepEqual(
    jsonLines(more.stdout).map((l) => l.event),
    ['epoch', 'done'],
  );
});

test('a relative --dataset is stored resolved, and found beside the checkpoint after a move', async (t) => {
  const { dir } = await smallIdxFolder();
  const project = tempDir();
  fs.cpSync(dir, path.join(project, 'data'), { recursive: true });
  const r = await runCli(quickTrainArgs('data', 'run', '--epochs', '1'), { cwd: project });
  t.is(r.code, 0, r.stderr);
  const config = () =>
    JSON.parse(fs.readFileSync(path.join(project, 'run', 'config.json'), 'utf8'));
  t.is(config().data.dataset, path.join(fs.realpathSync(project), 'data'));
  t.is(config().data.datasetFromCheckpoint, path.join('..', 'data'));
  // From another directory, then after moving the whole project: resume still finds the data.
  const moved = path.join(tempDir(), 'moved');
  fs.renameSync(project, moved);
  const resumed = await runCli([
    'train',
    '--out',
    path.join(moved, 'run'),
    '--resume',
    '--epochs',
    '2',
    '--json',
  ]);
  t.is(resumed.code, 0, resumed.stderr);
  const evaluated = await runCli(['eval', '--checkpoint', path.join(moved, 'run'), '--json'], {
    cwd: tempDir(),
  });
  t.is(evaluated.code, 0, evaluated.stderr);
  t.is(evaluated.stderr, '', 'no dataset-mismatch warning for its own, moved dataset');
  t.is(JSON.parse(evaluated.stdout).accuracy, jsonLines(resumed.stdout).at(-1)!.eval.accuracy);
});

test('the resume command printed is the one the user ran', (t) => {
  t.is(
    invokedAs({ npm_command: 'exec', PATH: '' }, '/x/node_modules/.bin/torchfocal'),
    'npx torchfocal',
  );
  t.is(
    invokedAs({ npm_command: 'exec', PATH: '' }, '/srv/tf/dist/ts/cli/main.js'),
    'node /srv/tf/dist/ts/cli/main.js',
    'a child of `npx ava` is not run by npx',
  );
  t.is(
    invokedAs({ PATH: `/usr/bin${path.delimiter}/opt/bin` }, '/opt/bin/torchfocal'),
    'torchfocal',
  );
  const local = path.join(process.cwd(), 'node_modules', '.bin', 'torchfocal');
  t.is(invokedAs({ PATH: '/usr/bin' }, local), path.join('node_modules', '.bin', 'torchfocal'));
  t.is(
    invokedAs({ PATH: '/usr/bin' }, '/srv/tf/dist/ts/cli/main.js'),
    'node /srv/tf/dist/ts/cli/main.js',
  );
});

test("a resumed epoch's progress rate counts only the steps run in this process", (t) => {
  const payloads: Record<string, string>[] = [];
  const update = cliProgress.SingleBar.prototype.update;
  const isTTY = process.stderr.isTTY;
  const now = Date.now;
  const write = process.stderr.write;
  let clock = 1_000_000;
  try {
    process.stderr.isTTY = true;
    process.stderr.write = (() => true) as typeof process.stderr.write;
    Date.now = () => clock;
    cliProgress.SingleBar.prototype.update = function (
      this: cliProgress.SingleBar,
      ...args: any[]
    ) {
      if (typeof args[1] === 'object') payloads.push(args[1]);
      return (update as any).apply(this, args);
    } as typeof update;
    const bar = new EpochProgress();
    // epoch 3 resumed at step 400 of 469: 20 steps take a second
    bar.update({ epoch: 3, step: 420, steps: 469, loss: 0.5 });
    clock += 1000;
    bar.update({ epoch: 3, step: 440, steps: 469, loss: 0.5 });
    clock += 1000;
    bar.update({ epoch: 3, step: 469, steps: 469, loss: 0.4 });
    bar.stop();
  } finally {
    cliProgress.SingleBar.prototype.update = update;
    process.stderr.isTTY = isTTY;
    process.stderr.write = write;
    Date.now = now;
  }
  t.is(payloads[0].rate, '20.0');
  t.is(payloads[1].rate, '24.5');
  t.is(payloads[1].phase, ' | evaluating', 'after the last step the bar says what it waits for');
});

test('experiment tables and folders are named for what they hold', (t) => {
  const header = starveTable([], 6).split('\n')[0];
  t.regex(header, /class-6 recall/);
  t.notRegex(header, /class-6 acc/);
});

test('API: unknown option keys and wrong types are named, with an error code', async (t) => {
  const classNames = ['a', 'b'];
  const typo = await t.throwsAsync(Trainer.create({ classNames, gama: 2 } as never));
  t.regex(typo!.message, /^unknown option 'gama' \(did you mean 'gamma'\?\)$/);
  t.true(hasErrorCode(typo, ERROR_CODES.invalidArgument));
  const text = await t.throwsAsync(Trainer.create({ classNames, lr: '0.01' } as never));
  t.is(text!.message, "lr: expected a number, got the string '0.01'");
  t.true(hasErrorCode(text, ERROR_CODES.invalidArgument));
  const run = await t.throwsAsync(
    runTraining({ epochs: 1, batchSise: 8 } as never, { data: await smallMnist(40, 20) }),
  );
  t.regex(run!.message, /^unknown option 'batchSise' \(did you mean 'batchSize'\?\)$/);
  t.is(ERROR_CODES.invalidArgument, 'ERR_TORCHFOCAL_INVALID_ARGUMENT');
});

test('a class-aware sampler with a re-weighting loss gets a warning', async (t) => {
  const { dir } = await smallIdxFolder();
  const out = path.join(tempDir(), 'run');
  const alpha = '1,1,1,1,1,1,100,1,1,1';
  const r = await runCli(
    quickTrainArgs(
      dir,
      out,
      '--epochs',
      '1',
      '--sampler',
      'class-balanced',
      '--loss',
      'focal',
      '--alpha',
      alpha,
    ),
  );
  t.is(r.code, 0, r.stderr);
  t.regex(
    r.stderr,
    /torchfocal: warning: sampler 'class-balanced' already evens the classes out and alpha 1,1,1,1,1,1,100,1,1,1 re-weights them: the imbalance is corrected twice/,
  );
  const single = await runCli(
    quickTrainArgs(
      dir,
      path.join(tempDir(), 'run'),
      '--epochs',
      '1',
      '--sampler',
      'class-balanced',
    ),
  );
  t.notRegex(single.stderr, /corrected twice/);
});

test('Ctrl-C while an image folder loads stops within a second and writes nothing', async (t) => {
  const sharp = (await import('sharp')).default;
  const root = tempDir();
  // Noise does not compress: each 512×512 PNG takes milliseconds to decode, 1200 take seconds.
  const noise = Buffer.from(Array.from({ length: 512 * 512 }, (_, i) => (i * 7919) % 251));
  for (const split of ['training', 'testing']) {
    for (const c of ['a', 'b']) {
      const dir = path.join(root, split, c);
      fs.mkdirSync(dir, { recursive: true });
      const first = path.join(dir, '0.png');
      await sharp(noise, { raw: { width: 512, height: 512, channels: 1 } })
        .png()
        .toFile(first);
      for (let i = 1; i < (split === 'training' ? 600 : 2); i++) {
        fs.copyFileSync(first, path.join(dir, `${i}.png`));
      }
    }
  }
  const out = path.join(tempDir(), 'run');
  const child = spawn(
    process.execPath,
    [CLI, 'train', '--dataset', root, '--model', 'mlp', '--out', out],
    {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let stderr = '';
  let said: number | undefined; // when it said it stopped: process teardown comes after
  child.stderr.on('data', (d) => {
    stderr += d;
    said ??= stderr.includes('interrupted') ? Date.now() : undefined;
  });
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
  // Started: the run folder (made with its lock, after the signal handlers and before the
  // data) exists; then decoding. A fixed delay from the spawn was too short on a loaded machine
  // (LibTorch 2.6 loads slowly), where the signal came before the handlers.
  const deadline = Date.now() + 60_000;
  while (!fs.existsSync(out) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  await new Promise((r) => setTimeout(r, 500));
  const sent = Date.now();
  child.kill('SIGINT');
  const code = await exited;
  const took = (said ?? Infinity) - sent;
  t.is(code, 130, stderr);
  t.true(took < 1000, `stopped ${took} ms after Ctrl-C`);
  t.is(stderr, 'torchfocal: interrupted while loading the data: nothing was written\n');
  t.false(fs.existsSync(path.join(out, 'config.json')));
});
