// Small plain PNGs decoded in JavaScript. sharp costs about 1 ms of CPU a file whatever its
// size (a pipeline, a thread hop, libvips' set-up), thirty times the inflate of a 28×28 PNG: a
// folder of 60,000 MNIST PNGs took 80 s through sharp and takes seconds here (bench/NOTES.md
// §19). Only PNGs whose pixels are their samples, as sharp gives them, come here.
import fs from 'node:fs';
import { PNG } from 'pngjs';

/** At most this many pixels a PNG is decoded here (about 1 ms); larger ones go to sharp's threads. */
export const JS_PNG_MAX_PIXELS = 256 * 256;

// The most bytes read to find a PNG's header and the chunks before its pixels.
const HEAD_BYTES = 64 * 1024;

const SIGNATURE = [137, 80, 78, 71, 13, 10, 26, 10];

// Chunks that change no pixel: text, time, physical size. Any other before the pixel data
// (palette, transparency key, gamma, chromaticities, ICC profile, sRGB intent, significant
// bits, …) sends the file to sharp, which may act on it.
const INERT = new Set(['tEXt', 'zTXt', 'iTXt', 'tIME', 'pHYs']);

/** A PNG the JS decoder gives exactly as sharp does. */
export interface PlainPng {
  width: number;
  height: number;
  /** grey (with or without alpha) rather than RGB(A) */
  grey: boolean;
}

/**
 * `bytes` (a PNG's start: up to its first pixel-data chunk) as a plain PNG: 8 bits a sample,
 * grey, grey + alpha, RGB or RGBA, no chunk but inert ones before the pixel data, at most
 * JS_PNG_MAX_PIXELS; undefined for anything else.
 */
export function plainPng(bytes: Uint8Array): PlainPng | undefined {
  if (bytes.length < 33 || SIGNATURE.some((b, i) => bytes[i] !== b)) return undefined;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const type = (at: number) => String.fromCharCode(...bytes.subarray(at + 4, at + 8));
  if (view.getUint32(8) !== 13 || type(8) !== 'IHDR') return undefined;
  const width = view.getUint32(16);
  const height = view.getUint32(20);
  const [depth, colourType, compression, filter, interlace] = bytes.subarray(24, 29);
  if (depth !== 8 || ![0, 2, 4, 6].includes(colourType)) return undefined;
  if (compression !== 0 || filter !== 0 || interlace > 1) return undefined;
  if (width < 1 || height < 1 || width * height > JS_PNG_MAX_PIXELS) return undefined;
  // Chunks that matter come before the first IDAT (the PNG spec's ordering rules).
  for (let at = 33; ;) {
    if (at + 8 > bytes.length) return undefined;
    const name = type(at);
    if (name === 'IDAT') return { width, height, grey: colourType === 0 || colourType === 4 };
    if (!INERT.has(name)) return undefined;
    at += 12 + view.getUint32(at);
  }
}

/**
 * A file's first `limit` bytes (all of it by default), read synchronously: tens of
 * microseconds, against hundreds for the same through the thread pool. Opened non-blocking and
 * checked to be a regular file, so that a FIFO put in a file's place cannot hang the process.
 */
export function readStart(file: string, limit = HEAD_BYTES): Buffer {
  const fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw new Error('not a regular file');
    const bytes = Buffer.allocUnsafe(Math.min(limit, st.size));
    let got = 0;
    for (let n = -1; n !== 0 && got < bytes.length; got += n) {
      n = fs.readSync(fd, bytes, got, bytes.length - got, got);
    }
    return bytes.subarray(0, got);
  } finally {
    fs.closeSync(fd);
  }
}

// Only files named *.png are read as PNGs here; any other goes to sharp.
function pngName(file: string): boolean {
  return file.toLowerCase().endsWith('.png');
}

/** The file's plain PNG header (see plainPng), or undefined for any other file. */
export function plainPngFile(file: string): PlainPng | undefined {
  if (!pngName(file)) return undefined;
  try {
    return plainPng(readStart(file));
  } catch {
    return undefined; // sharp will say why
  }
}

/** A plain PNG's pixels: one grey plane, or interleaved RGB; and its size. */
export type PlainPixels = (
  { grey: Uint8Array; rgb?: never } | { rgb: Uint8Array; grey?: never }
) & {
  width: number;
  height: number;
};

/**
 * decodePlainPng for a file named *.png, undefined for any other and wherever decodePlainPng
 * throws (the caller asks sharp, whose messages it keeps).
 */
export function decodePlainPngFile(
  file: string,
  accept: (png: PlainPng) => boolean = () => true,
): PlainPixels | undefined {
  if (!pngName(file)) return undefined;
  try {
    return decodePlainPng(file, accept);
  } catch {
    return undefined;
  }
}

/**
 * A plain PNG file's pixels, alpha dropped: `grey` (one plane) for a grey PNG, else `rgb`
 * (interleaved); undefined when the file is not a plain PNG (any more) or `accept` refuses its
 * header. Throws when it is damaged or unreadable.
 */
export function decodePlainPng(
  file: string,
  accept: (png: PlainPng) => boolean = () => true,
): PlainPixels | undefined {
  const head = readStart(file);
  const png = plainPng(head);
  if (!png || !accept(png)) return undefined;
  // A file shorter than the head was read whole (a 28 × 28 PNG: one read instead of two).
  const bytes = head.length < HEAD_BYTES ? head : readStart(file, Infinity);
  const { data, width, height } = PNG.sync.read(bytes); // RGBA, 8 bits a sample
  if (width !== png.width || height !== png.height) return undefined;
  const pixels = width * height;
  if (png.grey) {
    const grey = new Uint8Array(pixels);
    for (let i = 0; i < pixels; i++) grey[i] = data[4 * i];
    return { grey, width, height };
  }
  const rgb = new Uint8Array(3 * pixels);
  for (let i = 0, j = 0; i < pixels; i++, j += 4) {
    rgb[3 * i] = data[j];
    rgb[3 * i + 1] = data[j + 1];
    rgb[3 * i + 2] = data[j + 2];
  }
  return { rgb, width, height };
}
