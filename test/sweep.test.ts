import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import {
  aggregateSweep,
  meanStd,
  parseSweepConfig,
  runSweep,
  sweepRuns,
  type SweepConfig,
  type SweepRowMetrics,
} from '../ts/index';
import { jsonLines, runCli, tempDir, type CliResult } from './helpers/cli';
import { smallIdxFolder, smallMnist } from './helpers/mnist';

const ALPHA6 = [1, 1, 1, 1, 1, 1, 100, 1, 1, 1];

test('parseSweepConfig fills the defaults and labels every loss', (t) => {
  const c = parseSweepConfig({
    losses: ['ce', { loss: 'focal', alpha: ALPHA6, gamma: 2, name: 'focal-a6' }, 'cb-focal'],
    epochs: 3,
    batchSize: 64,
  });
  t.deepEqual(c.models, ['lenet']);
  t.deepEqual(c.imbalance, ['none']);
  t.deepEqual(c.seeds, [0]);
  t.deepEqual(
    c.losses.map((l) => l.name),
    ['ce', 'focal-a6', 'cb-focal'],
  );
  t.deepEqual(c.losses[1].alpha, ALPHA6);
  t.is(c.epochs, 3);
  t.is(c.batchSize, 64);
  // parsing a parsed config changes nothing
  t.deepEqual(parseSweepConfig(c), c);
});

test("parseSweepConfig: a schedule spans the sweep's epochs unless scheduleEpochs says otherwise", (t) => {
  const c = parseSweepConfig({ losses: ['ce'], epochs: 3, lrSchedule: 'onecycle' });
  t.is(c.lrSchedule, 'onecycle');
  t.is(c.scheduleEpochs, undefined); // each run fills in its epochs (runTraining)
  t.is(
    parseSweepConfig({ losses: ['ce'], lrSchedule: 'cosine', scheduleEpochs: 8 }).scheduleEpochs,
    8,
  );
});

