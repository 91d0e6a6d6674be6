// CUDA checks, run by scripts/gpu-check.sh on a GPU machine (never by `npm test`): the fused
// focal kernels against the CPU op on fresh random inputs, the edge cases of the focal issue,
// and a short training run on the GPU.
import test from 'ava';
import { ops, runtimeInfo, runTraining, type FocalLossOptions } from '../../ts/index';

test.before((t) => {
  const info = runtimeInfo();
  if (!info.cudaAvailable)
    throw new Error(`no CUDA device visible to LibTorch ${info.torchVersion}`);
  t.log(`LibTorch ${info.torchVersion}, ${info.cudaDevices} CUDA device(s)`);
});

function randn(n: number, scale: number): Float64Array {
  const out = new Float64Array(n);
  for (let i = 0; i < n; i += 2) {
    const u = 1 - Math.random();
    const v = Math.random();
    const r = Math.sqrt(-2 * Math.log(u)) * scale;
    out[i] = r * Math.cos(2 * Math.PI * v);
    if (i + 1 < n) out[i + 1] = r * Math.sin(2 * Math.PI * v);
  }
  return out;
}

function maxRelError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let worst = 0;
  for (let i = 0; i < a.length; i++) {
    worst = Math.max(worst, Math.abs(a[i] - b[i]) / Math.max(1e-6, Math.abs(b[i])));
  }
  return worst;
}

async function cudaAgreesWithCpu(
  t: import('ava').ExecutionContext,
  o: FocalLossOptions,
  tolerance: number,
): Promise<void> {
  const cpu = await ops.focalLoss({ ...o, device: 'cpu' });
  const gpu = await ops.focalLoss({ ...o, device: 'cuda' });
  for (const [name, a, b] of [
    ['loss', gpu.loss, cpu.loss],
    ['grad', gpu.grad, cpu.grad],
  ] as const) {
    t.true(a.every(Number.isFinite), `${name}: not finite`);
    const err = maxRelError(a, b);
    t.true(err <= tolerance, `${name}: relative error ${err} > ${tolerance}`);
  }
}

// Warp-per-row (C ≤ 32) and block-per-row (C > 32) kernels, every reduction.
for (const [rows, classes] of [
  [1, 2],
  [37, 10],
  [4096, 10],
  [513, 33],
  [256, 1000],
  [8, 32769],
]) {
  for (const precision of ['float64', 'float32'] as const) {
    test(`softmax ${rows}×${classes} ${precision}: CUDA matches CPU (every reduction, α, γ, smoothing)`, async (t) => {
      const x = randn(rows * classes, 4);
      const input = precision === 'float64' ? x : Float32Array.from(x);
      const target = Array.from({ length: rows }, (_, i) =>
        i % 7 === 3 ? -100 : (i * 31) % classes,
      );
      const alpha = Array.from({ length: classes }, (_, c) =>
        c === 6 % classes ? 100 : 0.5 + (c % 3),
      );
      for (const reduction of ['mean', 'sum', 'none'] as const) {
        for (const gamma of [0, 0.5, 2, 3.7]) {
          await cudaAgreesWithCpu(
            t,
            {
              input,
              shape: [rows, classes],
              target,
              alpha,
              gamma,
              reduction,
              labelSmoothing: gamma === 2 ? 0.1 : 0,
            },
            precision === 'float64' ? 1e-10 : 1e-5,
          );
        }
      }
    });
  }
}

test('sigmoid and probability modes: CUDA matches CPU', async (t) => {
  const x = randn(3 * 1000, 3);
  const target = Float64Array.from(x, (_, i) => (i % 3 === 0 ? 1 : i % 5 === 0 ? 0.3 : 0));
  for (const alpha of [0.25, -1]) {
    await cudaAgreesWithCpu(
      t,
      { input: x, shape: [3, 1000], target, alpha, mode: 'sigmoid' },
      1e-10,
    );
  }
  const probs = Float64Array.from(x, (v) => 1 / (1 + Math.exp(-v)));
  await cudaAgreesWithCpu(
    t,
    {
      input: probs,
      shape: [300, 10],
      target: Array.from({ length: 300 }, (_, i) => i % 10),
      withLogits: false,
    },
    1e-10,
  );
});

test('extreme logits stay finite on CUDA', async (t) => {
  const classes = 10;
  const input = new Float32Array(4 * classes);
  input.set([1e4, -1e4, 0, 0, 0, 0, 0, 0, 0, 0], 0);
  input.set([-1e4, 1e4, 0, 0, 0, 0, 0, 0, 0, 0], classes);
  for (const gamma of [0, 0.3, 2]) {
    const r = await ops.focalLoss({
      input,
      shape: [4, classes],
      target: [0, 0, 1, 9],
      gamma,
      device: 'cuda',
      reduction: 'none',
    });
    t.true([...r.loss, ...r.grad].every(Number.isFinite), `gamma ${gamma}`);
  }
});

test('LeNet trains on the GPU: one epoch of the starved-six focal run', async (t) => {
  const r = await runTraining({
    model: 'lenet',
    epochs: 1,
    device: 'cuda',
    imbalance: '6=0.01',
    loss: 'focal',
    alpha: [1, 1, 1, 1, 1, 1, 100, 1, 1, 1],
    gamma: 2,
    seed: 1,
  });
  t.log(
    `test acc ${r.eval.accuracy.toFixed(3)}, class 6 ${r.eval.perClass[6].recall.toFixed(3)}, ${r.trainSeconds.toFixed(2)} s`,
  );
  t.true(r.eval.accuracy > 0.6, String(r.eval.accuracy));
});

test('CUDA graph: the captured step trains like the uncaptured one on MNIST (partial last batch)', async (t) => {
  const run = (cudaGraph: 'on' | 'off') =>
    runTraining({
      model: 'lenet',
      epochs: 2,
      device: 'cuda',
      imbalance: '6=0.01',
      loss: 'focal',
      alpha: [1, 1, 1, 1, 1, 1, 100, 1, 1, 1],
      gamma: 2,
      seed: 2,
      cudaGraph,
    });
  const graph = await run('on');
  const eager = await run('off');
  for (const [i, e] of graph.history.entries()) {
    const other = eager.history[i];
    t.log(`epoch ${i}: graph ${e.seconds.toFixed(3)} s, uncaptured ${other.seconds.toFixed(3)} s`);
    t.true(Math.abs(e.loss - other.loss) <= 1e-3 * other.loss, `${e.loss} vs ${other.loss}`);
  }
  t.true(Math.abs(graph.eval.accuracy - eager.eval.accuracy) <= 0.01);
  t.true(graph.eval.accuracy > 0.9, String(graph.eval.accuracy));
});
