// Trainers in worker threads: they run beside one in the main thread without interfering, and
// a worker terminated in the middle of an epoch takes nothing down with it.
import test from 'ava';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { loadMnist, subset, Trainer } from '../ts/index';

const INDEX = path.join(__dirname, '..', 'ts', 'index.js');

// Trains an MLP for two epochs on the first 3000 / 500 images; posts the last test accuracy.
const TRAIN = `
const { parentPort, workerData } = require('node:worker_threads');
const { Trainer, loadMnist, subset } = require(workerData.index);
(async () => {
  const m = await loadMnist();
  const first = (ds, n) => subset(ds, Array.from({ length: n }, (_, i) => i));
  const t = await Trainer.create({ model: workerData.model, classNames: m.train.classNames, threads: 1 });
  await t.setData({ train: first(m.train, 3000), test: first(m.test, 500) });
  parentPort.postMessage('training');
  const r = await t.fit(workerData.epochs);
  t.dispose();
  parentPort.postMessage(r[r.length - 1].testAcc);
})();`;

function start(model: string, epochs: number): Worker {
  return new Worker(TRAIN, { eval: true, workerData: { index: INDEX, model, epochs } });
}

function result(w: Worker): Promise<number> {
  return new Promise((resolve, reject) => {
    w.on('message', (m) => typeof m === 'number' && resolve(m));
    w.on('error', reject);
  });
}

async function mainThreadRun(): Promise<number> {
  const m = await loadMnist();
  const first = (n: number, of: typeof m.train) =>
    subset(
      of,
      Array.from({ length: n }, (_, i) => i),
    );
  const t = await Trainer.create({ model: 'mlp', classNames: m.train.classNames, threads: 1 });
  try {
    await t.setData({ train: first(3000, m.train), test: first(500, m.test) });
    const r = await t.fit(2);
    return r[1].testAcc!;
  } finally {
    t.dispose();
  }
}

test.serial('two worker threads and the main thread train at once and agree', async (t) => {
  const workers = [start('mlp', 2), start('mlp', 2)];
  const accs = await Promise.all([mainThreadRun(), ...workers.map(result)]);
  await Promise.all(workers.map((w) => w.terminate()));
  t.true(accs[0] > 0.7, String(accs[0]));
  t.deepEqual(accs, [accs[0], accs[0], accs[0]]);
});

test.serial(
  'terminating a worker mid-epoch leaves the process and other trainers working',
  async (t) => {
    for (const ms of [50, 400, 900]) {
      const w = start('lenet', 5);
      await new Promise((resolve) => w.once('message', resolve)); // 'training'
      await new Promise((resolve) => setTimeout(resolve, ms));
      await w.terminate();
    }
    t.true((await mainThreadRun()) > 0.7);
  },
);
