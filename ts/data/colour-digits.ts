// Colour long-tail digits: a small colour image set with a long-tail profile, made from the MNIST
// that ships with the package (no download), for tests, demos and the README's colour recipes.
//
// Each image is an MNIST digit (28×28) stroked in a colour and laid at a random offset on a
// 32×32 textured background (two random colours mixed by a random sinusoidal grating). The
// stroke's hue is its class's (class k: 36·k degrees, ±10) for 70% of the images and random
// for the rest, so colour is a strong cue but not the whole answer; shape is still needed. The
// training split keeps n_k = round(maxPerClass · ratio^(−k/9)) images of class k (the
// `longtail:RATIO` profile); the test split is balanced. It is not CIFAR: its backgrounds and
// colours are synthetic and its shapes are digits; it exercises colour, augmentation and
// long-tail losses at CIFAR's size, and says nothing about accuracy on natural images.
import fs from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';
import { xoroshiro128plus } from 'pure-rand/generator/xoroshiro128plus';
import { uniformFloat64 } from 'pure-rand/distribution/uniformFloat64';
import { uniformInt } from 'pure-rand/distribution/uniformInt';
import type { Dataset, DataSplit } from './dataset';
import { imbalance } from './imbalance';
import { loadMnist, MNIST_CLASSES } from './mnist';

export const COLOUR_DIGITS_SIDE = 32;

export interface ColourDigitsOptions {
  /** largest to smallest training class (default 100, the CIFAR-LT papers' ρ) */
  ratio?: number;
  /** training images of the largest class (default 500) */
  maxPerClass?: number;
  /** test images per class (default 100) */
  testPerClass?: number;
  /** the seed of the digits chosen, their colours, offsets and backgrounds (default 0) */
  seed?: number;
}

type Rng = ReturnType<typeof xoroshiro128plus>;

// HSV (h in degrees, s and v in [0, 1]) to 8-bit RGB.
function hsv(h: number, s: number, v: number): [number, number, number] {
  const f = (n: number) => {
    const k = (n + h / 60) % 6;
    return Math.round(255 * (v - v * s * Math.max(0, Math.min(k, 4 - k, 1))));
  };
  return [f(5), f(3), f(1)];
}

// One 32×32 RGB image (interleaved) of a 28×28 grey digit of class `label`.
function drawDigit(digit: Uint8Array, label: number, rng: Rng): Uint8Array {
  const side = COLOUR_DIGITS_SIDE;
  const u = () => uniformFloat64(rng);
  const hue = u() < 0.7 ? (36 * label + 20 * (u() - 0.5) + 360) % 360 : 360 * u();
  const ink = hsv(hue, 0.6 + 0.4 * u(), 0.7 + 0.3 * u());
  const back = [
    hsv(360 * u(), 0.5 * u(), 0.1 + 0.4 * u()),
    hsv(360 * u(), 0.5 * u(), 0.1 + 0.4 * u()),
  ];
  const [fx, fy, phase] = [u() * 0.8, u() * 0.8, 2 * Math.PI * u()];
  const dx = uniformInt(rng, 0, side - 28);
  const dy = uniformInt(rng, 0, side - 28);
  const out = new Uint8Array(side * side * 3);
  for (let y = 0; y < side; y++) {
    for (let x = 0; x < side; x++) {
      const mix = 0.5 + 0.5 * Math.sin(fx * x + fy * y + phase);
      const inside = x >= dx && x < dx + 28 && y >= dy && y < dy + 28;
      const alpha = inside ? digit[(y - dy) * 28 + (x - dx)] / 255 : 0;
      for (let c = 0; c < 3; c++) {
        const bg = back[0][c] * mix + back[1][c] * (1 - mix);
        out[(y * side + x) * 3 + c] = Math.round(bg * (1 - alpha) + ink[c] * alpha);
      }
    }
  }
  return out;
}

