import test from 'ava';
import {
  ops,
  Trainer,
  loadMnist,
  subset,
  losses,
  applyImbalance,
  parseImbalance,
  type Dataset,
} from '../ts/index';
import { runFocalOpBench } from '../bench/focal-op';

// An independent float64 reference in plain JS: softmax focal loss and its analytic gradient
// by central finite differences.
function referenceFocal(
  x: Float64Array,
  n: number,
  c: number,
  target: number[],
  alpha: number[],
  gamma: number,
): number {
  let total = 0;
  for (let i = 0; i < n; i++) {
    const row = Array.from(x.subarray(i * c, (i + 1) * c));
    const max = Math.max(...row);
    const lse = max + Math.log(row.reduce((s, v) => s + Math.exp(v - max), 0));
    const logp = row[target[i]] - lse;
    const p = Math.exp(logp);
    total += -alpha[target[i]] * Math.pow(1 - p, gamma) * logp;
  }
  return total / n;
}

function randomLogits(n: number, c: number, scale = 3): Float64Array {
  return Float64Array.from({ length: n * c }, () => (Math.random() * 2 - 1) * scale);
}

test('ops.focalLoss (float64) matches a JS reference in value and gradient on fresh random inputs', async (t) => {
  const n = 16;
  const c = 7;
  const x = randomLogits(n, c);
  const target = Array.from({ length: n }, () => Math.floor(Math.random() * c));
  const alpha = Array.from({ length: c }, () => 0.5 + Math.random() * 3);
  const gamma = 0.3 + Math.random() * 3; // not only integers
  const { loss, grad } = await ops.focalLoss({ input: x, shape: [n, c], target, alpha, gamma });
  t.true(loss instanceof Float64Array);
  const ref = referenceFocal(x, n, c, target, alpha, gamma);
  t.true(Math.abs(loss[0] - ref) <= 1e-10 * Math.abs(ref), `${loss[0]} vs ${ref}`);
  const h = 1e-6;
  for (let k = 0; k < n * c; k += 5) {
    const plus = Float64Array.from(x);
    const minus = Float64Array.from(x);
    plus[k] += h;
    minus[k] -= h;
    const fd =
      (referenceFocal(plus, n, c, target, alpha, gamma) -
        referenceFocal(minus, n, c, target, alpha, gamma)) /
      (2 * h);
    t.true(Math.abs(grad[k] - fd) < 1e-7, `grad[${k}] ${grad[k]} vs ${fd}`);
  }
});

test('ops.focalLoss (float32) agrees with float64 to 1e-5; gamma 0 is cross-entropy', async (t) => {
  const n = 64;
  const c = 10;
  const x64 = randomLogits(n, c);
  const target = Array.from({ length: n }, () => Math.floor(Math.random() * c));
  const a = await ops.focalLoss({ input: Float32Array.from(x64), shape: [n, c], target });
  const b = await ops.focalLoss({ input: x64, shape: [n, c], target });
  t.true(a.loss instanceof Float32Array);
  t.true(Math.abs(a.loss[0] - b.loss[0]) <= 1e-5 * Math.abs(b.loss[0]));
  const ce = await ops.focalLoss({ input: x64, shape: [n, c], target, gamma: 0 });
  const ref = referenceFocal(x64, n, c, target, Array(c).fill(1), 0);
  t.true(Math.abs(ce.loss[0] - ref) < 1e-12);
});

test('ops.focalLoss: reductions, ignore_index, probabilities and sigmoid modes', async (t) => {
  const x = new Float64Array([2, 0, -1, 0.5, 0.5, 0.5, -3, 1, 4]);
  const none = await ops.focalLoss({
    input: x,
    shape: [3, 3],
    target: [0, -100, 2],
    reduction: 'none',
  });
  t.is(none.loss.length, 3);
  t.is(none.loss[1], 0); // ignored row
  t.true(Array.from(none.grad.subarray(3, 6)).every((g) => g === 0));
  const mean = await ops.focalLoss({ input: x, shape: [3, 3], target: [0, -100, 2] });
  t.true(Math.abs(mean.loss[0] - (none.loss[0] + none.loss[2]) / 2) < 1e-12); // mean over kept rows
  const sum = await ops.focalLoss({
    input: x,
    shape: [3, 3],
    target: [0, -100, 2],
    reduction: 'sum',
  });
  t.true(Math.abs(sum.loss[0] - (none.loss[0] + none.loss[2])) < 1e-12);
  // probabilities in (the original experiment's with_logits=False): -(1-p)^2 log p on p_t
  const probs = new Float64Array([0.7, 0.2, 0.1]);
  const p = await ops.focalLoss({ input: probs, shape: [1, 3], target: [0], withLogits: false });
  t.true(Math.abs(p.loss[0] - -(0.3 ** 2) * Math.log(0.7)) < 1e-12);
  // sigmoid: binary targets, torchvision's formula
  const logits = new Float64Array([1.5, -0.5, 3]);
  const targets = new Float64Array([1, 0, 1]);
  const s = await ops.focalLoss({
    input: logits,
    shape: [3],
    target: targets,
    mode: 'sigmoid',
    alpha: 0.25,
    reduction: 'none',
  });
  logits.forEach((z, i) => {
    const q = 1 / (1 + Math.exp(-z));
    const tt = targets[i];
    const ce = -(tt * Math.log(q) + (1 - tt) * Math.log(1 - q));
    const pt = q * tt + (1 - q) * (1 - tt);
    const at = 0.25 * tt + 0.75 * (1 - tt);
    t.true(Math.abs(s.loss[i] - at * ce * (1 - pt) ** 2) < 1e-12, `element ${i}`);
  });
});

