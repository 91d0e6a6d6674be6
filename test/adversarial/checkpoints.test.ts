// The checkpoint attack kept (issue 16): one writer per run folder, readers that never disturb a
// live writer, a stale lock taken over, an uncreatable --out refused before training, the
// temporary files of killed writes cleaned, disk-full and symlinked-config messages.
//
// The full form of the reader case (a reader every 5 ms for 30 s, 5 trials) is this file run
// with TORCHFOCAL_READER_EPOCHS=60 TORCHFOCAL_READER_TRIALS=5, of the two writers with
// TORCHFOCAL_WRITER_TRIALS=20.
import test from 'ava';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CLI, ROOT, runCli, runProcess, tempDir } from '../helpers/cli';
import { commitCheckpoint, openCheckpoint } from '../../ts/train/checkpoint';
import { Trainer } from '../../ts/train/trainer';
import { acquireRunLock, LOCK_FILE, writeLockFile } from '../../ts/train/run-lock';

const LOCK_MODULE = path.join(__dirname, '..', '..', 'ts', 'train', 'run-lock.js');
// MLP on full MNIST, one thread: ~0.5 s an epoch.
const train = (out: string, epochs: number, ...extra: string[]) =>
  runCli([
    'train',
    '--model',
    'mlp',
    '--epochs',
    String(epochs),
    '--threads',
    '1',
    '--json',
    '--out',
    out,
    ...extra,
  ]);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A process that has exited: its pid is free (for a while) on this host. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', '0']);
  const pid = child.pid!;
  await new Promise((r) => child.on('close', r));
  return pid;
}

test('two processes take one run lock at once: exactly one gets it, 20 trials out of 20', async (t) => {
  // Each child loads the module, says 'ready', and on 'go' (sent to both once both are ready,
  // so that they try within a millisecond of each other, whatever their start-up took) takes
  // the lock, holds it 300 ms and says what happened.
  const script = `
    const { acquireRunLock } = require(${JSON.stringify(LOCK_MODULE)});
    process.stdin.once('data', () => acquireRunLock(process.argv[1]).then(
      (lock) => setTimeout(() => { lock.release(); console.log('held'); process.exit(0); }, 300),
      (err) => { console.log('refused ' + err.message); process.exit(1); }));
    console.log('ready');`;
  const contender = (dir: string) => {
    const child = spawn(process.execPath, ['-e', script, dir], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    let out = '';
    const ready = new Promise<void>((resolve) =>
      child.stdout.on('data', (d) => {
        out += d;
        if (out.startsWith('ready\n')) resolve();
      }),
    );
    const done = new Promise<string>((resolve) =>
      child.on('close', () => resolve(out.slice('ready\n'.length).trim())),
    );
    return { child, ready, done };
  };
  let won = 0;
  for (let trial = 0; trial < 20; trial++) {
    const dir = path.join(tempDir(), 'run');
    const pair = [contender(dir), contender(dir)];
    await Promise.all(pair.map((c) => c.ready));
    for (const c of pair) c.child.stdin.write('go\n');
    const outcomes = (await Promise.all(pair.map((c) => c.done))).sort();
    t.is(outcomes[0], 'held', `trial ${trial}: ${outcomes.join(' / ')}`);
    // the lock appears with its holder's line in it: the loser can always name the holder
    t.regex(outcomes[1], /^refused .* is being written by process \d+ on this host/);
    t.false(fs.existsSync(path.join(dir, LOCK_FILE)), 'released at exit');
    won += outcomes[0] === 'held' && outcomes[1].startsWith('refused') ? 1 : 0;
  }
  t.is(won, 20);
});

test('a lock is released on process.exit, and a SIGKILLed holder leaves one the next run takes over', async (t) => {
  const dir = path.join(tempDir(), 'run');
  const exits = `require(${JSON.stringify(LOCK_MODULE)}).acquireRunLock(process.argv[1]).then(() => process.exit(3))`;
  t.is((await runProcess(process.execPath, ['-e', exits, dir])).code, 3);
  t.false(fs.existsSync(path.join(dir, LOCK_FILE)));
  const killed = `require(${JSON.stringify(LOCK_MODULE)}).acquireRunLock(process.argv[1]).then(() => process.kill(process.pid, 'SIGKILL'))`;
  t.is((await runProcess(process.execPath, ['-e', killed, dir])).signal, 'SIGKILL');
  t.true(fs.existsSync(path.join(dir, LOCK_FILE)), 'a SIGKILL leaves its lock');
  const warnings: string[] = [];
  const lock = await acquireRunLock(dir, (m) => warnings.push(m));
  t.regex(warnings.join('\n'), /took over the lock of process \d+ .*no longer running/);
  // held by this process now: a second taker (even here) is refused
  await t.throwsAsync(acquireRunLock(dir), { message: /is being written by process/ });
  lock.release();
  t.false(fs.existsSync(path.join(dir, LOCK_FILE)));
});

test('a lock of another host is refused with its holder named, never taken over', async (t) => {
  const dir = tempDir();
  writeLockFile(dir, {
    pid: await deadPid(),
    host: 'elsewhere.example',
    started: '2026-01-01T00:00:00Z',
  });
  await t.throwsAsync(acquireRunLock(dir), {
    message: /locked by process \d+ on host elsewhere\.example \(since 2026-01-01T00:00:00Z\)/,
  });
  t.true(fs.existsSync(path.join(dir, LOCK_FILE)));
});

test('a live pid that started after the lock was taken is a reused pid: its lock is stale', async (t) => {
  // A process alive now, started just now: it cannot have taken a lock dated an hour ago.
  const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 20000)']);
  t.teardown(() => child.kill());
  await sleep(200);
  const dir = tempDir();
  const host = os.hostname();
  writeLockFile(dir, {
    pid: child.pid!,
    host,
    started: new Date(Date.now() - 3_600_000).toISOString(),
  });
  const warnings: string[] = [];
  const lock = await acquireRunLock(dir, (m) => warnings.push(m));
  t.regex(warnings.join('\n'), new RegExp(`took over the lock of process ${child.pid} `));
  lock.release();
  // The same pid with a lock taken after it started is the holder: refused.
  writeLockFile(dir, { pid: child.pid!, host, started: new Date().toISOString() });
  await t.throwsAsync(acquireRunLock(dir), {
    message: new RegExp(`is being written by process ${child.pid} on this host`),
  });
});

