// The fuzz cases: one generator per input kind. Each case builds a mutated or random input,
// feeds it to the code under test and reports whether it was accepted or refused with an Error.
// Anything else — the process dying by a signal, an abort — is what the fuzz run counts as a
// crash (test/fuzz/run.ts).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import sharp from 'sharp';
import { xoroshiro128plus } from 'pure-rand/generator/xoroshiro128plus';
import { uniformInt } from 'pure-rand/distribution/uniformInt';
import { native } from '../../ts/native';
import { loadIdxPair, parseIdx } from '../../ts/data/idx';
import { MNIST_CLASSES } from '../../ts/data/mnist';
import { decodeImage } from '../../ts/data/imagefolder';
import { decodeSafetensors, encodeSafetensors } from '../../ts/io/safetensors';
import { imbalance, imbalanceCounts } from '../../ts/data/imbalance';
import { parseSweepConfig } from '../../ts/experiment/sweep';
import { alphaList, intAtLeast, unitFraction } from '../../ts/cli/parse';
import { ops, Trainer } from '../../ts/index';

export const KINDS = ['idx', 'dataset', 'safetensors', 'image', 'args', 'ops'] as const;
export type Kind = (typeof KINDS)[number];
export type Outcome = 'accepted' | 'refused';

type Rng = ReturnType<typeof xoroshiro128plus>;

/** A case's inputs come from (seed, index) alone, so a crash can be replayed by its number. */
export function caseRng(seed: number, index: number): Rng {
  return xoroshiro128plus(seed * 1_000_003 + index);
}

const int = (rng: Rng, lo: number, hi: number) => uniformInt(rng, lo, hi);
const pick = <T>(rng: Rng, xs: readonly T[]): T => xs[int(rng, 0, xs.length - 1)];

/** One of a few mutations of `buf`: flipped bytes, a cut, appended or inserted junk, a header rewrite. */
export function mutate(rng: Rng, buf: Uint8Array): Uint8Array {
  const out = Buffer.from(buf);
  switch (int(rng, 0, 5)) {
    case 0: {
      for (let k = int(rng, 1, 8); k > 0 && out.length > 0; k--) {
        out[int(rng, 0, out.length - 1)] ^= 1 << int(rng, 0, 7);
      }
      return out;
    }
    case 1:
      return out.subarray(0, int(rng, 0, Math.max(0, out.length - 1)));
    case 2:
      return Buffer.concat([out, randomBytes(rng, int(rng, 1, 64))]);
    case 3: {
      const at = int(rng, 0, out.length);
      return Buffer.concat([
        out.subarray(0, at),
        randomBytes(rng, int(rng, 1, 16)),
        out.subarray(at),
      ]);
    }
    case 4: {
      const head = Math.min(out.length, 32);
      for (let i = 0; i < head; i++) if (int(rng, 0, 3) === 0) out[i] = int(rng, 0, 255);
      return out;
    }
    default:
      return randomBytes(rng, int(rng, 0, 256));
  }
}

function randomBytes(rng: Rng, n: number): Buffer {
  return Buffer.from(Array.from({ length: n }, () => int(rng, 0, 255)));
}

async function settle(run: () => unknown): Promise<Outcome> {
  try {
    await run();
    return 'accepted';
  } catch (err) {
    if (!(err instanceof Error)) throw new Error(`a non-Error was thrown: ${String(err)}`);
    return 'refused';
  }
}

// ---- Seeds: valid inputs that the mutations start from ----------------------------------------

function idxSeed(): Buffer {
  const n = 10;
  const header = Buffer.alloc(16);
  header.writeUInt32BE(0x803, 0);
  header.writeUInt32BE(n, 4);
  header.writeUInt32BE(28, 8);
  header.writeUInt32BE(28, 12);
  return Buffer.concat([header, Buffer.alloc(n * 784, 7)]);
}

let pngSeed: Buffer | undefined;
async function imageSeed(): Promise<Buffer> {
  pngSeed ??= await sharp(Buffer.alloc(28 * 28, 128), {
    raw: { width: 28, height: 28, channels: 1 },
  })
    .png()
    .toBuffer();
  return pngSeed;
}

type NativeTrainer = ReturnType<typeof native>['NativeTrainer']['prototype'];
let mlp: { trainer: NativeTrainer; file: Buffer; stateFile: Buffer } | undefined;
async function mlpSeed() {
  if (!mlp) {
    // Adam, stepped once: the training state holds moments, step counts and the random stream.
    const trainer = new (native().NativeTrainer)({
      model: 'mlp',
      numClasses: 10,
      threads: 1,
      optimizer: 'adam',
    });
    await trainer.init();
    const images = new Uint8Array(4 * 784);
    await trainer.setData('train', images, Int32Array.from([0, 1, 2, 3]), {
      count: 4,
      channels: 1,
      height: 28,
      width: 28,
    });
    await trainer.trainEpoch(undefined, false);
    const state = await trainer.stateDict();
    const trainState = await trainer.trainState();
    mlp = { trainer, file: encodeSafetensors(state), stateFile: encodeSafetensors(trainState) };
  }
  return mlp;
}