test('parseSweepConfig: every fault is one line naming its key', (t) => {
  const base = { losses: ['ce'] };
  const cases: [unknown, RegExp][] = [
    [[], /^expected a JSON object, got \[\]$/],
    [{ ...base, epoch: 5 }, /^unknown key 'epoch' \(known: title, models, losses, /],
    [{ models: ['lenet'] }, /^losses: missing/],
    [{ losses: [] }, /^losses: the list is empty$/],
    [{ ...base, models: [] }, /^models: the list is empty$/],
    [{ ...base, seeds: [] }, /^seeds: the list is empty$/],
    [{ ...base, imbalance: [] }, /^imbalance: the list is empty$/],
    [{ ...base, seeds: 3 }, /^seeds: expected a list, got 3$/],
    [{ ...base, seeds: [0, -1] }, /^seeds\[1\]: expected an integer >= 0, got -1$/],
    [{ ...base, seeds: [1.5] }, /^seeds\[0\]: expected an integer >= 0, got 1\.5$/],
    [{ ...base, seeds: ['1'] }, /^seeds\[0\]: expected an integer >= 0, got "1"$/],
    [{ ...base, seeds: [0, 1, 0] }, /^seeds\[2\]: '0' is listed twice$/],
    [
      { ...base, models: ['lenet', 'lenett'] },
      /^models\[1\]: unknown model "lenett" \(known: mlp, lenet/,
    ],
    [{ losses: ['ce', 'fockal'] }, /^losses\[1\]\.loss: unknown loss 'fockal' \(known: ce, focal/],
    [
      { losses: [{ loss: 'focal', gama: 2 }] },
      /^losses\[0\]: unknown key 'gama' \(known: loss, name, /,
    ],
    [{ losses: [{ gamma: 2 }] }, /^losses\[0\]: "loss" is missing$/],
    [{ losses: [7] }, /^losses\[0\]: expected a loss name or an object with "loss", got 7$/],
    [
      { ...base, lrSchedule: 'step' },
      /^lrSchedule: unknown schedule 'step' \(known: constant, onecycle, cosine\)$/,
    ],
    [{ ...base, scheduleEpochs: 3 }, /^scheduleEpochs: only a 'onecycle' or 'cosine' lrSchedule/],
    [
      { losses: [{ loss: 'focal', gamma: '2' }] },
      /^losses\[0\]\.gamma: expected a number, got "2"$/,
    ],
    [
      { losses: [{ loss: 'focal', gamma: -1 }] },
      /^losses\[0\]\.gamma: expected a number >= 0, got -1$/,
    ],
    [{ losses: [{ loss: 'ce', alpha: 'x' }] }, /^losses\[0\]\.alpha: expected a number, a list/],
    [
      { losses: [{ loss: 'ce', drw: 1.5 }] },
      /^losses\[0\]\.drw: expected an integer >= 0, got 1\.5$/,
    ],
    [
      { losses: [{ loss: 'cb-focal', alpha: 2 }] },
      /^losses\[0\]\.alpha: loss 'cb-focal' computes its own class weights/,
    ],
    [
      { losses: ['focal', { loss: 'focal', gamma: 1 }] },
      /^losses\[1\]: 'focal' is listed twice; give each entry a distinct "name"$/,
    ],
    [{ ...base, imbalance: ['6=0.01', 5] }, /^imbalance\[1\]: expected a non-empty string, got 5$/],
    [{ ...base, epochs: 0 }, /^epochs: expected an integer >= 1, got 0$/],
    [{ ...base, lr: 0 }, /^lr: expected a number > 0, got 0$/],
    [{ ...base, optimizer: 'rmsprop' }, /^optimizer: unknown optimizer 'rmsprop'/],
    [{ ...base, dataset: '' }, /^dataset: expected a non-empty string, got ""$/],
    [{ ...base, title: 3 }, /^title: expected a non-empty string, got 3$/],
  ];
  for (const [json, message] of cases) {
    const err = t.throws(() => parseSweepConfig(json), undefined, JSON.stringify(json));
    t.regex(err!.message, message, JSON.stringify(json));
    t.false(err!.message.includes('\n'));
  }
});

test('sweepRuns: models × imbalance × losses × seeds, seeds innermost, specs passed through', (t) => {
  const config: SweepConfig = {
    models: ['mlp', 'lenet'],
    imbalance: ['none', 'longtail:100'],
    losses: ['ce', { loss: 'focal', gamma: 1, alpha: ALPHA6, name: 'focal γ1' }, 'cb-focal'],
    seeds: [3, 4],
    epochs: 2,
    lr: 0.01,
  };
  const runs = sweepRuns(config);
  t.is(runs.length, 2 * 2 * 3 * 2);
  t.deepEqual(
    runs.slice(0, 7).map((r) => r.name),
    [
      'mlp · balanced · ce · seed 3',
      'mlp · balanced · ce · seed 4',
      'mlp · balanced · focal γ1 · seed 3',
      'mlp · balanced · focal γ1 · seed 4',
      'mlp · balanced · cb-focal · seed 3',
      'mlp · balanced · cb-focal · seed 4',
      'mlp · longtail:100 · ce · seed 3',
    ],
  );
  t.is(runs[23].group, 'lenet · longtail:100 · cb-focal');
  t.deepEqual(
    runs.map((r) => r.index),
    runs.map((_, i) => i),
  );
  t.is(new Set(runs.map((r) => r.group)).size, 12);
  t.is(new Set(runs.map((r) => r.dir)).size, 24);
  t.is(runs[2].dir, '02-mlp_balanced_focal_1-seed3');
  t.is(runs[23].dir, '23-lenet_longtail_100_cb-focal-seed4');
  // fewer than ten runs still get README's two-digit <NN>
  t.deepEqual(
    sweepRuns({ losses: ['ce', 'focal'] }).map((r) => r.dir),
    ['00-lenet_balanced_ce-seed0', '01-lenet_balanced_focal-seed0'],
  );
  // 'none' trains on the whole set; a spec goes to runTraining as written
  t.false('imbalance' in runs[0].spec);
  t.is(runs[0].imbalance, null);
  t.is(runs[6].spec.imbalance, 'longtail:100');
  t.deepEqual(runs[2].spec, {
    epochs: 2,
    lr: 0.01,
    loss: 'focal',
    gamma: 1,
    alpha: ALPHA6,
    model: 'mlp',
    seed: 3,
  });
  // the same config always gives the same list
  t.deepEqual(sweepRuns(config), runs);
});

test('meanStd: mean and sample standard deviation', (t) => {
  const close = (a: number, b: number) => t.true(Math.abs(a - b) < 1e-12, `${a} vs ${b}`);
  const a = meanStd([0.9, 0.92, 0.94]);
  close(a.mean, 0.92);
  close(a.std, 0.02); // sqrt((0.0004 + 0 + 0.0004) / 2)
  const b = meanStd([1, 2, 3, 4]);
  close(b.mean, 2.5);
  close(b.std, Math.sqrt(5 / 3)); // (2.25 + 0.25 + 0.25 + 2.25) / 3
  t.deepEqual(meanStd([0.5]), { mean: 0.5, std: 0 });
  t.throws(() => meanStd([]), { message: /no values/ });
});

test('aggregateSweep: one group per cell, in first-seen order, every metric over seeds', (t) => {
  const row = (
    group: string,
    seed: number,
    acc: number,
    recall: [number, number],
    seconds: number,
  ): SweepRowMetrics => ({
    group,
    model: 'mlp',
    imbalance: null,
    loss: group,
    seed,
    trainSeconds: seconds,
    eval: {
      accuracy: acc,
      balancedAccuracy: (recall[0] + recall[1]) / 2,
      macroF1: acc - 0.1,
      perClass: recall.map((r, c) => ({
        class: c,
        name: String(c),
        support: 10,
        recall: r,
        precision: r,
        f1: r,
      })),
    },
  });
  const groups = aggregateSweep([
    row('ce', 0, 0.8, [1, 0.2], 10),
    row('focal', 0, 0.9, [0.9, 0.8], 12),
    row('ce', 1, 0.9, [1, 0.4], 14),
    row('ce', 2, 0.7, [0.7, 0.6], 12),
  ]);
  t.deepEqual(
    groups.map((g) => [g.name, g.n, g.seeds]),
    [
      ['ce', 3, [0, 1, 2]],
      ['focal', 1, [0]],
    ],
  );
  const [ce, focal] = groups;
  const close = (a: number, b: number) => t.true(Math.abs(a - b) < 1e-12, `${a} vs ${b}`);
  close(ce.testAcc.mean, 0.8);
  close(ce.testAcc.std, 0.1);
  close(ce.macroF1.mean, 0.7);
  close(ce.macroF1.std, 0.1);
  close(ce.recall[0].mean, 0.9);
  close(ce.recall[0].std, Math.sqrt(0.03)); // (0.01 + 0.01 + 0.04) / 2
  close(ce.recall[1].mean, 0.4);
  close(ce.recall[1].std, 0.2);
  close(ce.balancedAccuracy.mean, 0.65); // (0.6 + 0.7 + 0.65) / 3
  close(ce.balancedAccuracy.std, 0.05);
  close(ce.trainSeconds.mean, 12);
  close(ce.trainSeconds.std, 2);
  t.deepEqual(focal.testAcc, { mean: 0.9, std: 0 });
  t.is(focal.recall.length, 2);
});

// A few thousand images: a real, quick run of the MLP (Adam learns it in one epoch).
const data = smallMnist(3000, 1000);

test('runSweep: bad imbalance or alpha length is refused before anything is written', async (t) => {
  const out = path.join(tempDir(), 'sweep');
  await t.throwsAsync(
    runSweep(
      { models: ['mlp'], losses: ['ce'], imbalance: ['6=0.1', 'longtail:0.5'] },
      { data: await data, out },
    ),
    { message: /^imbalance\[1\]: .*longtail:0\.5/ },
  );
  await t.throwsAsync(
    runSweep(
      { models: ['mlp'], losses: ['ce', { loss: 'focal', alpha: [1, 100, 1] }] },
      { data: await data, out },
    ),
    { message: /^losses\[1\]\.alpha: 3 values for 10 classes/ },
  );
  t.false(fs.existsSync(out));
});

test('runSweep end to end: 2 losses × 2 seeds, real accuracies, mean ± std report', async (t) => {
  const out = path.join(tempDir(), 'sweep');
  const started: string[] = [];
  let epochs = 0;
  const result = await runSweep(
    {
      models: ['mlp'],
      imbalance: ['6=0.1'],
      losses: ['ce', { loss: 'focal', alpha: ALPHA6, gamma: 2, name: 'focal-a6' }],
      seeds: [0, 1],
      epochs: 1,
      optimizer: 'adam',
      threads: 1,
    },
    {
      data: await data,
      out,
      onRunStart: (run, total) => {
        t.is(total, 4);
        started.push(run.name);
      },
      onEpoch: () => void epochs++,
    },
  );
  t.deepEqual(started, [
    'mlp · 6=0.1 · ce · seed 0',
    'mlp · 6=0.1 · ce · seed 1',
    'mlp · 6=0.1 · focal-a6 · seed 0',
    'mlp · 6=0.1 · focal-a6 · seed 1',
  ]);
  t.is(epochs, 4);
  t.is(result.runs.length, 4);
  const train = (await data).train;
  const sixes = train.labels.filter((l) => l === 6).length;
  for (const r of result.runs) {
    t.true(r.testAcc > 0.5 && r.testAcc <= 1, `${r.name}: ${r.testAcc}`);
    t.is(r.testAcc, r.eval.accuracy);
    t.is(r.trainCounts[6], Math.round(0.1 * sixes), 'the imbalance spec reached the run');
    t.true(fs.existsSync(path.join(out, r.dir, 'model.safetensors')), r.dir);
    t.is(r.checkpoint, path.join(out, r.dir));
  }
  // the two seeds differ (weights, shuffling), so their spread is real
  t.not(result.runs[0].testAcc, result.runs[1].testAcc);
  t.is(result.groups.length, 2);
  const [ce, focal] = result.groups;
  t.is(ce.name, 'mlp · 6=0.1 · ce');
  t.is(ce.n, 2);
  const a = result.runs[0].testAcc;
  const b = result.runs[1].testAcc;
  t.true(Math.abs(ce.testAcc.mean - (a + b) / 2) < 1e-12);
  t.true(Math.abs(ce.testAcc.std - Math.abs(a - b) / Math.SQRT2) < 1e-12);
  t.is(focal.seeds.length, 2);

  for (const f of ['report.json', 'report.md', 'report.html', 'report.png', 'sweep.json']) {
    t.true(fs.statSync(path.join(out, f)).size > 100, f);
  }
  const md = fs.readFileSync(path.join(out, 'report.md'), 'utf8');
  t.true(md.includes('## Sweep groups (mean ± std over seeds)'));
  const line = md.split('\n').find((l) => l.startsWith('| mlp · 6=0.1 · ce | 2 |'));
  t.truthy(line, md);
  t.true(line!.includes(`| ${ce.testAcc.mean.toFixed(3)} ± ${ce.testAcc.std.toFixed(3)} |`), line);
  const json = JSON.parse(fs.readFileSync(path.join(out, 'report.json'), 'utf8'));
  t.is(json.kind, 'sweep');
  t.is(json.runs.length, 4);
  t.is(json.groups[1].mean['recall 6'], focal.recall[6].mean);
});

// The CLI on an IDX folder, one loss × two seeds.
async function sweepFile(config: unknown): Promise<{ file: string; out: string }> {
  const dir = tempDir();
  const file = path.join(dir, 'sweep.json');
  fs.writeFileSync(file, typeof config === 'string' ? config : JSON.stringify(config));
  return { file, out: path.join(dir, 'out') };
}

test('experiment --config --json: epoch and run lines, then done with the groups', async (t) => {
  const { dir: dataset } = await smallIdxFolder();
  const { file, out } = await sweepFile({
    dataset,
    models: ['mlp'],
    losses: ['focal'],
    seeds: [0, 1],
    epochs: 1,
    optimizer: 'adam',
  });
  const r = await runCli([
    'experiment',
    '--config',
    file,
    '--json',
    '--out',
    out,
    '--threads',
    '1',
  ]);
  t.is(r.code, 0, r.stderr);
  const lines = jsonLines(r.stdout);
  t.deepEqual(
    lines.map((l) => l.event),
    ['epoch', 'run', 'epoch', 'run', 'done'],
  );
  const runs = lines.filter((l) => l.event === 'run');
  t.deepEqual(
    runs.map((l) => [l.group, l.seed]),
    [
      ['mlp · balanced · focal', 0],
      ['mlp · balanced · focal', 1],
    ],
  );
  for (const l of runs) {
    t.true(l.eval.accuracy > 0.5, String(l.eval.accuracy));
    t.is(l.eval.perClass.length, 10);
  }
  const done = lines[lines.length - 1];
  t.is(done.report, out);
  t.is(done.groups.length, 1);
  t.is(done.groups[0].n, 2);
  t.true(done.groups[0].testAcc.std >= 0);
  t.true(fs.readFileSync(path.join(out, 'report.md'), 'utf8').includes('±'));
});

function assertOneLineError(t: any, r: CliResult, pattern: RegExp): void {
  t.not(r.code, 0, `exit code: ${r.code}, stderr: ${r.stderr}`);
  t.is(r.signal, null);
  t.is(r.stderr.trim().split('\n').length, 1, `one line expected, got: ${r.stderr}`);
  t.regex(r.stderr.trim(), pattern);
  t.is(r.stdout, '');
}

test('experiment --config: a missing, malformed or wrong file is one line and writes nothing', async (t) => {
  const missing = await sweepFile('{}');
  fs.rmSync(missing.file);
  const notJson = await sweepFile('{"losses": ["ce",]}');
  const badKey = await sweepFile({ losses: [{ loss: 'focal', gama: 2 }] });
  const badSpec = await sweepFile({ losses: ['ce'], imbalance: ['6=2'], dataset: 'mnist' });
  const cases: [{ file: string; out: string }, RegExp][] = [
    [missing, /^torchfocal: .*sweep\.json: no such file$/],
    [notJson, /^torchfocal: .*sweep\.json: not valid JSON \(/],
    [badKey, /^torchfocal: .*sweep\.json: losses\[0\]: unknown key 'gama'/],
    [badSpec, /^torchfocal: imbalance\[0\]: .*6=2/],
  ];
  const results = await Promise.all(
    cases.map(([c]) => runCli(['experiment', '--config', c.file, '--out', c.out, '--json'])),
  );
  results.forEach((r, i) => {
    assertOneLineError(t, r, cases[i][1]);
    t.false(fs.existsSync(cases[i][0].out), `nothing written for ${cases[i][1]}`);
  });
  // neither --config nor a subcommand; and `experiment starve` still takes its own options
  assertOneLineError(t, await runCli(['experiment']), /--config FILE\.json .*'starve'/);
  assertOneLineError(
    t,
    await runCli(['experiment', 'starve', '--keep', '2', '--out', missing.out]),
    /--keep.*fraction in \(0, 1\]/,
  );
});
