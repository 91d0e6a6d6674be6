// `torchfocal predict`: folders searched recursively, bad files reported beside good ones, --top K.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { loadMnist } from '../ts/index';
import { jsonLines, quickTrainArgs, runCli, tempDir } from './helpers/cli';
import { writePng } from './helpers/imagefolder';
import { smallIdxFolder } from './helpers/mnist';
import sharp from 'sharp';

// One quick MLP checkpoint for every test of this file.
const checkpoint = (async () => {
  const { dir } = await smallIdxFolder();
  const out = path.join(tempDir(), 'run');
  const r = await runCli(quickTrainArgs(dir, out));
  if (r.code !== 0) throw new Error(`train failed: ${r.stderr}`);
  return out;
})();

// ROOT/a.png, ROOT/sub/b.png, ROOT/sub/deeper/c.PNG (MNIST test images 0..2), a corrupt
// ROOT/sub/bad.png, an empty ROOT/empty.png and a text file that is no image.
async function imageTree(): Promise<{ root: string; good: string[]; bad: string[] }> {
  const mnist = await loadMnist();
  const root = tempDir();
  const image = (i: number) => mnist.test.images.subarray(i * 784, (i + 1) * 784);
  const good = ['a.png', 'sub/b.png', 'sub/deeper/c.PNG'].map((f) => path.join(root, f));
  for (const [i, file] of good.entries()) await writePng(file, image(i));
  const bad = [path.join(root, 'empty.png'), path.join(root, 'sub', 'bad.png')];
  fs.writeFileSync(bad[0], '');
  fs.writeFileSync(bad[1], 'not a png at all');
  fs.writeFileSync(path.join(root, 'notes.txt'), 'ignored: not an image extension');
  return { root, good, bad };
}

test('predict --json: a folder is searched recursively in sorted order; bad files are entries of their own', async (t) => {
  const [ckpt, { root, good, bad }] = await Promise.all([checkpoint, imageTree()]);
  const r = await runCli(['predict', '--checkpoint', ckpt, '--threads', '1', '--json', root]);
  t.is(r.code, 1, 'a file failed: exit 1');
  const lines = jsonLines(r.stdout);
  // Sorted by path: a.png, empty.png, sub/b.png, sub/bad.png, sub/deeper/c.PNG
  t.deepEqual(
    lines.map((l) => l.file),
    [good[0], bad[0], good[1], bad[1], good[2]],
  );
  for (const l of lines.filter((l) => !l.error)) {
    t.deepEqual(Object.keys(l), ['file', 'class', 'name', 'probability']);
    t.is(l.name, String(l.class));
  }
  const errors = lines.filter((l) => l.error);
  t.deepEqual(
    errors.map((l) => Object.keys(l)),
    [
      ['file', 'error'],
      ['file', 'error'],
    ],
  );
  t.regex(errors[0].error, /empty file/);
  // stderr: one line per failed file, plus the summary
  for (const file of bad) t.true(r.stderr.includes(file), r.stderr);
  t.regex(r.stderr, /2 of 5 files could not be read/);
});

test('predict: plain output keeps the good files on stdout and names each bad file on stderr', async (t) => {
  const [ckpt, { root, good, bad }] = await Promise.all([checkpoint, imageTree()]);
  const r = await runCli(['predict', '--checkpoint', ckpt, '--threads', '1', root]);
  t.is(r.code, 1);
  const rows = r.stdout.trim().split('\n');
  t.deepEqual(
    rows.map((l) => l.split('\t')[0]),
    good,
  );
  for (const row of rows) t.regex(row, /^\S+\t\d\t[01]\.\d{4}$/);
  const errLines = r.stderr.trim().split('\n');
  t.is(errLines.length, 3, r.stderr); // two files, one summary
  t.true(errLines[0].includes(bad[0]) && /empty file/.test(errLines[0]), errLines[0]);
  t.true(errLines[1].includes(bad[1]), errLines[1]);
});

test('predict: only good files exit 0; a missing path is a failed entry too', async (t) => {
  const [ckpt, { good }] = await Promise.all([checkpoint, imageTree()]);
  const ok = await runCli(['predict', '--checkpoint', ckpt, '--threads', '1', ...good]);
  t.is(ok.code, 0, ok.stderr);
  t.is(ok.stderr, '');
  const missing = path.join(path.dirname(good[0]), 'no-such.png');
  const r = await runCli(['predict', '--checkpoint', ckpt, '--json', good[0], missing]);
  t.is(r.code, 1);
  const lines = jsonLines(r.stdout);
  t.is(lines[0].file, good[0]);
  t.deepEqual(lines[1], { file: missing, error: 'no such file or folder' });
});

test('predict --top K: the K most probable classes with names and probabilities, best first', async (t) => {
  const [ckpt, { good }] = await Promise.all([checkpoint, imageTree()]);
  const r = await runCli([
    'predict',
    '--checkpoint',
    ckpt,
    '--threads',
    '1',
    '--json',
    '--top',
    '3',
    ...good,
  ]);
  t.is(r.code, 0, r.stderr);
  const lines = jsonLines(r.stdout);
  t.is(lines.length, 3);
  for (const l of lines) {
    t.is(l.top.length, 3);
    t.deepEqual(l.top[0], { class: l.class, name: l.name, probability: l.probability });
    for (const k of l.top) t.is(k.name, String(k.class));
    t.true(l.top[0].probability >= l.top[1].probability);
    t.true(l.top[1].probability >= l.top[2].probability);
    t.is(new Set(l.top.map((k: any) => k.class)).size, 3);
    t.true(l.top.reduce((s: number, k: any) => s + k.probability, 0) <= 1 + 1e-6);
  }
  const plain = await runCli([
    'predict',
    '--checkpoint',
    ckpt,
    '--threads',
    '1',
    '--top',
    '3',
    good[0],
  ]);
  t.is(plain.code, 0, plain.stderr);
  // FILE, then K (name, probability) pairs
  t.regex(plain.stdout.trim(), /^\S+(\t\d\t[01]\.\d{4}){3}$/);
  const json = lines[0];
  t.deepEqual(
    plain.stdout.trim().split('\t').slice(1),
    json.top.flatMap((k: any) => [k.name, k.probability.toFixed(4)]),
  );
  const tooMany = await runCli(['predict', '--checkpoint', ckpt, '--top', '11', good[0]]);
  t.not(tooMany.code, 0);
  t.regex(tooMany.stderr, /--top/);
});

test("predict brings a large image to the run's image size as training did (sharp's resize), not in the engine", async (t) => {
  const out = await checkpoint;
  const mnist = await loadMnist();
  const dir = tempDir();
  // A digit at 4x (112x112) with some texture, and what the training loader would make of it.
  const big = path.join(dir, 'big.png');
  const digit = mnist.test.images.subarray(7 * 784, 8 * 784);
  await sharp(Buffer.from(digit), { raw: { width: 28, height: 28, channels: 1 } })
    .resize(112, 112, { kernel: 'cubic' })
    .toColourspace('b-w')
    .png()
    .toFile(big);
  const small = path.join(dir, 'small.png');
  await sharp(big)
    .toColourspace('b-w')
    .resize(28, 28, { fit: 'fill', kernel: 'linear' })
    .png()
    .toFile(small);
  const r = await runCli([
    ...['predict', '--checkpoint', out, big, small],
    ...['--json', '--top', '10', '--threads', '1'],
  ]);
  t.is(r.code, 0, r.stderr);
  const [a, b] = jsonLines(r.stdout);
  t.deepEqual(a.top, b.top, 'every class probability');
});
