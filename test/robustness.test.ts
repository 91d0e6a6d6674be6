// The short forms of `npm run fuzz` and `npm run soak`, as CI runs them.
import test from 'ava';
import path from 'node:path';
import { runProcess } from './helpers/cli';

function node(args: string[]) {
  return runProcess(process.execPath, args);
}

const DIST = path.join(__dirname, '..');

test('fuzz: 1,000 mutated or random inputs per kind, no crash', async (t) => {
  const seed = String(1 + Math.floor(Math.random() * 1e6)); // fresh cases every run
  const r = await node([
    path.join(DIST, 'test/fuzz/run.js'),
    '--cases',
    '1000',
    '--seed',
    seed,
    '--json',
  ]);
  const { reports } = JSON.parse(r.stdout.trim().split('\n').pop()!);
  for (const k of reports) {
    t.log(
      `${k.kind}: ${k.accepted} accepted, ${k.refused} refused, ${k.crashes.length} crashes (${k.seconds} s)`,
    );
    t.is(k.cases, 1000);
    t.is(k.accepted + k.refused, 1000, `${k.kind}: every case ended accepted or refused`);
    t.deepEqual(k.crashes, [], `${k.kind}, seed ${seed}`);
  }
  t.deepEqual(
    reports.map((k: { kind: string }) => k.kind),
    ['idx', 'dataset', 'safetensors', 'image', 'args', 'ops'],
  );
  t.is(r.code, 0, r.stderr);
});

test('soak: 50 epochs (train, evaluate, checkpoint, predict) hold memory within 5%', async (t) => {
  const r = await node(['--expose-gc', path.join(DIST, 'test/soak/run.js'), '--json']);
  t.is(r.code, 0, r.stderr);
  const report = JSON.parse(r.stdout);
  t.log(
    `RSS ${report.rssMiB[4]} → ${report.rssMiB[49]} MiB, slope ${report.slopeKiBPerEpoch} KiB/epoch`,
  );
  t.is(report.rssMiB.length, 50);
  t.true(report.growth <= 1.05, String(report.growth));
});