// A labelled IDX pair: 12 images of 4x4, labels drawn around the ten classes (some out of range).
function labelledPairSeed(rng: Rng): { images: Buffer; labels: Buffer } {
  const n = 12;
  const images = Buffer.alloc(16 + n * 16, 9);
  images.writeUInt32BE(0x803, 0);
  images.writeUInt32BE(n, 4);
  images.writeUInt32BE(4, 8);
  images.writeUInt32BE(4, 12);
  const labels = Buffer.alloc(8 + n);
  labels.writeUInt32BE(0x801, 0);
  labels.writeUInt32BE(n, 4);
  for (let i = 0; i < n; i++) labels[8 + i] = int(rng, 0, 3) ? i % 10 : int(rng, 0, 255);
  return { images, labels };
}

// ---- Cases ---------------------------------------------------------------------------------------

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'torchfocal-fuzz-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));

export async function runCase(kind: Kind, rng: Rng): Promise<Outcome> {
  switch (kind) {
    case 'idx': {
      let seed: Uint8Array = idxSeed();
      if (int(rng, 0, 2) === 0) seed = zlib.gzipSync(seed);
      return settle(() => parseIdx(mutate(rng, seed), 'fuzz.idx'));
    }
    case 'dataset': {
      // Mutated labels (and sometimes images) through the loader, an imbalance, and a trainer.
      const seed = labelledPairSeed(rng);
      const imagesFile = path.join(tmp, 'images.idx');
      const labelsFile = path.join(tmp, 'labels.idx');
      fs.writeFileSync(imagesFile, int(rng, 0, 3) ? seed.images : mutate(rng, seed.images));
      fs.writeFileSync(labelsFile, int(rng, 0, 1) ? seed.labels : mutate(rng, seed.labels));
      const spec = int(rng, 0, 1)
        ? undefined
        : pick(rng, ['0=0', '3=0.5', '9=0', 'longtail:100', 'step:10:5']);
      return settle(async () => {
        let ds = await loadIdxPair(
          imagesFile,
          labelsFile,
          int(rng, 0, 1) ? [...MNIST_CLASSES] : undefined,
        );
        if (spec) ds = imbalance(ds, spec, 0);
        const trainer = await Trainer.create({
          model: 'mlp',
          classNames: ds.classNames,
          threads: 1,
          batchSize: 5,
        });
        try {
          await trainer.setData({ train: ds });
          await trainer.fit(1);
        } finally {
          trainer.dispose();
        }
      });
    }
    case 'safetensors': {
      // The weights, or the training state (optimizer moments, steps, random stream).
      const { trainer, file, stateFile } = await mlpSeed();
      const weights = int(rng, 0, 1) === 0;
      const bytes = Buffer.from(mutate(rng, weights ? file : stateFile));
      return settle(async () => {
        const decoded = decodeSafetensors(bytes, 'fuzz.safetensors');
        if (weights) await trainer.loadStateDict(decoded.tensors);
        else await trainer.loadTrainState(decoded.tensors);
      });
    }
    case 'image': {
      const file = path.join(tmp, `case.${pick(rng, ['png', 'jpg', 'bmp', 'webp'])}`);
      fs.writeFileSync(file, mutate(rng, await imageSeed()));
      return settle(() =>
        decodeImage(file, 1, int(rng, 0, 1) ? { width: 28, height: 28 } : undefined),
      );
    }
    case 'args':
      return argsCase(rng);
    case 'ops':
      return opsCase(rng);
  }
}

const STRINGS = [
  '',
  '0',
  '-1',
  '1e309',
  'NaN',
  '6=0.01',
  'longtail:100',
  'step:10:5',
  'x=y',
  ',',
  '1,2,3',
  'auto',
  'lenet',
  'mlp',
  '\u0000',
  'a'.repeat(300),
  '6=0.01,6=0.02',
  'step:1e9:1',
];
const NUMBERS = [0, -1, 1, 2, 3, 10, 0.5, NaN, Infinity, -Infinity, 1e300, 2 ** 53, -0];