// `perClass` images of each digit from `source`, drawn in colour, as planar RGB.
function colourSplit(source: Dataset, perClass: number, rng: Rng, name: string): Dataset {
  const side = COLOUR_DIGITS_SIDE;
  const bytes = 3 * side * side;
  const byClass: number[][] = Array.from({ length: 10 }, () => []);
  for (let i = 0; i < source.count; i++) byClass[source.labels[i]].push(i);
  const count = 10 * perClass;
  const images = new Uint8Array(count * bytes);
  const labels = new Int32Array(count);
  let k = 0;
  for (let label = 0; label < 10; label++) {
    if (byClass[label].length < perClass) {
      throw new RangeError(`colour digits: ${perClass} per class is more than MNIST's ${name} has`);
    }
    for (let n = 0; n < perClass; n++, k++) {
      const i = byClass[label][uniformInt(rng, 0, byClass[label].length - 1)];
      const rgb = drawDigit(source.images.subarray(i * 784, (i + 1) * 784), label, rng);
      const plane = side * side;
      for (let p = 0; p < plane; p++) {
        for (let c = 0; c < 3; c++) images[k * bytes + c * plane + p] = rgb[3 * p + c];
      }
      labels[k] = label;
    }
  }
  const classNames = [...MNIST_CLASSES];
  return {
    images,
    labels,
    count,
    channels: 3,
    height: side,
    width: side,
    classNames,
    source: name,
  };
}

/** The colour long-tail digits in memory (see the file's head for what they are). */
export async function makeColourDigits(options: ColourDigitsOptions = {}): Promise<DataSplit> {
  const ratio = options.ratio ?? 100;
  const maxPerClass = options.maxPerClass ?? 500;
  const testPerClass = options.testPerClass ?? 100;
  const seed = options.seed ?? 0;
  for (const [name, v] of Object.entries({ maxPerClass, testPerClass, seed })) {
    if (!Number.isSafeInteger(v) || v < (name === 'seed' ? 0 : 1)) {
      throw new RangeError(`colour digits: ${name} must be a whole number, got ${v}`);
    }
  }
  const mnist = await loadMnist();
  const rng = xoroshiro128plus(seed);
  const balanced = colourSplit(mnist.train, maxPerClass, rng, 'colour-digits:train');
  const test = colourSplit(mnist.test, testPerClass, rng, 'colour-digits:test');
  const train = ratio === 1 ? balanced : imbalance(balanced, `longtail:${ratio}`, seed);
  return { name: `colour-digits-lt${ratio}`, train, test };
}

/**
 * Writes the set as an image folder, ROOT/{training,testing}/<digit>/NNNNN.png, through a
 * temporary folder renamed into place (a half-written set never takes ROOT's name).
 */
export async function writeColourDigits(
  root: string,
  options: ColourDigitsOptions = {},
): Promise<void> {
  const { train, test } = await makeColourDigits(options);
  const temp = `${root}.partial-${process.pid}`;
  await fs.rm(temp, { recursive: true, force: true });
  try {
    for (const [split, ds] of [
      ['training', train],
      ['testing', test],
    ] as const) {
      const side = COLOUR_DIGITS_SIDE;
      const plane = side * side;
      const seen = new Array<number>(10).fill(0);
      for (let i = 0; i < ds.count; i++) {
        const label = ds.labels[i];
        const dir = path.join(temp, split, ds.classNames[label]);
        if (seen[label] === 0) await fs.mkdir(dir, { recursive: true });
        const rgb = new Uint8Array(3 * plane);
        for (let p = 0; p < plane; p++) {
          for (let c = 0; c < 3; c++) rgb[3 * p + c] = ds.images[i * 3 * plane + c * plane + p];
        }
        const file = path.join(dir, `${String(seen[label]++).padStart(5, '0')}.png`);
        await sharp(Buffer.from(rgb), { raw: { width: side, height: side, channels: 3 } })
          .png()
          .toFile(file);
      }
    }
    await fs.rename(temp, root).catch(async (err: NodeJS.ErrnoException) => {
      // another process wrote the same set first: theirs is as good as ours
      if (err.code !== 'ENOTEMPTY' && err.code !== 'EEXIST') throw err;
      await fs.rm(temp, { recursive: true, force: true });
    });
  } catch (err) {
    await fs.rm(temp, { recursive: true, force: true });
    throw err;
  }
}

/** The name `--dataset` knows the set by. */
export const COLOUR_DIGITS = 'colour-digits';

/**
 * The set's image folder in the cache (`cacheDir()`), written there on first use with the
 * default options (ρ = 100, 500 to 5 training images per class, 100 test images per class).
 */
export async function colourDigitsFolder(cache: string): Promise<string> {
  const root = path.join(cache, 'colour-digits-lt100');
  const exists = await fs.stat(path.join(root, 'testing')).then(
    () => true,
    () => false,
  );
  if (!exists) {
    await fs.mkdir(cache, { recursive: true });
    await writeColourDigits(root);
  }
  return root;
}