test('ops.focalLoss: extreme logits give finite values', async (t) => {
  const x = new Float32Array([1e4, -1e4, 0, -1e4, 1e4, 0]);
  const r = await ops.focalLoss({ input: x, shape: [2, 3], target: [0, 0], gamma: 0.5 });
  t.true(Number.isFinite(r.loss[0]));
  t.true(Array.from(r.grad).every(Number.isFinite));
});

test('ops.focalLoss: bad arguments throw errors naming the argument', async (t) => {
  const x = new Float32Array(6);
  await t.throwsAsync(ops.focalLoss({ input: x, shape: [2, 3], target: [0, 1], alpha: [1, 2] }), {
    message: /alpha/,
  });
  await t.throwsAsync(ops.focalLoss({ input: x, shape: [2, 3], target: [0, 5] }), {
    message: /target/,
  });
  await t.throwsAsync(ops.focalLoss({ input: x, shape: [3, 3], target: [0, 1, 2] }), {
    message: /input has 6 values/,
  });
  await t.throwsAsync(ops.focalLoss({ input: x, shape: [2, 3], target: [0, 1], gamma: NaN }), {
    message: /gamma/,
  });
  await t.throwsAsync(ops.focalLoss({ input: x, shape: [2, 3], target: [0] }), {
    message: /target has 1 values/,
  });
  await t.throwsAsync(
    ops.focalLoss({ input: [1, 2] as unknown as Float32Array, shape: [1, 2], target: [0] }),
    {
      message: /input must be a Float32Array/,
    },
  );
});

test('every loss of the family trains an MLP on imbalanced MNIST without diverging', async (t) => {
  const mnist = await loadMnist();
  const pick = (ds: Dataset, n: number) =>
    subset(
      ds,
      Array.from({ length: n }, (_, i) => Math.floor((i * ds.count) / n)),
    );
  const train = applyImbalance(pick(mnist.train, 5000), parseImbalance('6=0.1', 10), 1);
  const test = pick(mnist.test, 500);
  const names = losses().map((l) => l.name);
  t.deepEqual(names, [
    'ce',
    'focal',
    'cb-ce',
    'cb-focal',
    'ldam',
    'balanced-softmax',
    'logit-adjust',
  ]);
  for (const loss of names) {
    const trainer = await Trainer.create({
      model: 'mlp',
      classNames: train.classNames,
      loss,
      // ldam's scaled margins need a gentler step than the mlp's default SGD 0.5
      lr: loss === 'ldam' ? 0.01 : undefined,
      drw: loss === 'ldam' ? 1 : undefined,
      threads: 1,
      seed: 1,
    });
    await trainer.setData({ train, test });
    const results = await trainer.fit(3);
    const last = results[2];
    t.true(Number.isFinite(last.loss), `${loss}: loss ${last.loss}`);
    t.true(last.testAcc! > 0.75, `${loss}: test acc ${last.testAcc}`);
    t.log(
      `${loss}: test acc ${last.testAcc?.toFixed(3)}, recall of 6 ${last.eval!.perClass[6].recall.toFixed(3)}`,
    );
    trainer.dispose();
  }
});

test('the focal-op benchmark times all three ops and rejects sizes it cannot run', async (t) => {
  const { figures, ratios } = await runFocalOpBench({ sizes: [[64, 5]], repeats: 1 });
  const [s] = figures.sizes;
  t.like(s, { rows: 64, classes: 5 });
  for (const v of [s.fused, s.crossEntropy, s.composed]) t.true(v > 0 && v < 1, String(v));
  t.is(ratios['focalVsCrossEntropy@64x5'], Math.round((s.fused / s.crossEntropy) * 1000) / 1000);
  await t.throwsAsync(runFocalOpBench({ sizes: [[0, 5]], repeats: 1 }), { message: /rows/ });
});
