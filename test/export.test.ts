// `torchfocal export --format onnx`: for every zoo network, onnxruntime-node running the exported
// file gives torchfocal's own logits (Trainer.logits) and probabilities (predict) to 1e-4, with
// and without a normalisation folded in front; ONNX's own checker (python3-onnx) accepts every
// file and reads its metadata back; bad inputs end in one line and leave no file.
//
// Normalisation: torchfocal's training writes none yet (mean 0, std 1). Until `train --normalize`
// exists, the normalised case writes one into a copy of the checkpoint's config.json
// (`withNormalisation` below: config.json is outside the checkpoint's manifest) and checks the
// export against the engine's logits of inputs normalised here, (x − mean) / std; predict, which
// applies no normalisation today, is compared on the checkpoint as training wrote it. Once
// --normalize lands, train with it and compare predict on the normalised checkpoint too.
import test from 'ava';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import * as ort from 'onnxruntime-node';
import { channelNormalisation, models, Trainer, type CheckpointConfig } from '../ts/index';
import type { NativeTensor } from '../ts/native';
import { PYTHON, ROOT, jsonLines, runCli, tempDir } from './helpers/cli';

const CLASSES = ['cat', 'dog', 'émeu'];
const BATCH = 3;
const TOLERANCE = 1e-4;

// Every zoo network, narrow where it can be; `form`: how the normalised copy writes mean and std
// (one per channel, or one number for all: both forms a checkpoint may hold).
const NETWORKS = [
  { model: 'mlp', widthDivisor: 1, form: 'array' },
  { model: 'lenet', widthDivisor: 1, form: 'number' },
  { model: 'alexnet', widthDivisor: 1, form: 'array' },
  { model: 'vgg', widthDivisor: 16, form: 'number' },
  { model: 'googlenet', widthDivisor: 1, form: 'array' },
  { model: 'resnet', widthDivisor: 16, form: 'number' },
  { model: 'resnet32', widthDivisor: 1, form: 'array' },
  { model: 'resnet18', widthDivisor: 16, form: 'number' },
  { model: 'resnet50', widthDivisor: 16, form: 'array' },
] as const;
type Network = (typeof NETWORKS)[number];

// Every folder the tests write (checkpoints and models of up to 230 MB each), removed at the end.
const folders: string[] = [];
function scratch(): string {
  const dir = tempDir('torchfocal-export-');
  folders.push(dir);
  return dir;
}
test.after.always('remove the written checkpoints and models', () => {
  for (const dir of folders) fs.rmSync(dir, { recursive: true, force: true });
});

const MEAN = 0.45;
const STD = 0.22;
// What the networks' outputs must at least change by, over the batch's images and with the
// normalisation, for a comparison to TOLERANCE to tell a wrong graph from a right one.
const SENSITIVE = 500 * TOLERANCE;

// The batch the networks are compared on: random pixels in [0, 1], each image in a band of its
// own (0.4 wide, at a random height), so that the images differ in their overall brightness too,
// which global pooling keeps, and not only in noise, which it averages away.
function testBatch(pixels: number): Float32Array {
  const draw = uniform(17);
  const x = new Float32Array(BATCH * pixels);
  for (let i = 0; i < BATCH; i++) {
    const low = 0.6 * draw();
    for (let p = 0; p < pixels; p++) x[i * pixels + p] = low + 0.4 * draw();
  }
  return x;
}

// (x − mean) / std, as the exported model's first two operators compute it
function standardise(x: Float32Array): Float32Array {
  return Float32Array.from(x, (v) => (v - MEAN) / STD);
}

