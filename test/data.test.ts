import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import sharp from 'sharp';
import { execFileSync } from 'node:child_process';
import { PYTHON } from './helpers/cli';
import {
  applyImbalance,
  classCounts,
  imbalance,
  imbalanceCounts,
  FASHION_MNIST_CLASSES,
  loadDataset,
  loadFashionMnist,
  loadIdxPair,
  loadImageFolder,
  loadMnist,
  loadTestSet,
  type LoadProgress,
  parseImbalance,
  readIdx,
  subset,
  type Dataset,
  decodeImage,
} from '../ts/data/index';

const MNIST_TRAIN = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949];
const MNIST_TEST = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009];

// Both tests and the imbalance checks read MNIST; one load is enough (nothing mutates it).
const mnist = loadMnist();

function tempDir(t: ExecutionContext): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'torchfocal-data-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

// An IDX file: magic (0, 0, type, ndims), big-endian dims, then the data bytes.
function idx(dims: number[], data: ArrayLike<number>, type = 0x08): Buffer {
  const header = Buffer.alloc(4 + 4 * dims.length);
  header.set([0, 0, type, dims.length]);
  dims.forEach((d, i) => header.writeUInt32BE(d, 4 + 4 * i));
  return Buffer.concat([header, Buffer.from(Array.from(data))]);
}

function write(dir: string, name: string, content: Buffer | string): string {
  const file = path.join(dir, name);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, content);
  return file;
}

async function timed<T>(t: ExecutionContext, what: string, load: () => Promise<T>): Promise<T> {
  const start = performance.now();
  const result = await load();
  t.log(`${what}: ${(performance.now() - start).toFixed(0)} ms`);
  return result;
}

