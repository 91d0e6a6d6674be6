// Data-parallel training over c10d (Gloo on loopback): two ranks equal one process with their
// combined batch, a rank that dies stops the run with its name, and ranks set up differently
// refuse to start.
import test from 'ava';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { freePort } from '../ts/cli/launch';
import { openCheckpoint, readSafetensors } from '../ts/index';
import { CLI, jsonLines, runCli, tempDir } from './helpers/cli';
import { smallIdxFolder } from './helpers/mnist';

async function weights(dir: string): Promise<Map<string, Float32Array>> {
  const file = await readSafetensors(path.join(dir, 'model.safetensors'));
  return new Map(
    file.tensors.map((t) => {
      const b = t.data as Uint8Array;
      return [t.name, new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength))];
    }),
  );
}

// The largest difference between two checkpoints' tensors, each relative to the tensor's own
// scale (running variances grow large; weights stay near 1).
function maxDifference(a: Map<string, Float32Array>, b: Map<string, Float32Array>): number {
  let max = 0;
  for (const [name, x] of a) {
    const y = b.get(name)!;
    let diff = 0;
    let scale = 1;
    for (let i = 0; i < x.length; i++) {
      diff = Math.max(diff, Math.abs(x[i] - y[i]));
      scale = Math.max(scale, Math.abs(y[i]));
    }
    max = Math.max(max, diff / scale);
  }
  return max;
}

test('two ranks of batch 64 train LeNet to the weights of one process with batch 128', async (t) => {
  const { dir } = await smallIdxFolder();
  const run = async (extra: string[], seed = 3) => {
    const out = tempDir();
    const common = ['--dataset', dir, '--epochs', '1', '--threads', '1', '--json'];
    const r = await runCli(['train', ...common, '--seed', String(seed), '--out', out, ...extra]);
    t.is(r.code, 0, r.stderr);
    // channels-last gradient views: LibTorch's layout warning has no cause (issue 16)
    t.false(r.stderr.includes('gradient layout contract'), r.stderr);
    return { out, loss: jsonLines(r.stdout)[0].loss as number };
  };
  const two = await run(['--nproc', '2', '--batch-size', '64']);
  // 50 KiB buckets: LeNet's 247 kB of gradients in 4 sums, started during backward
  const bucketed = await run(['--nproc', '2', '--batch-size', '64', '--bucket-mb', '0.05']);
  const one = await run(['--batch-size', '128']);
  const otherSeed = await run(['--batch-size', '128'], 4);
  const [w2, wb, w1, w4] = await Promise.all(
    [two.out, bucketed.out, one.out, otherSeed.out].map(weights),
  );
  const same = maxDifference(w2, w1);
  const sameBucketed = maxDifference(wb, w1);
  const apart = maxDifference(w1, w4);
  t.log(
    `max |w(2 ranks x 64) - w(1 x 128)| = ${same.toExponential(2)} (4 buckets: ${sameBucketed.toExponential(2)}); another seed: ${apart.toFixed(3)}`,
  );
  t.true(same < 1e-5, `${same}`);
  t.true(sameBucketed < 1e-5, `${sameBucketed}`);
  t.true(apart > 0.05, `${apart}`);
  t.true(Math.abs(two.loss - one.loss) < 1e-5, `${two.loss} vs ${one.loss}`);
  // Only rank 0 wrote: one checkpoint, with the world size recorded in its options.
  const { config } = await openCheckpoint(two.out);
  t.is(config.options.distributed?.worldSize, 2);
});