// A fixed stream of numbers in [0, 1) (an LCG), so every run sees the same batch and weights.
function uniform(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

/**
 * A checkpoint of `net` with random weights under which the output depends on the input (the
 * zoo's own initialisation leaves GoogLeNet's logits within 1e-7 of each other over different
 * images, which no comparison to 1e-4 could tell apart): every convolution and linear weight drawn
 * to keep the activations' scale through its layer (He's uniform, for ReLU; a gain of 4 for
 * LeNet's sigmoids, whose slope is 1/4 at 0), batch norm's running statistics, scale and shift
 * drawn at random (so that evaluation-mode batch norm is really checked), and the head scaled so
 * that the largest logit of the test batches is 4 (so that 1e-4 is a small part of every output).
 */
async function checkpointOf(
  net: Network,
  batches: Float32Array[],
  channels: number,
): Promise<string> {
  const trainer = await Trainer.create({
    model: net.model,
    classNames: CLASSES,
    widthDivisor: net.widthDivisor,
    threads: 1,
    seed: 11,
  });
  try {
    const state = await trainer.stateDict();
    const f32 = (t: NativeTensor) => new Float32Array(t.data as ArrayBuffer);
    const draw = uniform(5);
    const fill = (t: NativeTensor, lo: number, hi: number) =>
      f32(t).forEach((_, i, a) => (a[i] = lo + (hi - lo) * draw()));
    const batchNorms = new Set(
      state.filter((t) => t.name.endsWith('.running_mean')).map((t) => owner(t.name)),
    );
    const gain = net.model === 'lenet' ? 4 : Math.SQRT2;
    const BATCH_NORM: Record<string, [number, number]> = {
      running_mean: [-0.3, 0.3],
      running_var: [0.5, 2],
      weight: [0.5, 1.5],
      bias: [-0.3, 0.3],
    };
    for (const t of state.filter((t) => t.dtype === 'F32')) {
      const field = t.name.slice(owner(t.name).length);
      if (batchNorms.has(owner(t.name))) {
        fill(t, ...BATCH_NORM[field]);
      } else if (field === 'weight') {
        const bound = gain * Math.sqrt(3 / t.shape.slice(1).reduce((a, b) => a * b, 1));
        fill(t, -bound, bound);
      } else if (field === 'bias') {
        fill(t, -0.1, 0.1);
      }
    }
    await trainer.loadStateDict(state);
    let largest = 0;
    for (const x of batches) {
      for (const v of await trainer.logits(x, BATCH, channels))
        largest = Math.max(largest, Math.abs(v));
    }
    const scale = 4 / largest;
    const head = owner(state.filter((t) => t.shape.length === 2).at(-1)!.name); // last linear
    for (const t of state.filter((t) => owner(t.name) === head)) {
      f32(t).forEach((v, i, a) => (a[i] = v * scale));
    }
    await trainer.loadStateDict(state);
    const dir = path.join(scratch(), net.model);
    await trainer.save(dir);
    return dir;
  } finally {
    trainer.dispose();
  }
}

// "1.0.bn1.weight" -> "1.0.bn1." (the module a tensor belongs to)
function owner(name: string): string {
  return name.slice(0, name.lastIndexOf('.') + 1);
}

/** A copy of the checkpoint `dir` whose config.json holds `normalisation` (the test-only path). */
function withNormalisation(dir: string, normalisation: Record<string, unknown>): string {
  const copy = path.join(scratch(), path.basename(dir));
  fs.cpSync(dir, copy, { recursive: true });
  const file = path.join(copy, 'config.json');
  const config = JSON.parse(fs.readFileSync(file, 'utf8'));
  config.normalisation = { ...config.normalisation, ...normalisation };
  fs.writeFileSync(file, JSON.stringify(config, null, 2));
  return copy;
}

async function exportCli(checkpoint: string): Promise<{ file: string; summary: any }> {
  const file = path.join(scratch(), 'model.onnx');
  const args = ['export', '--checkpoint', checkpoint, '--format', 'onnx', '--out', file];
  const r = await runCli([...args, '--threads', '1', '--json']);
  if (r.code !== 0) throw new Error(`export failed (${r.code}): ${r.stderr}`);
  const lines = jsonLines(r.stdout);
  if (lines.length !== 1) throw new Error(`expected one JSON line, got: ${r.stdout}`);
  return { file, summary: lines[0] };
}

async function runOnnx(file: string, x: Float32Array, dims: number[]): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(file, { intraOpNumThreads: 1 });
  try {
    const out = await session.run({ input: new ort.Tensor('float32', x, dims) });
    return out.logits.data as Float32Array;
  } finally {
    await session.release();
  }
}

function maxDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`lengths differ: ${a.length} and ${b.length}`);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  return worst;
}

// The largest range of one class's logit over the images of a batch.
function batchSpread(logits: Float32Array, classes: number): number {
  let widest = 0;
  for (let c = 0; c < classes; c++) {
    const column = Array.from(
      { length: logits.length / classes },
      (_, r) => logits[r * classes + c],
    );
    widest = Math.max(widest, Math.max(...column) - Math.min(...column));
  }
  return widest;
}

function softmaxRows(logits: Float32Array, classes: number): number[] {
  const out: number[] = [];
  for (let r = 0; r < logits.length / classes; r++) {
    const row = Array.from(logits.subarray(r * classes, (r + 1) * classes));
    const top = Math.max(...row);
    const e = row.map((v) => Math.exp(v - top));
    const sum = e.reduce((s, v) => s + v, 0);
    out.push(...e.map((v) => v / sum));
  }
  return out;
}

// Each network: its checkpoint, then both exports; the checker's test waits for all files.
const prepared = new Map(
  NETWORKS.map((net) => {
    const work = (async () => {
      const size = models().find((m) => m.name === net.model)!.inputSize;
      const channels = 1; // every zoo network takes grey images today
      const x = testBatch(channels * size * size);
      const dir = await checkpointOf(net, [x, standardise(x)], channels);
      const normalisation =
        net.form === 'array' ? { mean: [MEAN], std: [STD], channels } : { mean: MEAN, std: STD };
      const plain = await exportCli(dir);
      const normalised = await exportCli(withNormalisation(dir, normalisation));
      return { size, channels, x, dir, plain, normalised };
    })();
    work.catch(() => {}); // reported by the tests that await it
    return [net.model, work];
  }),
);

