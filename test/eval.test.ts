// `torchfocal eval`: top-k accuracy, only the test split of an image folder, a dataset mismatch.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { loadIdxFolder, Trainer } from '../ts/index';
import { jsonLines, quickTrainArgs, runCli, tempDir } from './helpers/cli';
import { mnistImageFolder, writePng } from './helpers/imagefolder';
import { smallIdxFolder } from './helpers/mnist';

async function train(dataset: string): Promise<{ out: string; done: Record<string, any> }> {
  const out = path.join(tempDir(), 'run');
  const r = await runCli(quickTrainArgs(dataset, out));
  if (r.code !== 0) throw new Error(`train failed: ${r.stderr}`);
  return { out, done: jsonLines(r.stdout).at(-1)! };
}

const idx = smallIdxFolder();
const idxRun = idx.then(({ dir }) => train(dir));
const folder = mnistImageFolder(20, 10);
const folderRun = folder.then(train);

test("eval of an image folder's checkpoint decodes only the test split", async (t) => {
  const [root, { out, done }] = await Promise.all([folder, folderRun]);
  // A training split that can no longer be loaded: class 0 emptied, class 1 undecodable.
  const training = path.join(root, 'training');
  for (const f of fs.readdirSync(path.join(training, '0'))) fs.rmSync(path.join(training, '0', f));
  for (const f of fs.readdirSync(path.join(training, '1')))
    fs.writeFileSync(path.join(training, '1', f), 'not a png');
  const r = await runCli(['eval', '--checkpoint', out, '--threads', '1', '--json']);
  t.is(r.code, 0, r.stderr);
  const evaluation = jsonLines(r.stdout)[0];
  t.deepEqual(evaluation.confusion, done.eval.confusion);
  t.is(evaluation.accuracy, done.eval.accuracy);
});

test('eval --dataset of another dataset warns in one line on stderr and still runs', async (t) => {
  const [{ dir }, { out }] = await Promise.all([idx, idxRun]);
  const same = await runCli(['eval', '--checkpoint', out, '--threads', '1', '--dataset', dir]);
  t.is(same.code, 0, same.stderr);
  t.is(same.stderr, '');
  const r = await runCli([
    'eval',
    '--checkpoint',
    out,
    '--threads',
    '1',
    '--dataset',
    'fashion-mnist',
    '--json',
  ]);
  t.is(r.code, 0, r.stderr);
  const lines = r.stderr.trim().split('\n');
  t.is(lines.length, 1, r.stderr);
  t.regex(lines[0], /warning: .*trained on .*'fashion-mnist'/);
  t.regex(lines[0], /T-shirt\/top/);
  t.is(jsonLines(r.stdout)[0].perClass[0].name, '0', "the checkpoint's class names");
});

test('eval: top-k accuracy from the logits, checked against the ranking of predict', async (t) => {
  const [{ dir }, { out, done }] = await Promise.all([idx, idxRun]);
  // train's final EVAL carries top-5 (10 classes > 5)
  t.is(done.eval.topK.k, 5);
  t.true(done.eval.topK.accuracy >= done.eval.accuracy);
  const evalTopK = (k: number) =>
    runCli(['eval', '--checkpoint', out, '--threads', '1', '--json', '--top-k', String(k)]);
  const k3 = await evalTopK(3);
  t.is(k3.code, 0, k3.stderr);
  const evaluation = jsonLines(k3.stdout)[0];
  t.is(evaluation.topK.k, 3);
  // Reference: each test image's probabilities from predict, ranked here.
  const { test: testSet } = await loadIdxFolder(dir);
  const trainer = await Trainer.load(out, { threads: 1 });
  try {
    const preds = await trainer.predict(testSet.images, {
      count: testSet.count,
      height: 28,
      width: 28,
    });
    let hits = 0;
    preds.forEach((p, i) => {
      const truth = p.probabilities[testSet.labels[i]];
      const ahead = p.probabilities.filter((q) => q > truth).length;
      if (ahead < 3) hits++;
    });
    t.true(Math.abs(evaluation.topK.accuracy - hits / testSet.count) <= 1 / testSet.count);
  } finally {
    trainer.dispose();
  }
  // Only reported when the dataset has more classes than K.
  const k10 = await evalTopK(10);
  t.is(k10.code, 0, k10.stderr);
  t.false('topK' in jsonLines(k10.stdout)[0]);
  const plain = await runCli(['eval', '--checkpoint', out, '--threads', '1']);
  t.regex(plain.stdout.split('\n')[0], /top-5 accuracy 0\.\d{4}/);
});

test("eval decodes the test split with the run's --max-pixels, or its own", async (t) => {
  const root = await mnistImageFolder(10, 5);
  // One test image of class 0 at 64×64 = 4,096 pixels: over the run's limit of 1,000.
  await writePng(path.join(root, 'testing', '0', 'big.png'), new Uint8Array(64 * 64).fill(90), 64);
  const out = path.join(tempDir(), 'run');
  const r = await runCli(quickTrainArgs(root, out, '--max-pixels', '1000'));
  t.is(r.code, 0, r.stderr);
  const trained = jsonLines(r.stdout).at(-1)!.eval;
  t.is(trained.perClass[0].support, 5, 'the big image was skipped in training');
  const evaluate = async (...extra: string[]) => {
    const e = await runCli(['eval', '--checkpoint', out, '--threads', '1', '--json', ...extra]);
    t.is(e.code, 0, e.stderr);
    return jsonLines(e.stdout)[0];
  };
  t.deepEqual((await evaluate()).confusion, trained.confusion, "the run's limit by default");
  t.is((await evaluate('--max-pixels', '5000')).perClass[0].support, 6);
});
