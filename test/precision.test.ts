// Speed options must not change what is learned: memory formats give the same run within float
// noise; bf16 autocast trains to a comparable accuracy; fp16 outside CUDA is refused clearly.
import test from 'ava';
import { Trainer, type TrainerOptions } from '../ts/index';
import { smallMnist } from './helpers/mnist';
import { runCli, tempDir } from './helpers/cli';

async function run(options: Omit<TrainerOptions, 'classNames'>, epochs: number) {
  const data = await smallMnist(3000, 1000);
  const trainer = await Trainer.create({ ...options, classNames: data.train.classNames, seed: 3 });
  try {
    await trainer.setData(data);
    return await trainer.fit(epochs);
  } finally {
    trainer.dispose();
  }
}

test('channels-last and contiguous LeNet runs agree within float noise', async (t) => {
  const [a, b] = await Promise.all([
    run({ model: 'lenet', memoryFormat: 'channels-last' }, 2),
    run({ model: 'lenet', memoryFormat: 'contiguous' }, 2),
  ]);
  for (let e = 0; e < 2; e++) {
    t.true(Math.abs(a[e].loss - b[e].loss) < 1e-4 * Math.abs(b[e].loss), `epoch ${e}`);
    t.true(Math.abs(a[e].testAcc! - b[e].testAcc!) <= 0.003, `epoch ${e}`);
  }
});

test('bf16 autocast trains an MLP on the CPU to the float32 accuracy, not bit for bit', async (t) => {
  const [bf16, fp32] = await Promise.all([
    run({ model: 'mlp', amp: 'bf16' }, 3),
    run({ model: 'mlp', amp: 'off' }, 3),
  ]);
  t.log(`bf16 test acc ${bf16[2].testAcc}, float32 ${fp32[2].testAcc}`);
  t.true(bf16[2].testAcc! > 0.8);
  t.true(Math.abs(bf16[2].testAcc! - fp32[2].testAcc!) < 0.03);
  t.not(bf16[0].loss, fp32[0].loss, 'the forward pass really ran in bf16');
});

test('fp16 needs CUDA: a clear error from the API and the CLI', async (t) => {
  await t.throwsAsync(Trainer.create({ model: 'mlp', classNames: ['a', 'b'], amp: 'fp16' }), {
    message: /amp fp16 needs a CUDA device \(use bf16 on the CPU\)/,
  });
  const r = await runCli([
    'train',
    '--model',
    'mlp',
    '--amp',
    'fp16',
    '--epochs',
    '1',
    '--out',
    tempDir(),
  ]);
  t.not(r.code, 0);
  t.regex(r.stderr, /amp fp16 needs a CUDA device/);
  t.is(r.stderr.trim().split('\n').length, 1);
});

test('CUDA graphs forced on need CUDA: a clear error from the API and the CLI; off is valid', async (t) => {
  await t.throwsAsync(Trainer.create({ model: 'mlp', classNames: ['a', 'b'], cudaGraph: 'on' }), {
    message: /CUDA graphs \('on'\) need a CUDA device and one process/,
  });
  await t.throwsAsync(
    // @ts-expect-error: a mode that does not exist
    Trainer.create({ model: 'mlp', classNames: ['a', 'b'], cudaGraph: 'always' }),
    { message: /cudaGraph: unknown mode 'always' \(known: auto, on, off\)/ },
  );
  const r = await runCli([
    'train',
    '--model',
    'mlp',
    '--cuda-graph',
    'on',
    '--epochs',
    '1',
    '--out',
    tempDir(),
  ]);
  t.not(r.code, 0);
  t.regex(r.stderr, /need a CUDA device and one process: use --cuda-graph auto or off/);
  t.is(r.stderr.trim().split('\n').length, 1);
  // off (and auto) are valid everywhere: the CPU steps uncaptured
  const trainer = await Trainer.create({ model: 'mlp', classNames: ['a', 'b'], cudaGraph: 'off' });
  t.is(trainer.options.cudaGraph, 'off');
  trainer.dispose();
});