function randomValue(rng: Rng, depth = 0): unknown {
  switch (int(rng, 0, depth > 1 ? 4 : 7)) {
    case 0:
      return pick(rng, NUMBERS);
    case 1:
      return pick(rng, STRINGS);
    case 2:
      return pick(rng, [undefined, null, true, false]);
    case 3:
      return BigInt(int(rng, -5, 5));
    case 4:
      return Symbol('fuzz');
    case 5:
      return Array.from({ length: int(rng, 0, 12) }, () => randomValue(rng, depth + 1));
    case 6:
      return new Float32Array(int(rng, 0, 40)).map(() => pick(rng, NUMBERS));
    default:
      return Object.fromEntries(
        Array.from({ length: int(rng, 0, 4) }, () => [
          pick(rng, ['a', 'losses', 'seeds', 'models']),
          randomValue(rng, depth + 1),
        ]),
      );
  }
}

// The option keys the native side reads, with values that are sometimes right, mostly wrong.
const TRAINER_KEYS = [
  'model',
  'numClasses',
  'widthDivisor',
  'batchSize',
  'optimizer',
  'lr',
  'lrSchedule',
  'scheduleEpochs',
  'loss',
  'alpha',
  'alphaMode',
  'gamma',
  'labelSmoothing',
  'beta',
  'tau',
  'drwEpoch',
  'seed',
  'threads',
  'device',
  'progressEvery',
  'evalBatchSize',
  'sampler',
  'memoryFormat',
  'amp',
  'cudaGraph',
  'onNan',
];
const GOOD: Record<string, unknown[]> = {
  model: ['mlp', 'lenet'],
  numClasses: [2, 3, 10],
  threads: [1],
  loss: ['ce', 'focal', 'ldam', 'cb-focal'],
  alpha: [[1, 2], [100], []],
  batchSize: [1, 7, 128],
};

async function argsCase(rng: Rng): Promise<Outcome> {
  switch (int(rng, 0, 4)) {
    case 0: {
      // The native constructor and init: every option typed wrong or out of range somewhere.
      const options: Record<string, unknown> = { model: 'mlp', numClasses: 10, threads: 1 };
      for (let k = int(rng, 1, 4); k > 0; k--) {
        const key = pick(rng, TRAINER_KEYS);
        options[key] = GOOD[key] && int(rng, 0, 1) ? pick(rng, GOOD[key]) : randomValue(rng);
      }
      return settle(async () => {
        const t = new (native().NativeTrainer)(options as never);
        try {
          await t.init();
        } finally {
          t.dispose();
        }
      });
    }
    case 1: {
      const rows = int(rng, 0, 6);
      const classes = int(rng, 0, 6);
      const n = int(rng, 0, 1) ? rows * classes : int(rng, 0, 40);
      const input = new Float32Array(n).map(() =>
        int(rng, 0, 9) === 0 ? pick(rng, NUMBERS) : int(rng, -50, 50) / 7,
      );
      const target = Array.from({ length: int(rng, 0, 1) ? rows : int(rng, 0, 8) }, () =>
        int(rng, -101, classes + 1),
      );
      return settle(() =>
        ops.focalLoss({
          input,
          shape: int(rng, 0, 5) ? [rows, classes] : (randomValue(rng) as number[]),
          target,
          alpha: int(rng, 0, 1) ? undefined : (randomValue(rng) as number[]),
          gamma: int(rng, 0, 1) ? 2 : (pick(rng, NUMBERS) as number),
          mode: pick(rng, ['softmax', 'sigmoid', 'bogus'] as never[]),
          reduction: pick(rng, ['mean', 'sum', 'none', 'max'] as never[]),
          labelSmoothing: int(rng, 0, 1) ? 0 : (pick(rng, NUMBERS) as number),
        }),
      );
    }
    case 2: {
      const s = pick(rng, STRINGS) + (int(rng, 0, 1) ? pick(rng, STRINGS) : '');
      return settle(() => {
        alphaList(s);
        intAtLeast(0)(s);
        unitFraction(s);
      });
    }
    case 3: {
      const spec = pick(rng, STRINGS) + pick(rng, ['', ',', ':', '=']) + pick(rng, STRINGS);
      const counts = Array.from({ length: int(rng, 0, 12) }, () => int(rng, 0, 6000));
      return settle(() => imbalanceCounts(spec, counts));
    }
    default:
      return settle(() => parseSweepConfig(randomValue(rng)));
  }
}

// ---- The API's typed-array and shape arguments (issue 16) -----------------------------------------
// ops.focalLoss and the native calls behind it and behind Trainer.predict, called with random
// typed arrays, shapes (huge, zero, negative, non-integer), targets, alpha and gamma; half the
// calls skip the TS checks, so that the addon's own checks are what stands between them and LibTorch.