test('mnist: 60,000 + 10,000 images of 28×28 with the known class counts', async (t) => {
  const m = await timed(t, 'mnist from IDX', () => loadDataset('mnist'));
  t.is(m.name, 'mnist');
  for (const [ds, counts, source] of [
    [m.train, MNIST_TRAIN, 'mnist:train'],
    [m.test, MNIST_TEST, 'mnist:test'],
  ] as const) {
    t.is(ds.source, source);
    t.is(
      ds.count,
      counts.reduce((a, b) => a + b),
    );
    t.is(ds.height, 28);
    t.is(ds.width, 28);
    t.is(ds.images.length, ds.count * 28 * 28);
    t.deepEqual(ds.classNames, ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']);
    t.deepEqual(classCounts(ds), [...counts]);
  }
  t.deepEqual(Array.from(m.train.labels.subarray(0, 6)), [5, 0, 4, 1, 9, 2]);
});

test('fashion-mnist: loads from the gzipped Debian files, 6,000 + 1,000 per class', async (t) => {
  const f = await timed(t, 'fashion-mnist from gzip', () => loadDataset('fashion-mnist'));
  t.is(f.name, 'fashion-mnist');
  t.is(f.train.count, 60000);
  t.is(f.test.count, 10000);
  t.is(f.train.images.length, 60000 * 28 * 28);
  t.deepEqual(classCounts(f.train), new Array(10).fill(6000));
  t.deepEqual(classCounts(f.test), new Array(10).fill(1000));
  t.deepEqual(f.train.classNames, FASHION_MNIST_CLASSES);
  t.is(f.train.classNames[5], 'Sandal');
  t.is(f.train.labels[0], 9); // the first training image is an ankle boot
});

test('fashion-mnist: a missing folder says which Debian package to install', async (t) => {
  await t.throwsAsync(loadFashionMnist('/no/such/fashion'), {
    message:
      /^\/no\/such\/fashion: Fashion-MNIST not found; .*apt-get install dataset-fashion-mnist/,
  });
});

test('idx: raw and gzipped files read the same', async (t) => {
  const dir = tempDir(t);
  const raw = idx([2, 2, 3], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
  const a = await readIdx(write(dir, 'a-idx3-ubyte', raw));
  // Named .idx on purpose: gzip is recognised by its magic bytes, not by the extension.
  const b = await readIdx(write(dir, 'b.idx', zlib.gzipSync(raw)));
  t.deepEqual(a.dims, [2, 2, 3]);
  t.deepEqual(Array.from(a.data), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
  t.deepEqual(b.dims, a.dims);
  t.deepEqual(Array.from(b.data), Array.from(a.data));
});

test('idx: every malformed file is named with what is wrong', async (t) => {
  const dir = tempDir(t);
  const good = idx([10, 28, 28], new Uint8Array(7840));
  const cases: [string, Buffer, string | RegExp][] = [
    [
      'magic',
      Buffer.concat([Buffer.from([1, 2]), good.subarray(2)]),
      /: not an IDX file: magic number 0x01020803 does not start with two zero bytes$/,
    ],
    [
      'float',
      idx([2], [0, 0, 0, 0, 0, 0, 0, 0], 0x0d),
      ': IDX data type 0x0d (float32) is not supported; only unsigned bytes (0x08) are',
    ],
    [
      'weird-type',
      idx([2], [0, 0], 0x42),
      ': IDX data type 0x42 (unknown) is not supported; only unsigned bytes (0x08) are',
    ],
    ['no-dims', Buffer.from([0, 0, 8, 0]), ': IDX header declares 0 dimensions'],
    [
      'short-header',
      Buffer.from([0, 0, 8, 3, 0, 0, 0, 10]),
      ': truncated: the header of 3 dimensions needs 16 bytes but the file has 8',
    ],
    ['tiny', Buffer.from([0, 0]), ': truncated: 2 bytes is too short for an IDX header'],
    ['zero-dim', idx([10, 0, 28], []), ': IDX header has an empty dimension (10×0×28)'],
    [
      't10k-images-idx3-ubyte',
      good.subarray(0, 16 + 1234),
      ': truncated: header says 10×28×28 (7840 bytes of data) but 1234 bytes follow',
    ],
    [
      'extra',
      Buffer.concat([good, Buffer.alloc(3)]),
      ': has 3 extra bytes: header says 10×28×28 (7840 bytes of data) but 7843 bytes follow',
    ],
    [
      'corrupt.gz',
      Buffer.from([0x1f, 0x8b, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]),
      /: not a valid gzip file \(.+\)$/,
    ],
    [
      'truncated.gz',
      zlib.gzipSync(good).subarray(0, 40),
      ': not a valid gzip file (unexpected end of file)',
    ],
  ];
  for (const [name, content, expected] of cases) {
    const file = write(dir, name, content);
    const err = await t.throwsAsync(readIdx(file));
    if (typeof expected === 'string') t.is(err?.message, file + expected, name);
    else t.regex(err?.message ?? '', new RegExp('^' + file + expected.source), name);
    t.false(err?.message.includes('\n'), name);
  }
  await t.throwsAsync(readIdx(path.join(dir, 'absent')), {
    message: `${path.join(dir, 'absent')}: no such file`,
  });
});

test('idx: image/label pairs are checked against each other', async (t) => {
  const dir = tempDir(t);
  const images = write(dir, 'images', idx([3, 2, 2], new Uint8Array(12)));
  const labels = write(dir, 'labels', idx([3], [0, 2, 1]));
  const four = write(dir, 'four-labels', idx([4], [0, 1, 1, 0]));
  const ds = await loadIdxPair(images, labels);
  t.deepEqual(ds.classNames, ['0', '1', '2']);
  t.deepEqual(Array.from(ds.labels), [0, 2, 1]);
  t.true(ds.labels instanceof Int32Array);
  t.deepEqual([ds.count, ds.height, ds.width], [3, 2, 2]);

  await t.throwsAsync(loadIdxPair(images, four), {
    message: `${images} has 3 images but ${four} has 4 labels`,
  });
  await t.throwsAsync(loadIdxPair(images, labels, ['a', 'b']), {
    message: `${labels}: label 2 (at index 1) is out of range: there are 2 classes (0..1)`,
  });
  await t.throwsAsync(loadIdxPair(labels, labels), {
    message: `${labels}: expected images of 3 dimensions (count×height×width), the header says 3`,
  });
  await t.throwsAsync(loadIdxPair(images, images), {
    message: `${images}: expected labels of 1 dimension (count), the header says 3×2×2`,
  });
});

test('dataset: a folder of MNIST-style IDX files, raw or gzipped, loads by path', async (t) => {
  const dir = tempDir(t);
  write(dir, 'train-images-idx3-ubyte', idx([4, 1, 2], [1, 2, 3, 4, 5, 6, 7, 8]));
  write(dir, 'train-labels-idx1-ubyte.gz', zlib.gzipSync(idx([4], [0, 1, 2, 1])));
  write(dir, 't10k-images-idx3-ubyte.gz', zlib.gzipSync(idx([1, 1, 2], [9, 9])));
  write(dir, 't10k-labels-idx1-ubyte', idx([1], [2]));
  const split = await loadDataset(dir);
  t.is(split.name, dir);
  t.deepEqual(split.train.classNames, ['0', '1', '2']);
  t.deepEqual(split.test.classNames, ['0', '1', '2']);
  t.deepEqual(classCounts(split.train), [1, 2, 1]);
  t.is(split.test.source, `${dir}:test`);

  fs.rmSync(path.join(dir, 't10k-labels-idx1-ubyte'));
  await t.throwsAsync(loadDataset(dir), {
    message: `${dir}: missing t10k-labels-idx1-ubyte (or t10k-labels-idx1-ubyte.gz)`,
  });
});

test('dataset: an unknown name that is no folder is rejected', async (t) => {
  await t.throwsAsync(loadDataset('foo'), {
    message:
      "--dataset: 'foo' is neither mnist, fashion-mnist, cifar10[:DIR], cifar100[:DIR], colour-digits nor an existing folder",
  });
});

// A uniform grayscale PNG: its value tells the test which file it came from.
async function png(file: string, value: number, size = 28): Promise<void> {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  await sharp(Buffer.alloc(size * size, value), { raw: { width: size, height: size, channels: 1 } })
    .toColourspace('b-w') // sharp would otherwise write RGB
    .png()
    .toFile(file);
}

test('image folder: classes, labels, the common size, resizing and skipped files', async (t) => {
  const root = tempDir(t);
  const train = path.join(root, 'training');
  const test_ = path.join(root, 'testing');
  // Python's sorted() order is code-point order: 'Zebra' < 'cat' < 'ｆｏｘ' (U+FF46) < '🐶' (U+1F436);
  // JavaScript's default sort would put the emoji (a surrogate pair, 0xD83D…) before 'ｆｏｘ'.
  const classes = ['cat', '🐶', 'Zebra', 'ｆｏｘ'];
  for (const [c, cls] of classes.entries()) {
    for (let k = 0; k < 4; k++) await png(path.join(train, cls, `${k}.png`), 10 * c + k);
    await png(path.join(test_, cls, 'a.png'), 100 + c);
  }
  await png(path.join(train, 'cat', 'big.png'), 200, 32); // resized to the majority 28×28
  await png(path.join(train, 'cat', 'UPPER.PNG'), 201); // extensions are case-insensitive
  await png(path.join(train, 'cat', 'sub', 'deep.png'), 202); // sub-folders belong to the class
  // RGBA, fully transparent: alpha is dropped, not blended into black.
  await sharp({
    create: { width: 28, height: 28, channels: 4, background: { r: 90, g: 90, b: 90, alpha: 0 } },
  })
    .png()
    .toFile(path.join(train, 'cat', 'rgba.png'));
  write(train, 'cat/empty.png', '');
  write(train, 'cat/x.png', 'this is text, not a PNG');
  write(train, 'cat/notes.txt', 'hello');
  write(train, 'cat/.hidden.png', 'ignored');
  write(train, '.DS_Store', 'ignored');
  write(train, 'stray.png', 'not in a class');
  await png(path.join(test_, 'cat', 'small.png'), 150, 14);

  const split = await timed(t, 'tiny image folder', () => loadImageFolder(root));
  const expectedOrder = ['Zebra', 'cat', 'ｆｏｘ', '🐶'];
  t.deepEqual(split.train.classNames, expectedOrder);
  t.deepEqual(split.test.classNames, expectedOrder);
  t.deepEqual(
    [split.train.height, split.train.width, split.test.height, split.test.width],
    [28, 28, 28, 28],
  );
  t.deepEqual(classCounts(split.train), [4, 8, 4, 4]);
  t.deepEqual(classCounts(split.test), [1, 2, 1, 1]);
  t.is(split.train.resized, 1);
  t.is(split.test.resized, 1);

  // Each image's first pixel says which file it was; files come in sorted order per class.
  const firstPixels = (ds: Dataset) =>
    Array.from({ length: ds.count }, (_, i) => ds.images[i * ds.height * ds.width]);
  const c = (cls: string) => classes.indexOf(cls) * 10;
  const catPixels = [0, 1, 2, 3, 201, 200, 90, 202]; // 0-3.png, UPPER.PNG, big, rgba, sub/deep
  const expected = [
    ...[0, 1, 2, 3].map((k) => c('Zebra') + k),
    ...catPixels,
    ...[0, 1, 2, 3].map((k) => c('ｆｏｘ') + k),
    ...[0, 1, 2, 3].map((k) => c('🐶') + k),
  ];
  const pixels = firstPixels(split.train);
  const rgba = expected.indexOf(90);
  t.true(Math.abs(pixels[rgba] - 90) <= 1, `rgba.png decoded to ${pixels[rgba]}`);
  expected[rgba] = pixels[rgba];
  t.deepEqual(pixels, expected);
  t.deepEqual(
    Array.from(split.train.labels),
    [0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3],
  );
  t.deepEqual(firstPixels(split.test), [102, 100, 150, 103, 101]);
  // A uniform image stays uniform when resized.
  const big = split.train.images.subarray(9 * 784, 10 * 784);
  t.true(big.every((v) => v === 200));

  t.deepEqual(
    split.train.skipped?.map((s) => [
      path.relative(train, s.file),
      s.reason.replace(/\(.*\)/, '(…)'),
    ]),
    [
      ['cat/empty.png', 'empty file'],
      ['cat/notes.txt', 'not an image extension (…)'],
      ['cat/x.png', 'Input file contains unsupported image format'],
      ['stray.png', 'not inside a class folder'],
    ],
  );
  t.deepEqual(split.test.skipped, []);

  // Through loadDataset, a path with training/ is an image folder.
  t.deepEqual((await loadDataset(root)).train.classNames, expectedOrder);
});

test('image folder: a root without class folders is an error', async (t) => {
  const root = tempDir(t);
  fs.mkdirSync(path.join(root, 'training'));
  fs.mkdirSync(path.join(root, 'testing'));
  write(root, 'training/loose.png', 'x');
  const training = path.join(root, 'training');
  await t.throwsAsync(loadDataset(root), {
    message: `${training}: no class folders found (expected ${training}/<class>/*.png)`,
  });
});

test('image folder: testing must have the classes of training', async (t) => {
  const root = tempDir(t);
  for (const cls of ['a', 'b', 'c']) await png(path.join(root, 'training', cls, '0.png'), 1);
  for (const cls of ['a', 'c', 'd']) await png(path.join(root, 'testing', cls, '0.png'), 1);
  await t.throwsAsync(loadImageFolder(root), {
    message: `${root}/testing: classes differ from ${root}/training: testing lacks 'b' and has 'd' not in training`,
  });
  fs.rmSync(path.join(root, 'testing'), { recursive: true });
  await t.throwsAsync(loadImageFolder(root), {
    message: `${root}/testing: not found (expected ${root}/testing/<class>/*.png)`,
  });
});

test('image folder: a class with no readable images is an error', async (t) => {
  const root = tempDir(t);
  for (const split of ['training', 'testing']) {
    await png(path.join(root, split, 'a', '0.png'), 1);
    write(root, `${split}/b/x.png`, 'not an image');
  }
  await t.throwsAsync(loadImageFolder(root), {
    message: `${root}/training/b: no images (1 skipped, e.g. x.png: Input file contains unsupported image format)`,
  });
});

// ROOT/{training,testing}/{a,b}/*.png: `perClass` training images per class, 3 test images.
async function twoClassFolder(t: ExecutionContext, perClass: number): Promise<string> {
  const root = tempDir(t);
  const jobs: Promise<void>[] = [];
  for (const [value, cls] of ['a', 'b'].entries()) {
    for (let i = 0; i < perClass; i++) {
      jobs.push(png(path.join(root, 'training', cls, `${i}.png`), value * 100 + (i % 50)));
    }
    for (let i = 0; i < 3; i++) jobs.push(png(path.join(root, 'testing', cls, `${i}.png`), value));
  }
  await Promise.all(jobs);
  return root;
}

test('image folder: progress counts every decoded file up to the total', async (t) => {
  const root = await twoClassFolder(t, 20);
  const seen: LoadProgress[] = [];
  const split = await loadDataset(root, { onProgress: (p) => seen.push({ ...p }) });
  const total = split.train.count + split.test.count;
  t.is(total, 46);
  t.deepEqual(seen[0], { decoded: 0, total });
  t.deepEqual(seen.at(-1), { decoded: total, total });
  t.deepEqual(
    seen.map((p) => p.decoded),
    Array.from({ length: total + 1 }, (_, i) => i),
  );
});

test('image folder: an abort in the middle of decoding rejects within a second', async (t) => {
  const root = await twoClassFolder(t, 1000);
  const controller = new AbortController();
  let decoded = 0;
  let abortedAt = 0;
  const load = loadImageFolder(root, {
    signal: controller.signal,
    onProgress: (p) => {
      decoded = p.decoded;
      if (p.decoded === 50) {
        abortedAt = performance.now();
        controller.abort();
      }
    },
  });
  const err = await t.throwsAsync(load);
  const took = performance.now() - abortedAt;
  t.is(err?.name, 'AbortError');
  t.true(took < 1000, `rejected ${took.toFixed(0)} ms after the abort`);
  // The decoding stops too: at most the files already in flight finish.
  const atReject = decoded;
  await new Promise((resolve) => setTimeout(resolve, 300));
  t.true(decoded < 50 + 16 && decoded - atReject <= 16, `decoded ${decoded} of 2006`);
  // An already aborted signal rejects before anything is read.
  await t.throwsAsync(loadDataset(root, { signal: AbortSignal.abort() }), { name: 'AbortError' });
});

test('image folder: the test split loads alone, without reading training/', async (t) => {
  const root = await twoClassFolder(t, 2);
  // a training split that could not be loaded
  for (const f of fs.readdirSync(path.join(root, 'training', 'a'))) {
    write(root, `training/a/${f}`, 'not an image');
  }
  await t.throwsAsync(loadDataset(root), { message: /training\/a: no images/ });
  const seen: LoadProgress[] = [];
  const { test: testSet } = await loadTestSet(root, { onProgress: (p) => seen.push({ ...p }) });
  t.is(testSet.count, 6);
  t.deepEqual(testSet.classNames, ['a', 'b']);
  t.deepEqual(Array.from(testSet.labels), [0, 0, 0, 1, 1, 1]);
  t.deepEqual(seen.at(-1), { decoded: 6, total: 6 });
  // the size a checkpoint records (training's common size) is the one the images get
  const resized = await loadTestSet(root, { size: { width: 14, height: 7 } });
  t.deepEqual([resized.test.width, resized.test.height, resized.test.resized], [14, 7, 6]);
  // IDX datasets: the test split of the whole load
  const mnistTest = await loadTestSet('mnist');
  t.is(mnistTest.test.count, 10000);
});

test('imbalance: parsing CLASS=FRACTION lists', (t) => {
  t.deepEqual(parseImbalance('6=0.01', 10), new Map([[6, 0.01]]));
  t.deepEqual(
    parseImbalance(' 6=0.01, 3=.1 ', 10),
    new Map([
      [6, 0.01],
      [3, 0.1],
    ]),
  );
  t.deepEqual(
    parseImbalance('Sandal=0.01,0=1', 10, FASHION_MNIST_CLASSES),
    new Map([
      [5, 0.01],
      [0, 1],
    ]),
  );
  t.deepEqual(parseImbalance('6=0', 10), new Map([[6, 0]]));
  const errors: [string, string][] = [
    ['12=0.1', '--imbalance: class 12 is out of range (the dataset has 10 classes: 0..9)'],
    [
      '6=abc',
      "--imbalance: '6=abc' is not CLASS=FRACTION (profiles: longtail:RATIO, step:RATIO:MINORITY)",
    ],
    ['6', "--imbalance: '6' is not CLASS=FRACTION (profiles: longtail:RATIO, step:RATIO:MINORITY)"],
    [
      '6=0.1=2',
      "--imbalance: '6=0.1=2' is not CLASS=FRACTION (profiles: longtail:RATIO, step:RATIO:MINORITY)",
    ],
    [
      '6=-0.1',
      "--imbalance: '6=-0.1' is not CLASS=FRACTION (profiles: longtail:RATIO, step:RATIO:MINORITY)",
    ],
    ['6=1.5', "--imbalance: fraction 1.5 in '6=1.5' is not in [0, 1]"],
    ['-1=0.1', "--imbalance: '-1' in '-1=0.1' is not a class (classes are 0..9)"],
    ['6=0.1,6=0.2', "--imbalance: class 6 is given twice ('6=0.1' and '6=0.2')"],
    ['6=0.1,', "--imbalance: empty entry in '6=0.1,' (expected CLASS=FRACTION,…)"],
    ['', "--imbalance: empty entry in '' (expected CLASS=FRACTION,…)"],
  ];
  for (const [spec, message] of errors) t.throws(() => parseImbalance(spec, 10), { message }, spec);
  t.throws(() => parseImbalance('Sandel=0.1', 10, FASHION_MNIST_CLASSES), {
    message: `--imbalance: 'Sandel' in 'Sandel=0.1' is not a class (classes: ${FASHION_MNIST_CLASSES.join(', ')})`,
  });
  t.throws(() => parseImbalance('5=0.1,Sandal=0.2', 10, FASHION_MNIST_CLASSES), {
    message: "--imbalance: class 5 is given twice ('5=0.1' and 'Sandal=0.2')",
  });
});

test('imbalance: 1% of MNIST sixes is 59 images, seeded, other classes untouched', async (t) => {
  const { train } = await mnist;
  const starved = applyImbalance(train, parseImbalance('6=0.01', 10), 0);
  const counts = classCounts(starved);
  t.is(counts[6], 59);
  t.deepEqual(
    counts.filter((_, c) => c !== 6),
    MNIST_TRAIN.filter((_, c) => c !== 6),
  );
  t.is(starved.count, 60000 - 5918 + 59);

  // Other classes: the same images in the same order.
  const others = (ds: Dataset) =>
    subset(
      ds,
      Array.from(ds.labels.keys()).filter((i) => ds.labels[i] !== 6),
    );
  t.true(Buffer.from(others(starved).images).equals(others(train).images));

  const sixes = (ds: Dataset) =>
    subset(
      ds,
      Array.from(ds.labels.keys()).filter((i) => ds.labels[i] === 6),
    ).images;
  const again = applyImbalance(train, parseImbalance('6=0.01', 10), 0);
  t.true(Buffer.from(sixes(again)).equals(sixes(starved)));
  t.false(
    Buffer.from(sixes(applyImbalance(train, parseImbalance('6=0.01', 10), 1))).equals(
      sixes(starved),
    ),
  );

  t.throws(() => applyImbalance(train, parseImbalance('6=0', 10), 0), {
    message:
      '--imbalance: class 6 would keep 0 of 5918 images; an empty class cannot be trained on or evaluated fairly',
  });
});

test('imbalance: kept images keep their order; the map order does not matter', (t) => {
  // Each 1×2 image holds its own index, so the kept order is visible.
  const count = 1000;
  const ds: Dataset = {
    images: Uint8Array.from({ length: 2 * count }, (_, j) => (j % 2 ? (j >> 1) & 255 : j >> 9)),
    labels: Int32Array.from({ length: count }, (_, i) => i % 4),
    count,
    channels: 1,
    height: 1,
    width: 2,
    classNames: ['a', 'b', 'c', 'd'],
    source: 'synthetic',
  };
  const a = applyImbalance(
    ds,
    new Map([
      [1, 0.1],
      [3, 0.5],
    ]),
    7,
  );
  const b = applyImbalance(
    ds,
    new Map([
      [3, 0.5],
      [1, 0.1],
    ]),
    7,
  );
  t.deepEqual(a.images, b.images);
  t.deepEqual(classCounts(a), [250, 25, 250, 125]);
  const indices = Array.from(
    { length: a.count },
    (_, i) => a.images[2 * i] * 256 + a.images[2 * i + 1],
  );
  t.true(indices.every((v, i) => i === 0 || v > indices[i - 1]));
  t.true(indices.every((v, i) => a.labels[i] === v % 4));
  t.is(a.source, 'synthetic');
});

// 10 classes of 1000 synthetic 1×2 images each; an image's two pixels spell its index.
function tenBalancedClasses(): Dataset {
  const count = 10000;
  const labels = Int32Array.from({ length: count }, (_, i) => i % 10);
  return {
    images: Uint8Array.from({ length: 2 * count }, (_, j) => (j % 2 ? (j >> 1) & 255 : j >> 9)),
    labels,
    count,
    channels: 1,
    height: 1,
    width: 2,
    classNames: Array.from({ length: 10 }, (_, c) => String(c)),
    source: 'synthetic',
  };
}

test('imbalance: longtail:R keeps floor(n_max × R^(−k/(C−1))) images of class k', (t) => {
  const ds = tenBalancedClasses();
  // Worked by hand: 1000 × 100^(−k/9) = 1000, 599.48, 359.38, 215.44, 129.15, 77.43, 46.42, …, 10.
  const expected = [1000, 599, 359, 215, 129, 77, 46, 27, 16, 10];
  t.deepEqual(imbalanceCounts('longtail:100', classCounts(ds)), expected);
  const cut = imbalance(ds, 'longtail:100', 3);
  t.deepEqual(classCounts(cut), expected);
  t.deepEqual(imbalance(ds, 'longtail:100', 3).images, cut.images, 'the seed fixes the pick');
  t.notDeepEqual(imbalance(ds, 'longtail:100', 4).images, cut.images, 'another seed, other picks');
  // MNIST's counts: n_max is class 1's 6742; class 0 keeps all of its 5923 (fewer than asked).
  const mnist = MNIST_TRAIN;
  t.deepEqual(
    imbalanceCounts('longtail:100', mnist),
    [5923, 4041, 2422, 1452, 870, 522, 312, 187, 112, 67],
  );
  t.deepEqual(imbalanceCounts('LONGTAIL:1', mnist), mnist);
});

test('imbalance: step:R:K cuts the last K classes to floor(n_max / R)', (t) => {
  const mnist = MNIST_TRAIN;
  t.deepEqual(
    imbalanceCounts('step:10:5', mnist),
    [5923, 6742, 5958, 6131, 5842, 674, 674, 674, 674, 674],
  );
  const ds = tenBalancedClasses();
  t.deepEqual(
    classCounts(imbalance(ds, 'step:4:2', 0)),
    [1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 250, 250],
  );
  // The fraction form goes through the same function.
  t.deepEqual(imbalanceCounts('6=0.01', mnist), [...mnist.slice(0, 6), 59, ...mnist.slice(7)]);
});

test('imbalance: bad profiles name what is wrong', (t) => {
  const counts = [1000, 1000, 1000];
  const errors: [string, RegExp][] = [
    ['longtail:', /longtail:RATIO with a ratio >= 1/],
    ['longtail:0.5', /ratio >= 1/],
    ['longtail:x', /ratio >= 1/],
    ['longtail:2000', /class 2 with no image/],
    ['step:10', /not longtail:RATIO or step:RATIO:MINORITY/],
    ['step:10:3', /MINORITY must be a whole number of classes in 1\.\.2/],
    ['step:10:0', /MINORITY/],
    ['step:10:1.5', /MINORITY/],
    ['longtails:10', /not CLASS=FRACTION \(profiles: longtail:RATIO, step:RATIO:MINORITY\)/],
  ];
  for (const [spec, message] of errors) {
    t.throws(() => imbalanceCounts(spec, counts), { message }, spec);
  }
});

test("grey from colour equals PIL's convert('L') on 10,000 random colours, alpha dropped", async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'torchfocal-luma-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  // 100 × 100 random RGBA pixels (fresh each run), and pure red, green, blue and white first.
  const rgba = new Uint8Array(100 * 100 * 4).map(() => Math.floor(Math.random() * 256));
  const pure = [255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255];
  for (let k = 0; k < 4; k++) rgba.set([...pure.slice(k * 3, k * 3 + 3), 255], k * 4);
  const file = path.join(dir, 'colours.png');
  await sharp(Buffer.from(rgba), { raw: { width: 100, height: 100, channels: 4 } })
    .png()
    .toFile(file);
  const ours = (await decodeImage(file, 1)).pixels;
  const pil = execFileSync(PYTHON, [
    '-c',
    "import sys; from PIL import Image; sys.stdout.buffer.write(Image.open(sys.argv[1]).convert('RGB').convert('L').tobytes())",
    file,
  ]);
  t.is(pil.length, 10_000);
  t.deepEqual([...ours.subarray(0, 4)], [76, 150, 29, 255], "PIL's red, green, blue, white");
  const differ = ours.reduce((n, v, i) => n + (v === pil[i] ? 0 : 1), 0);
  t.is(differ, 0, `${differ} of 10,000 pixels differ from PIL`);
});