test('a rank killed mid-run stops the others with an error naming it; the checkpoint is intact', async (t) => {
  const out = tempDir();
  const child = spawn(
    process.execPath,
    [CLI, 'train', '--nproc', '2', '--epochs', '5', '--dist-timeout', '10', '--out', out, '--json'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stdout = '';
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const started = Date.now();
  let killedAt = 0;
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
  await new Promise<void>((resolve) => {
    child.stdout.on('data', (d) => {
      stdout += d;
      if (killedAt || !stdout.includes('"event":"epoch"')) return;
      // Rank 1: the launcher's child whose environment says RANK=1.
      const pids = execFileSync('ps', ['-o', 'pid=', '--ppid', String(child.pid)], {
        encoding: 'utf8',
      })
        .split('\n')
        .map((s) => s.trim())
        .filter(Boolean);
      const rank1 = pids.find((pid) =>
        fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').includes('RANK=1'),
      );
      process.kill(Number(rank1), 'SIGKILL');
      killedAt = Date.now();
      resolve();
    });
  });
  const code = await exited;
  const stopSeconds = (Date.now() - killedAt) / 1000;
  t.log(
    `first epoch after ${(killedAt - started) / 1000} s; the run stopped ${stopSeconds} s after the kill`,
  );
  t.is(code, 1, stderr);
  t.true(stopSeconds < 20, `${stopSeconds} s`);
  const lines = stderr.trim().split('\n');
  t.is(
    lines[lines.length - 1],
    'torchfocal: rank 1 of 2 was killed by SIGKILL; the other ranks were stopped',
  );
  const { config } = await openCheckpoint(out);
  t.true(config.epochsDone >= 1);
});

/** Rank `r` of 2, started by hand as torchrun would, training `dir` with `extra` options. */
function handStartedRank(r: number, port: number, dir: string, extra: string[]) {
  return runCli(
    [
      'train',
      '--dataset',
      dir,
      '--threads',
      '1',
      '--out',
      tempDir(),
      '--dist-timeout',
      '20',
    ].concat(extra),
    {
      env: {
        WORLD_SIZE: '2',
        RANK: String(r),
        MASTER_ADDR: '127.0.0.1',
        MASTER_PORT: String(port),
      },
    },
  );
}

test('ranks configured differently refuse to start, naming the rank and the setting', async (t) => {
  const { dir } = await smallIdxFolder();
  const port = await freePort();
  const rank = (r: number, batch: number) =>
    handStartedRank(r, port, dir, ['--epochs', '1', '--batch-size', String(batch)]);
  const [r0, r1] = await Promise.all([rank(0, 64), rank(1, 32)]);
  const expected =
    "rank 1's configuration differs from rank 0's: batch_size=32 against batch_size=64";
  for (const r of [r0, r1]) {
    t.is(r.code, 1, r.stderr);
    t.is(r.stderr.trim().split('\n').length, 1, r.stderr);
    t.true(r.stderr.includes(expected), r.stderr);
  }
});

test('ranks started with different --epochs refuse to start, naming the setting', async (t) => {
  const { dir } = await smallIdxFolder();
  const port = await freePort();
  const rank = (r: number, epochs: number) =>
    handStartedRank(r, port, dir, ['--epochs', String(epochs)]);
  const [r0, r1] = await Promise.all([rank(0, 1), rank(1, 2)]);
  const expected = "rank 1's configuration differs from rank 0's: epochs=2 against epochs=1";
  for (const r of [r0, r1]) {
    t.is(r.code, 1, r.stderr);
    t.true(r.stderr.includes(expected), r.stderr);
  }
});

// A few SGD steps on 96 images: long enough to move every weight and running statistic, short
// enough that float noise cannot grow into a difference of its own.
test('--sync-bn: two ResNet ranks of batch 16 match one process of batch 32; per-rank statistics do not', async (t) => {
  const { dir } = await smallIdxFolder(625, 100);
  const run = async (extra: string[]) => {
    const out = tempDir();
    const args = ['--dataset', dir, '--model', 'resnet', '--width-divisor', '16', '--epochs', '1'];
    // One layout for all: channels-last and contiguous batch norm differ by float noise that
    // these steps already amplify (synchronised statistics are computed in NCHW order).
    const sgd = ['--optimizer', 'sgd', '--lr', '0.05', '--memory-format', 'contiguous'];
    const r = await runCli([
      'train',
      ...args,
      ...sgd,
      '--threads',
      '1',
      '--out',
      out,
      '--json',
      ...extra,
    ]);
    t.is(r.code, 0, r.stderr);
    return weights(out);
  };
  const one = await run(['--batch-size', '32']);
  const synced = await run(['--nproc', '2', '--batch-size', '16', '--sync-bn']);
  const local = await run(['--nproc', '2', '--batch-size', '16']);
  // The float noise of these steps: LibTorch's own batch norm in the other memory layout.
  const otherLayout = await run(['--batch-size', '32', '--memory-format', 'channels-last']);
  const same = maxDifference(synced, one);
  const apart = maxDifference(local, one);
  const noise = maxDifference(otherLayout, one);
  t.log(
    `relative max |w - w(1 x 32)|: --sync-bn ${same.toExponential(2)}, per-rank ` +
      `${apart.toExponential(2)}, LibTorch channels-last ${noise.toExponential(2)}`,
  );
  t.true(same < 2e-3, `${same}`);
  t.true(apart > 20 * same, `${apart} vs ${same}`);
});

test('a distributed run resumes with the same number of ranks, and says so when not', async (t) => {
  const { dir } = await smallIdxFolder(60, 100);
  const out = tempDir();
  const args = ['train', '--dataset', dir, '--threads', '1', '--out', out, '--json'];
  const first = await runCli([...args, '--nproc', '2', '--epochs', '1']);
  t.is(first.code, 0, first.stderr);
  const alone = await runCli([...args, '--resume', '--epochs', '2']);
  t.is(alone.code, 1);
  t.is(
    alone.stderr.trim(),
    `torchfocal: --resume: ${out} was trained by 2 process(es); resume it with the same number (not 1)`,
  );
  const again = await runCli([...args, '--nproc', '2', '--resume', '--epochs', '2']);
  t.is(again.code, 0, again.stderr);
  const epochs = jsonLines(again.stdout).filter((l) => l.event === 'epoch');
  t.deepEqual(
    epochs.map((e) => e.epoch),
    [1],
  );
  const { config } = await openCheckpoint(out);
  t.is(config.epochsDone, 2);
});

test('SIGTERM to the launcher stops every rank at one step; rank 0 checkpoints it and says how to resume', async (t) => {
  const out = tempDir();
  const args = [CLI, 'train', '--nproc', '2', '--epochs', '2', '--out', out, '--json'];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
  await new Promise<void>((resolve) =>
    child.stdout.on('data', (d) => {
      stdout += d;
      if (stdout.includes('"event":"epoch"')) resolve();
    }),
  );
  await new Promise((r) => setTimeout(r, 500)); // into the second epoch
  child.kill('SIGTERM');
  t.is(await exited, 143, stderr);
  t.true(
    stderr.includes(
      `holds the run up to its last finished step: continue with node dist/ts/cli/main.js train --out ${out} --resume --epochs 2 --nproc 2`,
    ),
    stderr,
  );
  const { config } = await openCheckpoint(out);
  t.is(config.epochsDone, 1);
  t.is(config.partialEpoch?.epoch, 1);
  t.true((config.partialEpoch?.step ?? 0) > 0);
  const resumed = await runCli([
    'train',
    '--nproc',
    '2',
    '--epochs',
    '2',
    '--out',
    out,
    '--resume',
    '--json',
  ]);
  t.is(resumed.code, 0, resumed.stderr);
  t.is((await openCheckpoint(out)).config.epochsDone, 2);
});