const DIMS = [
  0,
  0,
  1,
  2,
  3,
  7,
  -1,
  1.5,
  NaN,
  Infinity,
  2 ** 31,
  2 ** 32,
  2 ** 33,
  2 ** 53,
  1e9,
  1e300,
];
const SCALARS = [0, 0.5, 1, 100, -1, -0.5, NaN, Infinity, -Infinity, 1e300, 2 ** 33];

function typedArray(rng: Rng, length: number): unknown {
  const fill = (i: number) => (int(rng, 0, 7) === 0 ? pick(rng, SCALARS) : int(rng, -9, 9) + i * 0);
  switch (int(rng, 0, 7)) {
    case 0:
      return Float64Array.from({ length }, (_, i) => fill(i));
    case 1:
      return Int32Array.from({ length }, () => int(rng, -3, 12));
    case 2:
      return BigInt64Array.from({ length }, () => BigInt(int(rng, -3, 12)));
    case 3:
      return new Uint8Array(length);
    case 4:
      return Array.from({ length }, () => int(rng, -3, 12));
    case 5:
      return pick(rng, [undefined, null, 3, 'x', {}]);
    default:
      return Float32Array.from({ length }, (_, i) => fill(i));
  }
}

let opsTrainer: Promise<InstanceType<ReturnType<typeof native>['NativeTrainer']>> | undefined;
function predictTrainer() {
  opsTrainer ??= (async () => {
    const t = new (native().NativeTrainer)({ model: 'mlp', numClasses: 3, threads: 1 } as never);
    await t.init();
    return t;
  })();
  return opsTrainer;
}

async function opsCase(rng: Rng): Promise<Outcome> {
  // A valid call (softmax or sigmoid) with up to three of its arguments replaced by hostile ones.
  const sigmoid = int(rng, 0, 3) === 0;
  const rows = int(rng, 0, 6);
  const classes = int(rng, 1, 6);
  const length = rows * classes;
  const logits = Array.from({ length }, () => int(rng, -50, 50) / 7);
  const options: Record<string, unknown> = {
    input: (int(rng, 0, 1) ? Float32Array.from(logits) : Float64Array.from(logits)) as unknown,
    shape: [rows, classes],
    target: sigmoid
      ? Float32Array.from({ length }, () => int(rng, 0, 1))
      : Int32Array.from({ length: rows }, () => int(rng, 0, classes - 1)),
    alpha: sigmoid
      ? 0.25
      : pick(rng, [undefined, 0.5, Array.from({ length: classes }, () => int(rng, 0, 100))]),
    gamma: 2,
    mode: sigmoid ? 'sigmoid' : 'softmax',
    reduction: pick(rng, ['mean', 'sum', 'none']),
  };
  for (let k = int(rng, 0, 3); k > 0; k--) {
    switch (int(rng, 0, 7)) {
      case 0:
        options.input = typedArray(rng, int(rng, 0, 1) ? 0 : int(rng, 1, 48));
        break;
      case 1: // shapes that describe no data or far more than is given
        options.shape = pick(rng, [
          [0, pick(rng, DIMS)],
          [pick(rng, DIMS), 0],
          [pick(rng, DIMS), pick(rng, DIMS)],
          Array.from({ length: int(rng, 0, 4) }, () => pick(rng, DIMS)),
          [length],
        ]);
        break;
      case 2:
        options.target = typedArray(rng, pick(rng, [rows, length, int(rng, 0, 8)]));
        break;
      case 3:
        options.alpha = pick(rng, [
          pick(rng, SCALARS),
          Array.from({ length: int(rng, 0, 8) }, () => pick(rng, SCALARS)),
          'x',
        ]);
        break;
      case 4:
        options.gamma = pick(rng, SCALARS);
        break;
      case 5:
        options.ignoreIndex = pick(rng, [-100, 0, classes, 2 ** 40, NaN]);
        break;
      case 6:
        options.labelSmoothing = pick(rng, [0.1, -1, 1, NaN]);
        break;
      default:
        options.withLogits = false;
    }
  }
  switch (int(rng, 0, 4)) {
    case 0:
    case 1:
      return settle(() => ops.focalLoss(options as never));
    case 2:
    case 3:
      return settle(() => native().focalLoss(options as never));
    default: {
      // Trainer.predict's native call: an image stack and its claimed count × channels × height × width
      const images = int(rng, 0, 4) ? new Uint8Array(int(rng, 0, 48)) : typedArray(rng, length);
      const dims = () => (int(rng, 0, 2) ? int(rng, 1, 8) : pick(rng, DIMS));
      const t = await predictTrainer();
      const shape = int(rng, 0, 5)
        ? { count: dims(), channels: dims(), height: dims(), width: dims() }
        : pick(rng, [undefined, null, 7, 'shape', [1, 1, 28, 28]]);
      return settle(() => t.predict(images as never, shape as never));
    }
  }
}