for (const net of NETWORKS) {
  test(`${net.model}: onnxruntime-node gives torchfocal's logits and predict's probabilities to 1e-4`, async (t) => {
    const { size, channels, x, dir, plain } = await prepared.get(net.model)!;
    const dims = [BATCH, channels, size, size];
    t.like(plain.summary, {
      format: 'onnx',
      file: plain.file,
      bytes: fs.statSync(plain.file).size,
      opset: 13,
      model: net.model,
      classes: CLASSES,
      inputSize: size,
      channels,
      mean: [0],
      std: [1],
    });
    const trainer = await Trainer.load(dir, { threads: 1 });
    try {
      // logits of inputs in [0, 1]
      const expected = await trainer.logits(x, BATCH, channels);
      const got = await runOnnx(plain.file, x, dims);
      const logits = maxDifference(got, expected);
      t.log(`${net.model}: max |logit difference| ${logits.toExponential(2)}`);
      t.true(logits <= TOLERANCE, `logits differ by ${logits}`);
      // predict's probabilities of uint8 images at the network's side, as the file runs them
      const draw = uniform(23);
      const pixels = Uint8Array.from({ length: BATCH * size * size }, () =>
        Math.floor(256 * draw()),
      );
      const predictions = await trainer.predict(pixels, {
        count: BATCH,
        height: size,
        width: size,
      });
      const onnx = softmaxRows(
        await runOnnx(
          plain.file,
          Float32Array.from(pixels, (p) => p / 255),
          dims,
        ),
        CLASSES.length,
      );
      const probabilities = maxDifference(
        onnx,
        predictions.flatMap((p) => p.probabilities),
      );
      t.log(`${net.model}: max |probability difference| ${probabilities.toExponential(2)}`);
      t.true(probabilities <= TOLERANCE, `probabilities differ by ${probabilities}`);
      // the output depends on the image, by far more than the tolerance: a graph that computed
      // another function would fail above
      const spread = batchSpread(expected, CLASSES.length);
      t.log(`${net.model}: logits vary by ${spread.toFixed(2)} over the batch`);
      t.true(spread > SENSITIVE, `logits vary by only ${spread} over the batch`);
      t.true(maxDifference(onnx, new Array(onnx.length).fill(1 / CLASSES.length)) > 0.01);
    } finally {
      trainer.dispose();
    }
  });

  test(`${net.model}: the checkpoint's normalisation is folded in front (${net.form} form)`, async (t) => {
    const { size, channels, x, dir, normalised } = await prepared.get(net.model)!;
    t.like(normalised.summary, { mean: [MEAN], std: [STD], channels });
    const trainer = await Trainer.load(dir, { threads: 1 });
    try {
      const expected = await trainer.logits(standardise(x), BATCH, channels);
      const got = await runOnnx(normalised.file, x, [BATCH, channels, size, size]);
      const difference = maxDifference(got, expected);
      t.log(
        `${net.model}: max |logit difference| with normalisation ${difference.toExponential(2)}`,
      );
      t.true(difference <= TOLERANCE, `logits differ by ${difference}`);
      // the normalisation matters to this network's output: a file without it would fail above
      const unnormalised = await trainer.logits(x, BATCH, channels);
      const change = maxDifference(expected, unnormalised);
      t.log(`${net.model}: the normalisation changes the logits by ${change.toFixed(2)}`);
      t.true(change > SENSITIVE, `the normalisation changes the logits by only ${change}`);
    } finally {
      trainer.dispose();
    }
  });
}

