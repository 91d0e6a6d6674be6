// Hostile data files, generated on the fly (issue 16): decompression bombs (a gzip that inflates
// to 4 GB, 16000² PNGs of 249 KB), links that loop, phantom classes, unreadable and special
// files. Each bomb is loaded in a child process that reports its own peak RSS, held to 1 GB;
// each is refused in one line or bounded. No bomb is ever written to disk in full.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import sharp from 'sharp';
import {
  decodeImage,
  loadIdxFolder,
  loadImageFolder,
  listImageFiles,
  readIdx,
} from '../../ts/data/index';
import { unreadableReason } from '../../ts/data/imagefolder';
import { CLI, quickTrainArgs, runCli, runProcess, tempDir } from '../helpers/cli';
import { smallIdxFolder } from '../helpers/mnist';

const GB = 2 ** 30;
// A child's own peak resident size in bytes (JS, run in the child): the kernel's VmHWM. Not
// getrusage's maxRSS, which a forked child inherits from its parent and exec keeps: it read the
// resident size of ava's process (LibTorch and the other test files' work) at the spawn.
const PEAK_RSS =
  "Number(/VmHWM:\\s*(\\d+) kB/.exec(require('node:fs').readFileSync('/proc/self/status', 'utf8'))[1]) * 1024";
const DATA = path.join(__dirname, '..', '..', 'ts', 'data', 'index.js');

// Runs `body` (an async JS expression over `data`, the data layer) in a child; returns what it
// resolved to or the error's message, and the child's peak RSS in bytes.
async function inChild(
  body: string,
): Promise<{ ok?: any; error?: string; maxRss: number; stderr: string }> {
  const script = `
const data = require(${JSON.stringify(DATA)});
const done = (r) => process.stdout.write(JSON.stringify({ ...r, maxRss: ${PEAK_RSS} }));
(async () => ${body})().then((ok) => done({ ok }), (e) => done({ error: e.message }));`;
  const r = await runProcess(process.execPath, ['-e', script]);
  if (r.code !== 0) throw new Error(`child failed (${r.code} ${r.signal}): ${r.stderr}`);
  return { ...JSON.parse(r.stdout), stderr: r.stderr };
}

const idxHeader = (dims: number[]) => {
  const h = Buffer.alloc(4 + 4 * dims.length);
  h[2] = 0x08;
  h[3] = dims.length;
  dims.forEach((d, i) => h.writeUInt32BE(d, 4 + 4 * i));
  return h;
};

// A gzip file whose IDX header says `dims` and which inflates to `inflated` bytes of zeros
// after it: gzip members of 16 MiB of zeros (16 KB each) appended, so a 4 GB bomb is 4 MB.
function gzipBomb(file: string, dims: number[], inflated: number): void {
  const block = 16 * 2 ** 20;
  const zeros = zlib.gzipSync(Buffer.alloc(block), { level: 9 });
  const fd = fs.openSync(file, 'w');
  fs.writeSync(fd, zlib.gzipSync(idxHeader(dims)));
  for (let n = 0; n < inflated / block; n++) fs.writeSync(fd, zeros);
  fs.closeSync(fd);
}

test('a gzip header promising 4 GB is refused before inflating, in one line, under 1 GB RSS', async (t) => {
  const file = path.join(tempDir(), 'train-images-idx3-ubyte.gz');
  gzipBomb(file, [4096, 1024, 1024], 4 * GB);
  t.true(fs.statSync(file).size < 8e6);
  const r = await inChild(`data.readIdx(${JSON.stringify(file)})`);
  t.is(
    r.error,
    `${file}: header says 4096×1024×1024 (4294967296 bytes of data), more than the limit of 1073741824 bytes; refused before reading it`,
  );
  t.log(`4 GB promised: peak RSS ${(r.maxRss / 2 ** 20).toFixed(0)} MiB`);
  t.true(r.maxRss <= GB, `peak RSS ${r.maxRss}`);
});