test('Trainer.save (the API) takes the run lock: refused while another process trains there', async (t) => {
  const dir = path.join(tempDir(), 'run');
  // A child holds the folder's lock as a training run would, until told to go.
  const holder = spawn(
    process.execPath,
    [
      '-e',
      `require(${JSON.stringify(LOCK_MODULE)}).acquireRunLock(process.argv[1]).then((lock) => {
        console.log('held');
        process.stdin.once('data', () => { lock.release(); process.exit(0); });
      });`,
      dir,
    ],
    { stdio: ['pipe', 'pipe', 'inherit'] },
  );
  await new Promise((r) => holder.stdout.once('data', r));
  const trainer = await Trainer.create({ model: 'mlp', classNames: ['a', 'b'], threads: 1 });
  try {
    await t.throwsAsync(trainer.save(dir), {
      message: new RegExp(`is being written by process ${holder.pid} on this host`),
    });
    t.false(fs.existsSync(path.join(dir, 'config.json')), 'nothing written');
    holder.stdin.write('go\n');
    await new Promise((r) => holder.on('close', r));
    await trainer.save(dir);
    t.is((await openCheckpoint(dir)).config.epochsDone, 0);
    t.false(fs.existsSync(path.join(dir, LOCK_FILE)), 'its own lock is released after the write');
  } finally {
    trainer.dispose();
  }
});

test('processes started in the same second get distinct default run folders; an unused one is removed at exit', async (t) => {
  const base = path.join(tempDir(), 'runs', 'mlp-ce-20261205-120000');
  // Each child claims a folder, writes into it when told to (so that it stays), prints its name.
  const script = `
    const fs = require('node:fs');
    require(${JSON.stringify(LOCK_MODULE)}).claimFreshDir(process.argv[1]).then((dir) => {
      if (process.argv[2] === 'write') fs.writeFileSync(dir + '/x', '');
      console.log(dir);
    });`;
  const claim = (write: boolean) =>
    runProcess(process.execPath, ['-e', script, base, write ? 'write' : 'none']);
  const dirs = (await Promise.all(Array.from({ length: 8 }, () => claim(true)))).map((r) =>
    r.stdout.trim(),
  );
  t.is(new Set(dirs).size, 8, dirs.join(' '));
  for (const d of dirs) t.regex(d, /mlp-ce-20261205-120000(-[2-8])?$/);
  const unused = (await claim(false)).stdout.trim();
  t.regex(unused, /-9$/);
  t.false(fs.existsSync(unused), 'the empty one is gone');
  t.true(dirs.every((d) => fs.existsSync(d)));
});

