import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { loadMnist } from '../ts/index';
import { jsonLines, runCli, tempDir } from './helpers/cli';

// An MNIST-style IDX folder holding every 15th training image and every 10th test image.
async function smallIdxFolder(): Promise<{ dir: string; testSixes: number }> {
  const mnist = await loadMnist();
  const dir = tempDir();
  const write = (name: string, ds: typeof mnist.train, step: number) => {
    const idx = Array.from({ length: Math.floor(ds.count / step) }, (_, i) => i * step);
    const images = Buffer.alloc(16 + idx.length * 784);
    images.writeUInt32BE(0x803, 0);
    images.writeUInt32BE(idx.length, 4);
    images.writeUInt32BE(28, 8);
    images.writeUInt32BE(28, 12);
    const labels = Buffer.alloc(8 + idx.length);
    labels.writeUInt32BE(0x801, 0);
    labels.writeUInt32BE(idx.length, 4);
    idx.forEach((k, i) => {
      images.set(ds.images.subarray(k * 784, (k + 1) * 784), 16 + i * 784);
      labels[8 + i] = ds.labels[k];
    });
    fs.writeFileSync(path.join(dir, `${name}-images-idx3-ubyte`), images);
    fs.writeFileSync(path.join(dir, `${name}-labels-idx1-ubyte`), labels);
  };
  write('train', mnist.train, 15);
  write('t10k', mnist.test, 10);
  let testSixes = 0;
  for (let k = 0; k < mnist.test.count; k += 10) testSixes += mnist.test.labels[k] === 6 ? 1 : 0;
  return { dir, testSixes };
}

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
