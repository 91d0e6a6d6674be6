import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { jsonLines, runCli, tempDir } from './helpers/cli';
import { smallIdxFolder } from './helpers/mnist';

test('experiment starve --ablation --losses: every row, the finding sentence and the report', async (t) => {
  const { dir: data, testSixes } = await smallIdxFolder();
  const out = tempDir();
  const r = await runCli([
    'experiment',
    'starve',
    '--dataset',
    data,
    '--model',
    'mlp',
    '--optimizer',
    'adam',
    '--epochs',
    '2',
    '--keep',
    '0.05',
    '--ablation',
    '--losses',
    'balanced-softmax',
    '--json',
    '--out',
    out,
    '--threads',
    '1',
  ]);
  t.is(r.code, 0, r.stderr);
  const lines = jsonLines(r.stdout);
  const epochs = lines.filter((l) => l.event === 'epoch');
  t.is(epochs.length, 6 * 2);
  const done = lines[lines.length - 1];
  t.is(done.event, 'experiment');
  t.deepEqual(
    done.rows.map((row: { name: string }) => row.name),
    [
      'balanced-ce',
      'imbalanced-ce',
      'imbalanced-focal',
      'imbalanced-focal-alpha-only',
      'imbalanced-focal-gamma-only',
      'imbalanced-balanced-softmax',
    ],
  );
  for (const row of done.rows) {
    t.true(row.testAcc > 0.5 && row.testAcc <= 1, `${row.name}: ${row.testAcc}`);
    t.is(row.classAcc, row.eval.perClass[6].recall);
    t.is(row.eval.perClass[6].support, testSixes);
  }
  // cutting 6 to 5% (20 images) costs it recall under plain cross-entropy
  const byName = Object.fromEntries(done.rows.map((row: { name: string }) => [row.name, row]));
  t.true(byName['balanced-ce'].classAcc > byName['imbalanced-ce'].classAcc);
  t.is(done.findings.length, 1);
  t.regex(
    done.findings[0],
    /^Focal loss moves the recall of class 6 from 0\.\d{3} to 0\.\d{3} .*alpha alone .* gamma alone/,
  );
  for (const f of ['report.json', 'report.md', 'report.html', 'report.png']) {
    t.true(fs.statSync(path.join(out, f)).size > 100, f);
  }
  t.true(fs.existsSync(path.join(out, 'imbalanced-focal', 'model.safetensors')));
  const md = fs.readFileSync(path.join(out, 'report.md'), 'utf8');
  t.regex(md, /imbalanced-focal-alpha-only/);
});