const WRITER_TRIALS = Number(process.env.TORCHFOCAL_WRITER_TRIALS ?? 3);

test.serial(
  `two \`train --out D\` at once: the second is refused in one line, the first finishes (${WRITER_TRIALS} trials)`,
  async (t) => {
    for (let trial = 0; trial < WRITER_TRIALS; trial++) {
      const out = path.join(tempDir(), 'run');
      const first = train(out, 3);
      await sleep((trial % 4) * 150); // at once, and a little apart
      const second = await train(out, 3);
      const done = await first;
      const [winner, loser] = done.code === 0 ? [done, second] : [second, done];
      t.is(winner.code, 0, winner.stderr);
      t.not(loser.code, 0);
      const lines = loser.stderr.trim().split('\n');
      t.is(lines.length, 1, loser.stderr);
      t.regex(lines[0], /is being written by process \d+ on this host/);
      t.is(loser.stdout, '', 'the refused run trained nothing');
      const opened = await openCheckpoint(out);
      t.is(opened.config.epochsDone, 3);
      t.is(opened.warning, undefined);
      t.false(fs.existsSync(path.join(out, LOCK_FILE)));
    }
  },
);

test.serial('`train --resume` of a folder being trained is refused; the run goes on', async (t) => {
  const out = path.join(tempDir(), 'run');
  const child = spawn(
    process.execPath,
    [CLI, 'train', '--model', 'mlp', '--epochs', '4', '--threads', '1', '--json', '--out', out],
    {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const closed = new Promise<number | null>((r) => child.on('close', r));
  // after its first checkpoint
  await new Promise<void>((r) =>
    child.stdout.on('data', (d) => /"event":"epoch"/.test(String(d)) && r()),
  );
  const resume = await runCli(['train', '--out', out, '--resume', '--epochs', '6', '--json']);
  t.not(resume.code, 0);
  t.regex(resume.stderr, /is being written by process \d+/);
  t.is(await closed, 0);
  t.is((await openCheckpoint(out)).config.epochsDone, 4);
});

const READER_EPOCHS = Number(process.env.TORCHFOCAL_READER_EPOCHS ?? 8);
const READER_TRIALS = Number(process.env.TORCHFOCAL_READER_TRIALS ?? 1);

test.serial(
  `a reader polling every 5 ms never disturbs a live writer nor reports damage (${READER_TRIALS} trial(s), ${READER_EPOCHS} epochs)`,
  async (t) => {
    t.timeout(READER_TRIALS * (READER_EPOCHS * 2_000 + 60_000));
    for (let trial = 0; trial < READER_TRIALS; trial++) {
      const out = path.join(tempDir(), 'run');
      const writer = train(out, READER_EPOCHS);
      let finished = false;
      void writer.then(() => (finished = true));
      let reads = 0;
      let opened = 0;
      const problems: string[] = [];
      const started = Date.now();
      while (!finished) {
        reads++;
        try {
          const c = await openCheckpoint(out);
          opened++;
          if (c.warning) problems.push(`warning: ${c.warning}`);
        } catch (err) {
          const message = (err as Error).message;
          if (!/not a torchfocal checkpoint/.test(message)) problems.push(message);
        }
        await sleep(5);
      }
      const done = await writer;
      t.log(
        `trial ${trial}: ${reads} reads (${opened} opened) in ${((Date.now() - started) / 1000).toFixed(1)} s, writer exit ${done.code}, ${problems.length} problem(s)`,
      );
      t.is(done.code, 0, done.stderr);
      t.deepEqual(problems.slice(0, 5), []);
      t.true(opened > 0);
      t.is((await openCheckpoint(out)).config.epochsDone, READER_EPOCHS);
    }
  },
);

test.serial(
  'a checkpoint left mid-commit is read as its new set without touching the folder',
  async (t) => {
    const out = path.join(tempDir(), 'run');
    t.is((await train(out, 2)).code, 0);
    // A commit that died after moving the current config aside: plain config gone, .next whole.
    const at = (n: string) => path.join(out, n);
    for (const n of [
      'config.json',
      'model.safetensors',
      'train-state.safetensors',
      'metrics.jsonl',
    ]) {
      fs.copyFileSync(at(n), at(n + '.next'));
    }
    fs.renameSync(at('config.json'), at('config.json.prev'));
    fs.renameSync(at('model.safetensors'), at('model.safetensors.prev'));
    const before = fs.readdirSync(out).sort();
    fs.chmodSync(out, 0o555);
    try {
      const opened = await openCheckpoint(out);
      t.is(opened.warning, undefined);
      t.is(opened.config.epochsDone, 2);
      t.deepEqual(fs.readdirSync(out).sort(), before, 'a reader renames nothing');
      const evaluated = await runCli(['eval', '--checkpoint', out, '--json']);
      t.is(evaluated.code, 0, evaluated.stderr);
      t.deepEqual(fs.readdirSync(out).sort(), before);
    } finally {
      fs.chmodSync(out, 0o755);
    }
    // The next writer, holding the lock, rolls it forward and cleans killed writes' temp files.
    fs.writeFileSync(at('config.json.next.123456789'), 'partial');
    fs.writeFileSync(at('model.safetensors.next.42'), 'partial');
    const resumed = await runCli(['train', '--out', out, '--resume', '--epochs', '3', '--json']);
    t.is(resumed.code, 0, resumed.stderr);
    const left = fs.readdirSync(out);
    t.deepEqual(
      left.filter((n) => /\.\d+$/.test(n)),
      [],
      left.join(' '),
    );
    t.is((await openCheckpoint(out)).config.epochsDone, 3);
  },
);

test.serial('a stale lock of a killed run is taken over with a warning', async (t) => {
  const out = path.join(tempDir(), 'run');
  fs.mkdirSync(out);
  const pid = await deadPid();
  writeLockFile(out, { pid, host: os.hostname(), started: '2026-01-01T00:00:00Z' });
  const r = await train(out, 1);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stderr, new RegExp(`took over the lock of process ${pid}`));
  t.false(fs.existsSync(path.join(out, LOCK_FILE)));
});

test('`train --out /proc/foo/bar` is refused in one line before training', async (t) => {
  const started = Date.now();
  const r = await runCli(
    ['train', '--model', 'mlp', '--epochs', '1', '--threads', '1', '--out', '/proc/foo/bar'],
    {
      shell: 'exec timeout -s KILL 60 "$@"',
    },
  );
  t.not(r.code, 0);
  t.is(r.signal, null);
  const lines = r.stderr.trim().split('\n');
  t.is(lines.length, 1, r.stderr);
  t.regex(lines[0], /\/proc\/foo\/bar: cannot create this folder/);
  t.true(Date.now() - started < 30_000);
});

test('disk full while committing names the file and says how to resume; the last checkpoint stays', async (t) => {
  const dir = tempDir();
  const config = {
    format: 'torchfocal-checkpoint',
    version: 2,
    options: {},
    inputSize: 784,
  } as never;
  const writeOk = async (_f: string, to: string) => fs.promises.writeFile(to, 'x');
  await commitCheckpoint(dir, { ...(config as object), epochsDone: 1 } as never, writeOk);
  const err = await t.throwsAsync(
    commitCheckpoint(dir, { ...(config as object), epochsDone: 2 } as never, async (f, to) => {
      if (f === 'state')
        throw Object.assign(new Error('ENOSPC: no space left on device, write'), {
          code: 'ENOSPC',
        });
      await writeOk(f, to);
    }),
  );
  t.regex(
    err!.message,
    /train-state\.safetensors\.next: no space left on the device .*kept: free some space and continue the run with --resume/,
  );
  t.is((await openCheckpoint(dir)).config.epochsDone, 1);
});

test('a config.json that is a symlink, or not JSON, never has its contents printed', async (t) => {
  const dir = tempDir();
  const secret = path.join(tempDir(), 'secret.txt');
  fs.writeFileSync(secret, 'root:x:0:0:TOPSECRET\n');
  fs.symlinkSync(secret, path.join(dir, 'config.json'));
  const linked = await t.throwsAsync(openCheckpoint(dir));
  t.notRegex(linked!.message, /TOPSECRET|root:x/);
  t.regex(linked!.message, /symbolic link/);
  fs.unlinkSync(path.join(dir, 'config.json'));
  fs.copyFileSync(secret, path.join(dir, 'config.json'));
  const copied = await t.throwsAsync(openCheckpoint(dir));
  t.notRegex(copied!.message, /TOPSECRET|root:x/);
  t.regex(copied!.message, /not valid JSON/);
});