test('a gzip of 4 GB behind an MNIST header inflates only what the header promises (plus one byte)', async (t) => {
  const file = path.join(tempDir(), 'train-images-idx3-ubyte.gz');
  gzipBomb(file, [60000, 28, 28], 4 * GB);
  const started = Date.now();
  const r = await inChild(`data.readIdx(${JSON.stringify(file)})`);
  t.is(
    r.error,
    `${file}: has extra bytes: header says 60000×28×28 (47040000 bytes of data) but more follow; stopped reading after 47040001`,
  );
  t.log(`4 GB inflating: peak RSS ${(r.maxRss / 2 ** 20).toFixed(0)} MiB`);
  t.true(r.maxRss <= GB, `peak RSS ${r.maxRss}`);
  t.true(Date.now() - started < 20000, 'stops inflating at once');
});

test('a raw IDX file of 5 GB (sparse) is refused from its header, never read', async (t) => {
  const file = path.join(tempDir(), 'train-images-idx3-ubyte');
  fs.writeFileSync(file, idxHeader([5000, 1000, 1000]));
  fs.truncateSync(file, 16 + 5e9); // sparse: no disk used
  const r = await inChild(`data.readIdx(${JSON.stringify(file)})`);
  t.regex(r.error!, /header says 5000×1000×1000 \(5000000000 bytes of data\), more than the limit/);
  t.true(r.maxRss <= GB);
  // A raw file whose size disagrees with its header is refused before anything is allocated.
  fs.writeFileSync(file, idxHeader([1000, 1000, 1000]));
  fs.truncateSync(file, 16 + 5e8);
  await t.throwsAsync(readIdx(file), {
    message: `${file}: truncated: header says 1000×1000×1000 (1000000000 bytes of data) but 500000000 bytes follow`,
  });
});

test('an IDX label of 255 with no class names is refused: it would make 245 empty classes', async (t) => {
  const { dir } = await smallIdxFolder(600, 100);
  const labels = path.join(dir, 'train-labels-idx1-ubyte');
  const buf = fs.readFileSync(labels);
  buf[8 + 17] = 255;
  fs.writeFileSync(labels, buf);
  const err = await t.throwsAsync(loadIdxFolder(dir));
  t.regex(
    err!.message,
    /train-labels-idx1-ubyte: label 255 \(at index 17\) makes 256 classes, but 245 of them have no images \(10, 11, 12, 13, 14, …\)/,
  );
  t.false(err!.message.includes('\n'));
  // With MNIST's ten class names, a class without training images is the names' business.
  buf[8 + 17] = 0;
  for (let i = 8; i < buf.length; i++) if (buf[i] === 9) buf[i] = 0;
  fs.writeFileSync(labels, buf);
  const testLabels = path.join(dir, 't10k-labels-idx1-ubyte');
  const tbuf = fs.readFileSync(testLabels);
  for (let i = 8; i < tbuf.length; i++) if (tbuf[i] === 9) tbuf[i] = 0;
  fs.writeFileSync(testLabels, tbuf);
  const names = Array.from({ length: 10 }, (_, i) => String(i));
  t.is((await loadIdxFolder(dir, 'x', names)).train.classNames.length, 10);
  // ...and without names, 9 classes are made of labels 0..8.
  t.is((await loadIdxFolder(dir)).train.classNames.length, 9);
});

// A solid 16000×16000 PNG (about 250 KB), made once and copied.
const bombPng = (async () => {
  const file = path.join(tempDir(), 'bomb.png');
  await sharp({
    create: { width: 16000, height: 16000, channels: 3, background: { r: 0, g: 0, b: 0 } },
  })
    .png({ compressionLevel: 9 })
    .toFile(file);
  return file;
})();

async function writeSmallPng(file: string, size = 28): Promise<void> {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  await sharp({
    create: { width: size, height: size, channels: 3, background: { r: 128, g: 128, b: 128 } },
  })
    .png()
    .toFile(file);
}

