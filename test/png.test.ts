// Small plain PNGs decoded in JS (ts/data/png.ts) against sharp, the decoder of every other file.
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import sharp from 'sharp';
import { loadDataset } from '../ts/index';
import {
  decodePlainPng,
  decodePlainPngFile,
  plainPng,
  readStart,
  JS_PNG_MAX_PIXELS,
} from '../ts/data/png';
import { tempDir } from './helpers/cli';

function noise(bytes: number, seed: number): Buffer {
  let x = seed;
  return Buffer.from(
    Array.from({ length: bytes }, () => ((x = (x * 1103515245 + 12345) >>> 0) >>> 16) & 255),
  );
}

// CRC-32 of PNG chunks (ISO 3309), bit by bit.
function crc32(bytes: Buffer): number {
  let c = ~0;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xedb88320 : c >>> 1;
  }
  return ~c >>> 0;
}

// A PNG with one more chunk right after its header.
function withChunk(png: Buffer, type: string, data: string): Buffer {
  const body = Buffer.concat([Buffer.from(type, 'latin1'), Buffer.from(data, 'latin1')]);
  const chunk = Buffer.alloc(body.length + 8);
  chunk.writeUInt32BE(body.length - 4, 0);
  body.copy(chunk, 4);
  chunk.writeUInt32BE(crc32(body), body.length + 4);
  return Buffer.concat([png.subarray(0, 33), chunk, png.subarray(33)]);
}

// sharp's pixels of a file as interleaved RGB, alpha dropped, as decodeRgb in imagefolder.ts
// asks for them.
async function sharpRgb(file: string): Promise<Buffer> {
  return sharp(file).removeAlpha().toColourspace('srgb').raw({ depth: 'uchar' }).toBuffer();
}

// A grey plane as interleaved RGB (each channel of a grey image is the image).
const greyToRgb = (grey: Uint8Array) => Buffer.from(Array.from(grey).flatMap((v) => [v, v, v]));

const KINDS = [
  { name: 'grey', channels: 1, space: 'b-w' },
  { name: 'grey + alpha', channels: 2, space: 'b-w' },
  { name: 'RGB', channels: 3, space: 'srgb' },
  { name: 'RGBA', channels: 4, space: 'srgb' },
] as const;

test('plain PNGs (8-bit grey, grey + alpha, RGB, RGBA; interlaced or not; with text) decode as sharp decodes them', async (t) => {
  const dir = tempDir();
  let seed = 1;
  for (const kind of KINDS) {
    for (const progressive of [false, true]) {
      for (const [w, h] of [
        [1, 1],
        [28, 28],
        [37, 5],
        [256, 256],
      ]) {
        const file = path.join(dir, `${kind.name}-${progressive}-${w}x${h}.png`);
        // every filter type shows up with noise and adaptive filtering
        await sharp(noise(w * h * kind.channels, ++seed), {
          raw: { width: w, height: h, channels: kind.channels },
        })
          .toColourspace(kind.space)
          .png({ progressive, adaptiveFiltering: true, compressionLevel: 6 })
          .toFile(file);
        if (seed % 2) fs.writeFileSync(file, withChunk(fs.readFileSync(file), 'tEXt', 'a\0b'));
        const what = `${path.basename(file)}`;
        const png = plainPng(readStart(file));
        t.truthy(png, what);
        t.like(png, { width: w, height: h, grey: kind.channels <= 2 }, what);
        const mine = decodePlainPng(file)!;
        t.like(mine, { width: w, height: h }, what);
        const rgb = mine.grey ? greyToRgb(mine.grey) : Buffer.from(mine.rgb!);
        t.true(rgb.equals(await sharpRgb(file)), `${what}: pixels differ`);
      }
    }
  }
});

test('PNGs that sharp may treat otherwise, and other files, are left to sharp', async (t) => {
  const dir = tempDir();
  const file = (name: string) => path.join(dir, name);
  const grey = (w: number, h: number) =>
    sharp(noise(w * h, 7), { raw: { width: w, height: h, channels: 1 } }).toColourspace('b-w');
  await grey(16, 16).png({ palette: true }).toFile(file('palette.png'));
  await grey(16, 16).toColourspace('grey16').png().toFile(file('16-bit.png'));
  await grey(16, 16).withIccProfile('p3').png().toFile(file('icc.png'));
  t.true(257 * 256 > JS_PNG_MAX_PIXELS);
  await grey(257, 256).png().toFile(file('large.png'));
  await grey(16, 16).jpeg().toFile(file('photo.png')); // a JPEG named .png
  await grey(16, 16).png().toFile(file('plain.png'));
  const plain = fs.readFileSync(file('plain.png'));
  fs.writeFileSync(file('gamma.png'), withChunk(plain, 'gAMA', '\0\0\xb1\x8f'));
  fs.writeFileSync(file('srgb.png'), withChunk(plain, 'sRGB', '\0'));
  t.truthy(plainPng(plain)); // the same file without those chunks is plain
  for (const name of ['palette', '16-bit', 'icc', 'large', 'photo', 'gamma', 'srgb']) {
    t.is(plainPng(readStart(file(`${name}.png`))), undefined, name);
    t.is(decodePlainPng(file(`${name}.png`)), undefined, name);
  }
});

test('a damaged plain PNG throws (its image folder then asks sharp, for its message)', async (t) => {
  const file = path.join(tempDir(), 'x.png');
  await sharp(noise(28 * 28, 3), { raw: { width: 28, height: 28, channels: 1 } })
    .toColourspace('b-w')
    .png()
    .toFile(file);
  const bytes = fs.readFileSync(file);
  fs.writeFileSync(file, bytes.subarray(0, bytes.length - 30)); // cut in its pixel data
  t.truthy(plainPng(readStart(file)));
  t.throws(() => decodePlainPng(file));
  t.is(decodePlainPngFile(file), undefined);
});

test('an abort stops a load of small PNGs (decoded in JS, without waiting) within 100 ms', async (t) => {
  const root = tempDir();
  const first = path.join(root, 'first.png');
  await sharp(noise(64 * 64, 5), { raw: { width: 64, height: 64, channels: 1 } })
    .toColourspace('b-w')
    .png()
    .toFile(first);
  for (const split of ['training', 'testing']) {
    for (const cls of ['a', 'b']) {
      const dir = path.join(root, split, cls);
      fs.mkdirSync(dir, { recursive: true });
      for (let i = 0; i < 3000; i++) fs.copyFileSync(first, path.join(dir, `${i}.png`));
    }
  }
  const abort = new AbortController();
  let decoded = 0;
  let total = 0;
  let abortedAt = 0;
  const loading = loadDataset(root, {
    signal: abort.signal,
    onProgress: (p) => {
      ({ decoded, total } = p);
      // From a timer, as a signal comes: it runs only if the decoding lets the event loop run.
      if (decoded === 1000) {
        abortedAt = Date.now();
        setTimeout(() => abort.abort(), 0);
      }
    },
  });
  const err = await t.throwsAsync(loading);
  const took = Date.now() - abortedAt;
  t.is(err?.name, 'AbortError');
  t.true(decoded < total, `the load had ended: ${decoded} of ${total}`);
  t.true(took < 100, `stopped ${took} ms after the abort was due`);
});