test("ONNX's checker (python3-onnx) accepts every exported file and reads its metadata", async (t) => {
  const all = await Promise.all(NETWORKS.map((net) => prepared.get(net.model)!));
  const files = all.flatMap((p) => [p.plain.file, p.normalised.file]);
  let stdout: string;
  try {
    ({ stdout } = await promisify(execFile)(
      PYTHON,
      [path.join(ROOT, 'test', 'fixtures', 'onnx_check.py'), ...files],
      { maxBuffer: 1 << 24 },
    ));
  } catch (err) {
    // a missing module is a failure, never a skip: scripts/setup.sh installs python3-onnx
    t.fail(
      `onnx_check.py failed (python3-onnx is installed by scripts/setup.sh): ${(err as Error).message}`,
    );
    return;
  }
  const report = JSON.parse(stdout);
  NETWORKS.forEach((net, i) => {
    const { size, channels, plain, normalised } = all[i];
    for (const [file, mean, std] of [
      [plain.file, [0], [1]],
      [normalised.file, [MEAN], [STD]],
    ] as const) {
      const r = report[file];
      t.is(r.ir_version, 7, file);
      t.deepEqual(r.opsets, { '': 13 });
      t.deepEqual(r.inputs, { input: ['N', channels, size, size] });
      t.deepEqual(r.outputs, { logits: ['N', CLASSES.length] });
      t.deepEqual(JSON.parse(r.metadata.class_names), CLASSES);
      t.is(r.metadata.network, net.model);
      t.is(Number(r.metadata.input_size), size);
      t.is(Number(r.metadata.channels), channels);
      t.deepEqual(JSON.parse(r.metadata.mean), mean);
      t.deepEqual(JSON.parse(r.metadata.std), std);
      const input = `input: float32 N×${channels}×${size}×${size} in [0, 1], already resized to ${size}×${size} bilinear`;
      t.is(r.metadata.input, input);
      t.true(r.doc_string.includes(input));
      // the normalisation's two operators are there only where there is one
      const normalises = r.op_types.includes('Sub') && r.op_types.includes('Div');
      t.is(normalises, file === normalised.file, file);
    }
  });
});

test('export: a missing checkpoint, another --format or an unwritable --out end in one line and leave no file', async (t) => {
  const { dir } = await prepared.get('mlp')!;
  const work = scratch();
  const out = path.join(work, 'model.onnx');
  const taken = path.join(work, 'taken');
  fs.mkdirSync(taken);
  const cases: { args: string[]; code: number; message: RegExp }[] = [
    {
      args: ['--checkpoint', path.join(work, 'nothing'), '--out', out],
      code: 1,
      message: /nothing.*not a torchfocal checkpoint/,
    },
    {
      args: ['--checkpoint', dir, '--format', 'tflite', '--out', out],
      code: 2,
      message: /--format.*tflite.*onnx/,
    },
    {
      args: ['--checkpoint', dir, '--out', path.join(work, 'no', 'such', 'folder', 'model.onnx')],
      code: 1,
      message: /folder .* does not exist/,
    },
    // a folder where the file should go: the written file cannot be renamed onto it
    { args: ['--checkpoint', dir, '--out', taken], code: 1, message: /taken: cannot write it/ },
    {
      args: ['--checkpoint', withNormalisation(dir, { std: [0] }), '--out', out],
      code: 1,
      message: /normalisation has a std that is not positive/,
    },
  ];
  for (const c of cases) {
    const r = await runCli(['export', ...c.args]);
    const context = `${c.args.join(' ')}: ${r.stderr}`;
    t.is(r.code, c.code, context);
    t.is(r.stdout, '', context);
    t.regex(r.stderr, /^torchfocal: [^\n]+\n$/, context);
    t.regex(r.stderr, c.message, context);
    // nothing written, not even a temporary file
    t.deepEqual(fs.readdirSync(work), ['taken'], context);
    t.deepEqual(fs.readdirSync(taken), [], context);
  }
});

test("a checkpoint's normalisation in either form, per channel, for inputs in [0, 1]", (t) => {
  const read = (normalisation: Record<string, unknown>, channels: number) =>
    channelNormalisation({ normalisation } as unknown as CheckpointConfig, channels);
  const perPixel = { scale: 1 / 255, resize: 'bilinear' };
  t.deepEqual(read({ ...perPixel, mean: 0, std: 1 }, 3), { mean: [0, 0, 0], std: [1, 1, 1] });
  t.deepEqual(read({ ...perPixel, mean: [0.5, 0.25, 0], std: [0.5, 2, 1], channels: 3 }, 3), {
    mean: [0.5, 0.25, 0],
    std: [0.5, 2, 1],
  });
  // a scale other than 1/255 (pixels taken as they are) is folded into mean and std
  const folded = read({ scale: 1, mean: 114.75, std: 51, resize: 'bilinear' }, 1);
  t.true(Math.abs(folded.mean[0] - 0.45) < 1e-12 && Math.abs(folded.std[0] - 0.2) < 1e-12);
  const refusal = (n: Record<string, unknown>, channels: number) =>
    t.throws(() => read({ ...perPixel, ...n }, channels))?.message;
  t.regex(refusal({ mean: [0, 0], std: 1 }, 3)!, /2 values of mean for 3 channels/);
  t.regex(refusal({ mean: 0, std: 1, channels: 3 }, 1)!, /is for 3 channels, the network takes 1/);
  t.regex(refusal({ mean: 'x', std: 1 }, 1)!, /mean that is not a finite number/);
  t.regex(refusal({ mean: 0, std: -1 }, 1)!, /std that is not positive/);
  t.regex(refusal({ mean: 0, std: 1, scale: 0 }, 1)!, /no positive scale/);
});