// ROOT/{training,testing}/{a,b}: `bombs` 16000² PNGs and `small` 28² ones in each training
// class, one small one in each testing class.
async function bombFolder(bombs: number, small: number): Promise<string> {
  const root = tempDir();
  const bomb = await bombPng;
  for (const cls of ['a', 'b']) {
    const dir = path.join(root, 'training', cls);
    fs.mkdirSync(dir, { recursive: true });
    for (let i = 0; i < bombs; i++) fs.copyFileSync(bomb, path.join(dir, `big${i}.png`));
    for (let i = 0; i < small; i++) await writeSmallPng(path.join(dir, `small${i}.png`));
    await writeSmallPng(path.join(root, 'testing', cls, 'x.png'));
  }
  return root;
}

test('16000² PNGs in a training folder are skipped by the pixel limit, each with why', async (t) => {
  const root = await bombFolder(3, 1);
  const r = await inChild(`data.loadImageFolder(${JSON.stringify(root)}).then((s) =>
    ({ size: [s.train.width, s.train.height], count: s.train.count, skipped: s.train.skipped }))`);
  t.deepEqual(r.ok.size, [28, 28]);
  t.is(r.ok.count, 2);
  t.is(r.ok.skipped.length, 6);
  t.is(
    r.ok.skipped[0].reason,
    '16000×16000 is 256000000 pixels, over the limit of 16777216 (--max-pixels)',
  );
  t.log(`16000² majority-skipped folder: peak RSS ${(r.maxRss / 2 ** 20).toFixed(0)} MiB`);
  t.true(r.maxRss <= GB, `peak RSS ${r.maxRss}`);
  // A class made only of them is refused in one line.
  const all = await bombFolder(2, 0);
  const e = await inChild(`data.loadImageFolder(${JSON.stringify(all)})`);
  t.is(
    e.error,
    `${all}/training/a: no images (2 skipped, e.g. big0.png: 16000×16000 is 256000000 pixels, over the limit of 16777216 (--max-pixels))`,
  );
  t.true(e.maxRss <= GB);
});

test('with the pixel limit raised, a 16000² majority is capped to 1024 a side, not resized up to', async (t) => {
  const root = await bombFolder(2, 1);
  const r =
    await inChild(`data.loadImageFolder(${JSON.stringify(root)}, { maxPixels: 3e8 }).then((s) =>
    ({ size: [s.train.width, s.train.height], capped: s.train.capped, count: s.train.count, resized: s.train.resized }))`);
  t.deepEqual(r.ok, {
    size: [1024, 1024],
    capped: { width: 16000, height: 16000 },
    count: 6,
    resized: 6,
  });
  t.log(`16000² majority, limit raised: peak RSS ${(r.maxRss / 2 ** 20).toFixed(0)} MiB`);
  t.true(r.maxRss <= GB, `peak RSS ${r.maxRss}`);
});

test('links to folders are not followed: `ln -s .. training/a/up` and loops are skipped and listed', async (t) => {
  const root = tempDir();
  for (const cls of ['a', 'b']) {
    await writeSmallPng(path.join(root, 'training', cls, '0.png'));
    await writeSmallPng(path.join(root, 'training', cls, 'sub', '1.png'));
    await writeSmallPng(path.join(root, 'testing', cls, '0.png'));
  }
  fs.symlinkSync('..', path.join(root, 'training', 'a', 'up'));
  fs.symlinkSync('..', path.join(root, 'training', 'b', 'sub', 'loop'));
  fs.symlinkSync('../b', path.join(root, 'training', 'a', 'other'));
  fs.symlinkSync('.', path.join(root, 'training', 'self')); // a class folder that is a loop
  fs.symlinkSync(
    path.join(root, 'training', 'a', '0.png'),
    path.join(root, 'training', 'b', 'f.png'),
  );
  const split = await loadImageFolder(root);
  t.deepEqual(split.train.classNames, ['a', 'b']);
  t.deepEqual(Array.from(split.train.labels), [0, 0, 1, 1, 1], 'a link to a file is followed');
  t.deepEqual(
    split.train.skipped!.map((s) => [path.relative(root, s.file), s.reason]),
    [
      ['training/a/other', 'a link to a folder, not followed'],
      ['training/a/up', 'a link to a folder, not followed'],
      ['training/b/sub/loop', 'a link to a folder, not followed'],
      ['training/self', 'a link to a folder that holds it (a loop), not followed'],
    ],
  );
  const skipped: { file: string; reason: string }[] = [];
  t.is((await listImageFiles(path.join(root, 'training'), skipped)).length, 5);
  t.is(skipped.length, 4);
});

