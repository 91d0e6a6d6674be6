// Resumable runs: a run killed with SIGKILL at random moments (mid-epoch, mid-checkpoint) and
// resumed ends with the per-epoch losses of an uninterrupted run; damaged checkpoints are
// detected and the previous one is used; Ctrl-C stops cleanly and says how to resume.
import test from 'ava';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { CLI, ROOT, runCli, tempDir } from './helpers/cli';

// MLP on full MNIST, one thread: deterministic, ~0.5 s an epoch.
const RUN = ['train', '--model', 'mlp', '--epochs', '6', '--threads', '1', '--json'];

const losses = (dir: string): number[] =>
  fs
    .readFileSync(path.join(dir, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l).loss);

/** Starts a run and SIGKILLs it `delayMs` after its `afterEpochs`-th epoch line. */
function killDuring(out: string, afterEpochs: number, delayMs: number, run = RUN): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...run, '--out', out], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    let seen = 0;
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      seen += (d.match(/"event":"epoch"/g) ?? []).length;
      if (seen >= afterEpochs) setTimeout(() => child.kill('SIGKILL'), delayMs);
    });
    child.on('error', reject);
    child.on('close', () => resolve());
  });
}

test.serial(
  'SIGKILL at five random moments, then --resume: the same losses as an uninterrupted run',
  async (t) => {
    const whole = tempDir();
    const base = await runCli([...RUN, '--out', whole]);
    t.is(base.code, 0, base.stderr);
    const expected = losses(whole);
    t.is(expected.length, 6);
    for (let k = 1; k <= 5; k++) {
      const out = tempDir();
      const delay = Math.floor(Math.random() * 450);
      await killDuring(out, k, delay);
      const resumed = await runCli([...RUN, '--out', out, '--resume']);
      t.is(resumed.code, 0, `killed ${delay} ms after epoch ${k}: ${resumed.stderr}`);
      // bitwise: the maths is deterministic at one thread, and the shuffle of epoch e is a pure
      // function of (seed, e)
      t.deepEqual(losses(out), expected, `killed ${delay} ms after epoch line ${k}`);
    }
  },
);

test.serial(
  'with --augment crop:4,flip: SIGKILL at random moments, then --resume, gives the uninterrupted losses bitwise',
  async (t) => {
    const run = [...RUN.slice(0, 4), '4', ...RUN.slice(5), '--augment', 'crop:4,flip'];
    const whole = tempDir();
    const base = await runCli([...run, '--out', whole]);
    t.is(base.code, 0, base.stderr);
    const expected = losses(whole);
    t.is(expected.length, 4);
    // the augmentation changes what is trained on: the losses are not the plain run's
    const plain = tempDir();
    t.is((await runCli([...run.slice(0, -2), '--out', plain])).code, 0);
    t.notDeepEqual(losses(plain), expected);
    for (let k = 1; k <= 3; k++) {
      const out = tempDir();
      const delay = Math.floor(Math.random() * 450);
      await killDuring(out, k, delay, run);
      const resumed = await runCli([...run, '--out', out, '--resume']);
      t.is(resumed.code, 0, `killed ${delay} ms after epoch ${k}: ${resumed.stderr}`);
      // the crops and flips come from the trainer's random stream, which the checkpoint keeps
      t.deepEqual(losses(out), expected, `killed ${delay} ms after epoch line ${k}`);
    }
  },
);

test.serial(
  'a damaged checkpoint is detected and the previous one is used; both damaged is an error',
  async (t) => {
    const out = tempDir();
    t.is(
      (await runCli(['train', '--model', 'mlp', '--epochs', '2', '--threads', '1', '--out', out]))
        .code,
      0,
    );
    const weights = path.join(out, 'model.safetensors');
    const bytes = fs.readFileSync(weights);
    bytes[bytes.length - 3] ^= 0x55; // one flipped bit pattern, same size
    fs.writeFileSync(weights, bytes);
    const r = await runCli(['eval', '--checkpoint', out, '--json']);
    t.is(r.code, 0, r.stderr);
    t.regex(
      r.stderr,
      /model\.safetensors does not match its SHA-256 in the manifest\); using the previous one \(epoch 1\)/,
    );
    t.true(JSON.parse(r.stdout).accuracy > 0.8);
    fs.truncateSync(path.join(out, 'train-state.safetensors.prev'), 10);
    const both = await runCli(['eval', '--checkpoint', out]);
    t.is(both.code, 1);
    t.is(both.stderr.trim().split('\n').length, 1);
    t.regex(both.stderr, /no intact checkpoint \(model\.safetensors does not match its SHA-256/);
  },
);