test('an unreadable image says permission denied; a FIFO named x.png is refused, not opened', async (t) => {
  const eacces = Object.assign(new Error("EACCES: permission denied, open 'x.png'"), {
    code: 'EACCES',
  });
  const sharpSays = new Error('Input file contains unsupported image format');
  t.is(unreadableReason(sharpSays, eacces, 100), 'permission denied');
  t.is(unreadableReason(sharpSays, undefined, 0), 'empty file');
  t.is(unreadableReason(sharpSays, undefined, 10), 'Input file contains unsupported image format');
  const dir = tempDir();
  if (process.getuid?.() !== 0) {
    // root reads a chmod 000 file anyway; the mapping above is what it would say
    const file = path.join(dir, 'locked.png');
    await writeSmallPng(file);
    fs.chmodSync(file, 0);
    await t.throwsAsync(decodeImage(file, 1), { message: `${file}: permission denied` });
  }
  const fifo = path.join(dir, 'x.png');
  execFileSync('mkfifo', [fifo]);
  await t.throwsAsync(decodeImage(fifo, 1), { message: `${fifo}: not a regular file (a FIFO)` });
  const skipped: { file: string; reason: string }[] = [];
  t.deepEqual(await listImageFiles(dir, skipped), []);
  t.deepEqual(skipped, [{ file: fifo, reason: 'not a regular file' }]);
});

test('predict on 8 bombs and a FIFO: each refused in one line, under 1 GB RSS, no hang', async (t) => {
  const [bomb, { dir }] = await Promise.all([bombPng, smallIdxFolder()]);
  const work = tempDir();
  const ckpt = path.join(work, 'run');
  const trained = await runCli(quickTrainArgs(dir, ckpt, '--epochs', '1'));
  t.is(trained.code, 0, trained.stderr);
  const files = Array.from({ length: 8 }, (_, i) => path.join(work, `bomb${i}.png`));
  for (const f of files) fs.copyFileSync(bomb, f);
  const fifo = path.join(work, 'x.png');
  execFileSync('mkfifo', [fifo]);
  const rss = path.join(work, 'rss.js');
  fs.writeFileSync(
    rss,
    `process.on('exit', () => process.stderr.write('maxrss ' + ${PEAK_RSS} + '\\n'));`,
  );
  const r = await runProcess(process.execPath, [
    '-r',
    rss,
    CLI,
    'predict',
    '--checkpoint',
    ckpt,
    '--threads',
    '1',
    ...files,
    fifo,
  ]);
  t.is(r.code, 1, r.stderr);
  for (const f of files) {
    t.true(
      r.stderr.includes(
        `torchfocal: ${f}: 16000×16000 is 256000000 pixels, over the limit of 16777216 (--max-pixels)\n`,
      ),
      r.stderr,
    );
  }
  t.true(r.stderr.includes(`torchfocal: ${fifo}: not a regular file (a FIFO)\n`), r.stderr);
  const maxRss = Number(/maxrss (\d+)/.exec(r.stderr)![1]);
  t.log(`predict on 8 bombs: peak RSS ${(maxRss / 2 ** 20).toFixed(0)} MiB`);
  t.true(maxRss <= GB, `peak RSS ${maxRss}`);
});