test.serial(
  'Ctrl-C mid-epoch checkpoints that step; --resume continues it to the uninterrupted losses',
  async (t) => {
    const whole = tempDir();
    t.is((await runCli([...RUN, '--out', whole])).code, 0);
    const out = tempDir();
    const code = await new Promise<number | null>((resolve) => {
      const child = spawn(process.execPath, [CLI, ...RUN, '--out', out], {
        cwd: ROOT,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stderr = '';
      let sent = false;
      child.stderr.on('data', (d) => (stderr += d));
      // In the middle of the next epoch: once the first epoch's checkpoint is written (a timer
      // from its epoch line alone could fire while that checkpoint is still being written, on a
      // loaded machine), then 100-250 ms into the next epoch's 469 steps (~0.5 s an epoch).
      const interruptAfterCheckpoint = (): void => {
        let written = false;
        try {
          written =
            JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')).epochsDone >= 1;
        } catch {
          // not written yet
        }
        if (written) setTimeout(() => child.kill('SIGINT'), 100 + Math.floor(Math.random() * 150));
        else setTimeout(interruptAfterCheckpoint, 10);
      };
      child.stdout.setEncoding('utf8').on('data', (d: string) => {
        if (!sent && d.includes('"event":"epoch"')) {
          sent = true;
          interruptAfterCheckpoint();
        }
      });
      child.on('close', (c) => {
        t.regex(
          stderr,
          /interrupted; .* holds the run up to its last finished step: continue with node dist\/ts\/cli\/main\.js train --out .* --resume --epochs 6/,
        );
        t.is(stderr.trim().split('\n').length, 1);
        resolve(c);
      });
    });
    t.is(code, 130);
    const config = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8'));
    t.log(`interrupted at epoch ${config.partialEpoch?.epoch}, step ${config.partialEpoch?.step}`);
    t.is(
      config.partialEpoch?.epoch,
      config.epochsDone,
      'the checkpoint holds the interrupted epoch',
    );
    t.true(config.partialEpoch.step > 0 && config.partialEpoch.step < 469);
    const resumed = await runCli([...RUN, '--out', out, '--resume']);
    t.is(resumed.code, 0, resumed.stderr);
    t.deepEqual(losses(out), losses(whole));
  },
);

test('--resume without a checkpoint is a clear error', async (t) => {
  const r = await runCli(['train', '--model', 'mlp', '--resume', '--out', tempDir()]);
  t.is(r.code, 1);
  t.regex(r.stderr, /^torchfocal: --resume: .* not a torchfocal checkpoint \(no config\.json\)\n$/);
  const none = await runCli(['train', '--resume']);
  t.regex(none.stderr, /--resume needs --out DIR/);
});

test('a non-finite loss stops the run naming epoch and step, or is skipped and counted', async (t) => {
  const out = tempDir();
  const diverging = ['train', '--model', 'mlp', '--lr', '1e12', '--epochs', '1'];
  const stop = await runCli([...diverging, '--out', out]);
  t.is(stop.code, 1);
  t.regex(
    stop.stderr,
    /^torchfocal: trainEpoch: the loss is NaN at epoch 0, step \d+ of 469 \(weights left as after the step before; the last checkpoint is intact\): lower --lr, or pass --on-nan skip\n$/,
  );
  t.false(fs.existsSync(path.join(out, 'config.json')), 'no checkpoint of a broken epoch');
  const skip = await runCli([...diverging, '--on-nan', 'skip', '--json', '--out', tempDir()]);
  t.is(skip.code, 0, skip.stderr);
  const epoch = JSON.parse(skip.stdout.split('\n')[0]);
  t.true(epoch.skippedSteps > 0 && epoch.skippedSteps <= 469, String(epoch.skippedSteps));
});

test('an image folder with an unreadable file trains; the report and checkpoint count the skip', async (t) => {
  const sharp = (await import('sharp')).default;
  const root = tempDir();
  for (const split of ['training', 'testing']) {
    for (const [c, base] of [
      ['a', 20],
      ['b', 200],
    ] as const) {
      const dir = path.join(root, split, c);
      fs.mkdirSync(dir, { recursive: true });
      for (let i = 0; i < 6; i++) {
        await sharp(Buffer.alloc(28 * 28, base + i), {
          raw: { width: 28, height: 28, channels: 1 },
        })
          .png()
          .toFile(path.join(dir, `${i}.png`));
      }
    }
  }
  fs.writeFileSync(path.join(root, 'training', 'a', 'broken.png'), 'not a png');
  fs.writeFileSync(path.join(root, 'training', 'b', 'zero.png'), '');
  const out = tempDir();
  const r = await runCli([
    'train',
    '--model',
    'mlp',
    '--dataset',
    root,
    '--epochs',
    '1',
    '--out',
    out,
  ]);
  t.is(r.code, 0, r.stderr);
  const report = JSON.parse(fs.readFileSync(path.join(out, 'report.json'), 'utf8'));
  t.deepEqual(report.skipped.map((s: { file: string }) => path.relative(root, s.file)).sort(), [
    'training/a/broken.png',
    'training/b/zero.png',
  ]);
  t.regex(
    fs.readFileSync(path.join(out, 'report.md'), 'utf8'),
    /2 file\(s\) of the dataset were left out as unreadable/,
  );
  t.is(JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')).data.skippedFiles, 2);
  // and the terminal says so in one line, naming the first files and why
  const warnings = r.stderr.split('\n').filter((l) => l.startsWith('torchfocal: warning:'));
  t.is(warnings.length, 1, r.stderr);
  t.regex(
    warnings[0],
    /2 file\(s\) of .* could not be read and were left out: broken\.png \(.+\), zero\.png \(empty file\) \(all listed in .*report\.json\)$/,
  );
});
