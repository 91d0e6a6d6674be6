// Image folders laid out like torchvision's ImageFolder, one per split:
// ROOT/training/<class>/*.png and ROOT/testing/<class>/*.png.
import type { Dirent } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import sharp from 'sharp';
import { isDirectory, luma, type Dataset, type DataSplit } from './dataset';
import { decodePlainPngFile, plainPngFile, type PlainPng } from './png';
import {
  cacheEntry,
  cacheLimit,
  pruneCache,
  readCached,
  writeCached,
  type CacheEntry,
  type DecodeSettings,
} from './decode-cache';

/** torchvision's IMG_EXTENSIONS, matched case-insensitively. */
export const IMG_EXTENSIONS = [
  '.jpg',
  '.jpeg',
  '.png',
  '.ppm',
  '.bmp',
  '.pgm',
  '.tif',
  '.tiff',
  '.webp',
];

/**
 * The most pixels (width × height) an image may have by default: 16.8 million (4096²), well
 * under sharp's own limit (268 million), so that a 249 KB PNG of 16000×16000 is refused from
 * its header instead of decoded to 256 MB. `LoadOptions.maxPixels` (`--max-pixels`) changes it.
 */
export const DEFAULT_MAX_PIXELS = 4096 * 4096;

/**
 * The largest common size a split is brought to, per side: a majority of huge images is
 * scaled down (aspect kept) so that the longer side is this, rather than every image up to it.
 */
export const MAX_COMMON_SIDE = 1024;

// Files opened at once: sharp decodes on libuv's 4 threads, so a few more keep them busy
// without holding many files or buffers.
const IN_FLIGHT = 8;

type Skipped = NonNullable<Dataset['skipped']>;

/** Files decoded so far out of those to decode (both splits, or the test split alone). */
export interface LoadProgress {
  decoded: number;
  total: number;
  /** of the `decoded`, those read back from the decoded cache (present once there are some) */
  cached?: number;
}

export interface LoadOptions {
  /** aborting stops the load between files; it rejects at once with an Error named 'AbortError' */
  signal?: AbortSignal;
  /** called with 0 decoded once the files are listed, then after each file is decoded */
  onProgress?: (progress: LoadProgress) => void;
  /** the most pixels an image may have; larger ones are skipped (default DEFAULT_MAX_PIXELS) */
  maxPixels?: number;
  /**
   * 1: grey (PIL's convert('L')), 3: RGB. Default: 3 when any training image has a coloured
   * pixel, else 1; the test split follows the training split.
   */
  channels?: 1 | 3;
  /**
   * The cache folder (`cacheDir()`) in which decoded splits are kept, under decoded/, one file a
   * split: a split whose files (names, sizes, modification and change times) and decode
   * settings are unchanged is read back instead of decoded. Default: none, every load decodes.
   */
  cache?: string;
  /**
   * The size in bytes `cache`'s decoded/ folder is kept under: after each split it writes, the
   * least recently used splits go (and those of folders that no longer exist). Default:
   * $TORCHFOCAL_DECODE_CACHE_MB MiB, else 10 GiB.
   */
  cacheLimit?: number;
  /** a decoded split could not be kept in the cache, and why (default: process.emitWarning) */
  onWarning?: (message: string) => void;
}

export interface TestSplitOptions extends LoadOptions {
  /**
   * the size every test image is brought to: the training split's common size, when the caller
   * knows it (training/ is not read); default: the size most test images have
   */
  size?: { width: number; height: number };
}

/** A dataset's test split alone (what `eval` needs). */
export interface TestSplit {
  test: Dataset;
  name: string;
}

function abortError(signal: AbortSignal): Error {
  const err = new Error('loading was aborted', { cause: signal.reason });
  err.name = 'AbortError';
  return err;
}

/** @internal Throws an AbortError when `signal` has been aborted. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw abortError(signal);
}

// Settles with `work`, or rejects as soon as `signal` aborts (the work then stops at its next
// check of the signal; its outcome is dropped).
async function abortable<T>(work: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return work;
  work.catch(() => {}); // an outcome after the abort has no one to go to
  throwIfAborted(signal);
  let onAbort!: () => void;
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(abortError(signal));
    signal.addEventListener('abort', onAbort, { once: true });
  });
  try {
    return await Promise.race([work, aborted]);
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
}

// Python's sorted() order, as torchvision uses: UTF-8 byte order is code-point order, while
// JavaScript's default sort compares UTF-16 units. Each key is encoded once, not once a
// comparison (60,000 names: 0.1 s instead of 1 s).
function sortByCodePoint<T>(items: T[], key: (item: T) => string): T[] {
  return items
    .map((item) => ({ item, bytes: Buffer.from(key(item)) }))
    .sort((a, b) => Buffer.compare(a.bytes, b.bytes))
    .map(({ item }) => item);
}

/** Whether `root` has a training/ folder, i.e. is meant as an image folder. */
export async function looksLikeImageFolder(root: string): Promise<boolean> {
  return isDirectory(path.join(root, 'training'));
}

// What a directory entry is. A link to a file is followed; a link to a folder is not (unlike
// torchvision's os.walk(followlinks=True)): `ln -s .. training/a/up` would label every other
// class's images as 'a', and two such links loop forever.
async function kind(dir: string, entry: Dirent): Promise<'dir' | 'file' | 'dirlink' | 'other'> {
  if (!entry.isSymbolicLink())
    return entry.isDirectory() ? 'dir' : entry.isFile() ? 'file' : 'other';
  const st = await fs.stat(path.join(dir, entry.name)).catch(() => undefined);
  return st?.isDirectory() ? 'dirlink' : st?.isFile() ? 'file' : 'other';
}

/** @internal What a non-regular file is, for "not a regular file (a FIFO)". */
export function fileKind(st: {
  isDirectory(): boolean;
  isFIFO(): boolean;
  isSocket(): boolean;
  isCharacterDevice(): boolean;
  isBlockDevice(): boolean;
}): string {
  if (st.isDirectory()) return 'a folder';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  return 'not a file';
}

const DIR_LINK = 'a link to a folder, not followed';

// device:inode of `dir` and of every folder above it.
async function ancestors(dir: string): Promise<Set<string>> {
  const ids = new Set<string>();
  let d = await fs.realpath(dir).catch(() => path.resolve(dir));
  for (;;) {
    const st = await fs.stat(d).catch(() => undefined);
    if (st) ids.add(`${st.dev}:${st.ino}`);
    const up = path.dirname(d);
    if (up === d) return ids;
    d = up;
  }
}

async function readDir(dir: string): Promise<Dirent[]> {
  const entries = await fs.readdir(dir, { withFileTypes: true }).catch((err) => {
    throw new Error(
      (err as NodeJS.ErrnoException).code === 'ENOENT'
        ? `${dir}: not found (expected ${dir}/<class>/*.png)`
        : `${dir}: ${(err as Error).message}`,
    );
  });
  return sortByCodePoint(
    entries.filter((e) => !e.name.startsWith('.')),
    (e) => e.name,
  );
}

// Class folders of a split. A class folder may be a link (followed once), unless it leads to
// the split folder or above (a loop) or to a folder another class already is.
async function listClasses(dir: string, skipped: Skipped): Promise<string[]> {
  const classes: string[] = [];
  const above = await ancestors(dir);
  const seen = new Map<string, string>();
  for (const entry of await readDir(dir)) {
    const file = path.join(dir, entry.name);
    const k = await kind(dir, entry);
    if (k !== 'dir' && k !== 'dirlink') {
      skipped.push({ file, reason: 'not inside a class folder' });
      continue;
    }
    const st = await fs.stat(file);
    const id = `${st.dev}:${st.ino}`;
    if (above.has(id)) {
      skipped.push({ file, reason: 'a link to a folder that holds it (a loop), not followed' });
    } else if (seen.has(id)) {
      skipped.push({ file, reason: `the same folder as class '${seen.get(id)}', not read twice` });
    } else {
      seen.set(id, entry.name);
      classes.push(entry.name);
    }
  }
  if (classes.length === 0) {
    throw new Error(`${dir}: no class folders found (expected ${dir}/<class>/*.png)`);
  }
  return classes;
}

// Image files under `dir`, sub-folders included (as torchvision walks them), sorted.
async function listImages(dir: string, skipped: Skipped, signal?: AbortSignal): Promise<string[]> {
  throwIfAborted(signal);
  const files: string[] = [];
  for (const entry of await readDir(dir)) {
    const file = path.join(dir, entry.name);
    const k = await kind(dir, entry);
    if (k === 'dir') files.push(...(await listImages(file, skipped, signal)));
    else if (k === 'dirlink') skipped.push({ file, reason: DIR_LINK });
    else if (k !== 'file') skipped.push({ file, reason: 'not a regular file' });
    else if (isImageFile(file)) files.push(file);
    else skipped.push({ file, reason: `not an image extension (${IMG_EXTENSIONS.join(' ')})` });
  }
  return sortByCodePoint(files, (f) => f);
}

/**
 * Image files under `dir`, sub-folders included, hidden entries left out, in code-point order
 * of their paths: what `predict` runs on a folder. Links to folders are not followed; they,
 * and anything else left out, are added to `skipped` with why.
 */
export async function listImageFiles(
  dir: string,
  skipped: { file: string; reason: string }[] = [],
): Promise<string[]> {
  return listImages(dir, skipped);
}

/**
 * @internal Runs `fn` over `items` with at most `limit` calls pending; results keep the items'
 * order. An aborted `signal` stops it before the next item. Calls that finish without waiting
 * (a small PNG decoded in JS) would never let the event loop run, and so never hear a signal:
 * every 10 ms of such work it is let run.
 */
export async function mapLimit<T, R>(
  items: T[],
  limit: number,
  fn: (item: T) => Promise<R>,
  signal?: AbortSignal,
): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  let slice = performance.now();
  const worker = async () => {
    while (next < items.length) {
      if (performance.now() - slice > 10) {
        await yieldToLoop();
        slice = performance.now();
      }
      throwIfAborted(signal);
      if (next >= items.length) break;
      const i = next++;
      out[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/**
 * @internal Why a file could not be decoded, in a few words: sharp says "unsupported image
 * format" for empty and unreadable files too, so those are named plainly from `openError`
 * (what opening the file for reading failed with, if it did) and `size`.
 */
export function unreadableReason(err: unknown, openError?: unknown, size?: number): string {
  const code = (openError as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  if (code === 'ENOENT') return 'no such file';
  if (openError) return String((openError as Error).message ?? openError).split('\n')[0];
  return size === 0 ? 'empty file' : String((err as Error).message ?? err).split('\n')[0];
}

async function whyUnreadable(file: string, err: unknown): Promise<string> {
  let openError: unknown;
  await fs.open(file, 'r').then(
    (h) => h.close(),
    (e) => (openError = e),
  );
  const size = (await fs.stat(file).catch(() => undefined))?.size;
  return unreadableReason(err, openError, size);
}

// Why an image of this size is not decoded, or undefined when it may be.
function overPixelLimit(width: number, height: number, maxPixels: number): string | undefined {
  return width * height > maxPixels
    ? `${width}×${height} is ${width * height} pixels, over the limit of ${maxPixels} (--max-pixels)`
    : undefined;
}

function pixelLimit(options: { maxPixels?: number }): number {
  const max = options.maxPixels ?? DEFAULT_MAX_PIXELS;
  if (!Number.isSafeInteger(max) || max < 1) {
    throw new RangeError(`maxPixels: ${max} is not a positive integer`);
  }
  return max;
}

// A split's image files, in order, with their labels; `skipped` holds what the listing left out.
interface Listed {
  dir: string;
  classes: string[];
  files: string[];
  labels: number[];
  skipped: Skipped;
}

async function listSplit(
  dir: string,
  classes: string[],
  skipped: Skipped,
  signal?: AbortSignal,
): Promise<Listed> {
  const listed: Listed = { dir, classes, files: [], labels: [], skipped };
  for (const [label, cls] of classes.entries()) {
    for (const file of await listImages(path.join(dir, cls), skipped, signal)) {
      listed.files.push(file);
      listed.labels.push(label);
    }
  }
  return listed;
}

interface Scan {
  dir: string;
  files: string[];
  labels: number[];
  sizes: { width: number; height: number }[];
  /** per file: an 8-bit grey image (with or without alpha), from its header */
  grey: boolean[];
  /** per file: a small plain PNG, decoded in JS (png.ts) */
  plain: boolean[];
  /** the listing's skips, then those of the headers and the decode */
  skipped: Skipped;
  maxPixels: number;
}

// Reads the listed images' sizes from their headers (no decoding yet).
async function scanHeaders(listed: Listed, maxPixels: number, signal?: AbortSignal): Promise<Scan> {
  const skipped = [...listed.skipped];
  const sizes = await mapLimit(
    listed.files,
    IN_FLIGHT,
    async (file) => {
      const png = plainPngFile(file);
      const over = png && overPixelLimit(png.width, png.height, maxPixels);
      if (over) {
        skipped.push({ file, reason: over });
        return undefined;
      }
      if (png) return { ...png, plain: true };
      try {
        const { width, height, channels, depth, space } = await sharp(file).metadata();
        const over = overPixelLimit(width ?? 0, height ?? 0, maxPixels);
        if (over) {
          skipped.push({ file, reason: over });
          return undefined;
        }
        const grey = (channels ?? 3) <= 2 && depth === 'uchar' && space === 'b-w';
        return { width: width!, height: height!, grey, plain: false };
      } catch (err) {
        skipped.push({ file, reason: await whyUnreadable(file, err) });
        return undefined;
      }
    },
    signal,
  );
  const scan: Scan = {
    dir: listed.dir,
    files: [],
    labels: [],
    sizes: [],
    grey: [],
    plain: [],
    skipped,
    maxPixels,
  };
  listed.files.forEach((file, i) => {
    const size = sizes[i];
    if (!size) return;
    scan.files.push(file);
    scan.labels.push(listed.labels[i]);
    scan.sizes.push({ width: size.width, height: size.height });
    scan.grey.push(size.grey);
    scan.plain.push(size.plain);
  });
  return scan;
}

type Size = { width: number; height: number };

/**
 * @internal The size a split's images are brought to: the most common one, scaled down (aspect
 * kept) when a side is over MAX_COMMON_SIDE; `capped` is then the majority size it came from.
 */
export function commonSize(sizes: Size[]): Size & { capped?: Size } {
  const best = majoritySize(sizes);
  const longest = Math.max(best.width, best.height);
  if (longest <= MAX_COMMON_SIDE) return best;
  const scale = MAX_COMMON_SIDE / longest;
  return {
    width: Math.max(1, Math.round(best.width * scale)),
    height: Math.max(1, Math.round(best.height * scale)),
    capped: { width: best.width, height: best.height },
  };
}

// The most common width×height; ties go to the size seen first.
function majoritySize(sizes: Size[]): Size {
  const counts = new Map<string, number>();
  let best = sizes[0];
  let bestCount = 0;
  for (const s of sizes) {
    const key = `${s.width}x${s.height}`;
    const c = (counts.get(key) ?? 0) + 1;
    counts.set(key, c);
    if (c > bestCount) [best, bestCount] = [s, c];
  }
  return best;
}

// An empty class cannot be trained on or evaluated, so it is an error rather than a skip.
function requireEveryClass(scan: Scan, classes: string[], labels: ArrayLike<number>): void {
  const counts = new Array<number>(classes.length).fill(0);
  for (let i = 0; i < labels.length; i++) counts[labels[i]]++;
  const empty = counts.indexOf(0);
  if (empty < 0) return;
  const classDir = path.join(scan.dir, classes[empty]);
  // Sorted: skips are recorded as reads finish, and the example named must not depend on timing.
  const skipped = sortByCodePoint(
    scan.skipped.filter((s) => s.file.startsWith(classDir + path.sep)),
    (s) => s.file,
  );
  const why = skipped.length
    ? ` (${skipped.length} skipped, e.g. ${path.basename(skipped[0].file)}: ${skipped[0].reason})`
    : '';
  throw new Error(`${classDir}: no images${why}`);
}

/** Whether a file name has one of the image extensions (torchvision's IMG_EXTENSIONS). */
export function isImageFile(name: string): boolean {
  return IMG_EXTENSIONS.includes(path.extname(name).toLowerCase());
}

// One file as interleaved 8-bit sRGB, resized to `size` when given.
async function decodeRgb(
  file: string,
  size: { width: number; height: number } | undefined,
  maxPixels: number,
): Promise<{ rgb: Uint8Array; width: number; height: number }> {
  // Alpha is dropped, not blended, like PIL's convert('RGB') in torchvision's loader. The pixel
  // limit was checked from the header already; sharp checks it again as it decodes.
  let image = sharp(file, { limitInputPixels: maxPixels }).removeAlpha().toColourspace('srgb');
  if (size) image = image.resize(size.width, size.height, { fit: 'fill', kernel: 'linear' });
  const { data, info } = await image.raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
  if (info.channels !== 3) throw new Error(`decoded to ${info.channels} channels, expected 3`);
  return { rgb: data, width: info.width, height: info.height };
}

// One 8-bit grey file (by its header) as its grey plane, resized to `size` when given: what
// decodeRgb then pilLuma give for it (each channel of a grey image is the image), at a third of
// the work; undefined when the decoder gives something else than one channel.
async function decodeGrey(
  file: string,
  size: { width: number; height: number } | undefined,
  maxPixels: number,
): Promise<Uint8Array | undefined> {
  let image = sharp(file, { limitInputPixels: maxPixels }).removeAlpha();
  if (size) image = image.resize(size.width, size.height, { fit: 'fill', kernel: 'linear' });
  const { data, info } = await image.raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
  return info.channels === 1 ? data : undefined;
}

/**
 * Grey from interleaved RGB as PIL's convert('L') computes it: ITU-R 601-2 luma in 16-bit fixed
 * point, L = (19595 R + 38470 G + 7471 B + 2^15) >> 16, so that a model trained by the original
 * PyTorch script sees the same pixels. (libvips's 'b-w' weighs linear light: pure blue gives 76
 * there, 29 in PIL.) A grey pixel (R = G = B) stays itself.
 */
export function pilLuma(rgb: Uint8Array): Uint8Array {
  const out = new Uint8Array(rgb.length / 3);
  for (let i = 0, j = 0; i < out.length; i++, j += 3) {
    out[i] = luma(rgb[j], rgb[j + 1], rgb[j + 2]);
  }
  return out;
}

/** Interleaved RGB (what decoders give) as three planes, R then G then B (what networks take). */
export function planarRgb(rgb: Uint8Array): Uint8Array {
  const plane = rgb.length / 3;
  const out = new Uint8Array(rgb.length);
  for (let i = 0, j = 0; i < plane; i++, j += 3) {
    out[i] = rgb[j];
    out[plane + i] = rgb[j + 1];
    out[2 * plane + i] = rgb[j + 2];
  }
  return out;
}

/** Whether any pixel of interleaved RGB has colour (its channels differ). */
export function hasColour(rgb: Uint8Array): boolean {
  for (let j = 0; j < rgb.length; j += 3) {
    if (rgb[j] !== rgb[j + 1] || rgb[j + 1] !== rgb[j + 2]) return true;
  }
  return false;
}

// Interleaved RGB as `channels` planes: grey by PIL's luma, or planar RGB.
function toChannels(rgb: Uint8Array, channels: 1 | 3): Uint8Array {
  return channels === 1 ? pilLuma(rgb) : planarRgb(rgb);
}

/**
 * One image file as `channels` planes (1: grey as PIL's convert('L'), 3: RGB; 0..255,
 * channels × height × width), resized to `size` when given. Only a regular file is opened (a
 * FIFO named x.png would block); an image of more than `options.maxPixels` (default
 * DEFAULT_MAX_PIXELS) is refused from its header.
 */
export async function decodeImage(
  file: string,
  channels: 1 | 3,
  size?: { width: number; height: number },
  options: { maxPixels?: number } = {},
): Promise<{ pixels: Uint8Array; width: number; height: number }> {
  const maxPixels = pixelLimit(options);
  // A plain PNG of the size wanted decodes here at once, in one synchronous read (readStart opens
  // it non-blocking and refuses anything but a regular file): a stat through the thread pool and
  // a second read were half of one-image predict's time from a file (§27). Anything else, or any
  // failure, takes the checks below and their messages.
  const plain = decodePlainPngFile(file, (png) => {
    const fits = !size || (size.width === png.width && size.height === png.height);
    return fits && png.width * png.height <= maxPixels;
  });
  if (plain) {
    const pixels = plain.rgb ? toChannels(plain.rgb, channels) : greyAs(plain.grey, channels);
    return { pixels, width: plain.width, height: plain.height };
  }
  const st = await fs.stat(file).catch((err) => {
    throw new Error(`${file}: ${unreadableReason(err, err)}`);
  });
  if (!st.isFile()) throw new Error(`${file}: not a regular file (${fileKind(st)})`);
  try {
    const { width, height } = await sharp(file, { limitInputPixels: false }).metadata();
    const over = overPixelLimit(width ?? 0, height ?? 0, maxPixels);
    if (over) throw new Error(over);
    const decoded = await decodeRgb(file, size, maxPixels);
    return { ...decoded, pixels: toChannels(decoded.rgb, channels) };
  } catch (err) {
    if ((err as Error).message.includes('--max-pixels')) {
      throw new Error(`${file}: ${(err as Error).message}`);
    }
    throw new Error(`${file}: ${await whyUnreadable(file, err)}`);
  }
}

// A grey plane as `channels` planes (3: the same plane thrice, as the RGB of a grey image).
function greyAs(grey: Uint8Array, channels: 1 | 3): Uint8Array {
  if (channels === 1) return grey;
  const out = new Uint8Array(3 * grey.length);
  for (let c = 0; c < 3; c++) out.set(grey, c * grey.length);
  return out;
}

// Counts decoded files for LoadOptions.onProgress.
class DecodeCounter {
  decoded = 0;
  constructor(
    readonly total: number,
    private readonly onProgress?: (progress: LoadProgress) => void,
  ) {
    onProgress?.({ decoded: 0, total });
  }
  cached = 0;
  /** `files` more done: decoded (one at a time), left out, or read back from the cache */
  tick(files = 1, cached = false): void {
    if (files === 0) return;
    this.decoded += files;
    if (cached) this.cached += files;
    const { decoded, total } = this;
    this.onProgress?.({ decoded, total, ...(this.cached > 0 && { cached: this.cached }) });
  }
}

// Decodes every scanned image at the common size, to `channels` planes, or (undefined) to RGB
// when any of them has a coloured pixel and else grey.
async function decodeSplit(
  scan: Scan,
  classes: string[],
  size: Size & { capped?: Size },
  channels: 1 | 3 | undefined,
  counter: DecodeCounter,
  signal?: AbortSignal,
): Promise<Dataset> {
  const { width, height } = size;
  const needsResize = (i: number) =>
    scan.sizes[i].width !== width || scan.sizes[i].height !== height;
  let colour = false;
  const decoded = await mapLimit(
    [...scan.files.keys()],
    IN_FLIGHT,
    async (i) => {
      const file = scan.files[i];
      try {
        const resize = needsResize(i) ? size : undefined;
        // A small plain PNG at the common size is decoded here; a grey one is its grey plane
        // (each channel of its RGB). A damaged one goes on to sharp, for sharp's message.
        const plain = scan.plain[i] && !resize ? decodePlainPngFile(file) : undefined;
        if (plain?.grey) return { grey: plain.grey };
        if (!plain && scan.grey[i] && channels !== 3) {
          const grey = await decodeGrey(file, resize, scan.maxPixels);
          if (grey?.length === width * height) return { grey };
        }
        const rgb = plain?.rgb ?? (await decodeRgb(file, resize, scan.maxPixels)).rgb;
        if (rgb.length !== 3 * width * height) {
          throw new Error(
            `decoded to ${rgb.length / 3} pixels, the header said ${width}×${height}`,
          );
        }
        // Held as one grey plane unless RGB is asked for or the image has colour: a grey
        // image's luma is each of its channels, so nothing is lost, and a grey set takes a
        // third of the memory while it decodes.
        if (channels === 3) return { rgb };
        if (channels === 1 || !hasColour(rgb)) return { grey: pilLuma(rgb) };
        colour = true;
        return { rgb };
      } catch (err) {
        scan.skipped.push({ file, reason: await whyUnreadable(file, err) });
        return undefined;
      } finally {
        counter.tick();
      }
    },
    signal,
  );
  const kept = decoded.flatMap((p, i) => (p ? [i] : []));
  const labels = Int32Array.from(kept, (i) => scan.labels[i]);
  requireEveryClass(scan, classes, labels);
  const resolved = channels ?? (colour ? 3 : 1);
  const plane = width * height;
  const bytes = resolved * plane;
  const images = new Uint8Array(kept.length * bytes);
  kept.forEach((i, k) => {
    const { rgb, grey } = decoded[i]!;
    const at = k * bytes;
    if (grey && resolved === 1) images.set(grey, at);
    else if (grey) for (let c = 0; c < 3; c++) images.set(grey, at + c * plane);
    else images.set(toChannels(rgb!, resolved), at);
  });
  return {
    images,
    labels,
    count: kept.length,
    channels: resolved,
    height,
    width,
    classNames: classes,
    source: scan.dir,
    // Skips are recorded as decodes finish; sorted so the list does not depend on timing.
    skipped: sortByCodePoint(scan.skipped, (s) => s.file),
    resized: kept.filter(needsResize).length,
    ...(size.capped && { capped: size.capped }),
  };
}

/**
 * Loads ROOT/training/<class>/* and ROOT/testing/<class>/* (classes sorted by name, the same
 * in both). Every image becomes RGB when any training image has a coloured pixel, else grey
 * (or as `options.channels` says), at the size most training images have; others are resized
 * to it and counted in `resized`. Unreadable files are left out
 * and listed in `skipped`. `options.signal` stops the load, `options.onProgress` follows it.
 */
export async function loadImageFolder(root: string, options: LoadOptions = {}): Promise<DataSplit> {
  return abortable(loadBothSplits(root, options), options.signal);
}

/**
 * ROOT/testing/<class>/* alone, as `loadImageFolder` loads it, without reading training/:
 * images are brought to `options.size` (the training split's common size) when given, else to
 * the size most test images have.
 */
export async function loadImageFolderTest(
  root: string,
  options: TestSplitOptions = {},
): Promise<TestSplit> {
  return abortable(loadTestSplit(root, options), options.signal);
}

async function loadTestSplit(root: string, options: TestSplitOptions): Promise<TestSplit> {
  const testDir = path.join(root, 'testing');
  const skipped: Skipped = [];
  const classes = await listClasses(testDir, skipped);
  const listed = await listSplit(testDir, classes, skipped, options.signal);
  const counter = new DecodeCounter(listed.files.length, options.onProgress);
  // Without the training split to decide from, its own pixels decide (callers that know the
  // training channels, eval of a checkpoint, pass them).
  const test = await loadSplit(listed, options, counter, options.channels, options.size);
  return { name: root, test };
}

async function loadBothSplits(root: string, options: LoadOptions): Promise<DataSplit> {
  const { signal } = options;
  const trainDir = path.join(root, 'training');
  const testDir = path.join(root, 'testing');
  const trainSkipped: Skipped = [];
  const testSkipped: Skipped = [];
  const classes = await listClasses(trainDir, trainSkipped);
  const testClasses = await listClasses(testDir, testSkipped);
  const differs = classDifference(classes, testClasses, 'not in training');
  if (differs) throw new Error(`${testDir}: classes differ from ${trainDir}: testing ${differs}`);
  const trainListed = await listSplit(trainDir, classes, trainSkipped, signal);
  const testListed = await listSplit(testDir, classes, testSkipped, signal);
  const counter = new DecodeCounter(
    trainListed.files.length + testListed.files.length,
    options.onProgress,
  );
  // When the training split must be decoded, the test split's headers are read first, so
  // that an empty test class fails before the long decode.
  const testScan = memo(() => scanListed(testListed, options, counter));
  const train = await loadSplit(
    trainListed,
    options,
    counter,
    options.channels,
    undefined,
    testScan,
  );
  const size = {
    width: train.width,
    height: train.height,
    ...(train.capped && { capped: train.capped }),
  };
  const channels = train.channels as 1 | 3;
  const test = await loadSplit(testListed, options, counter, channels, size, undefined, testScan);
  return { name: root, train, test };
}

function memo<T>(make: () => Promise<T>): () => Promise<T> {
  let made: Promise<T> | undefined;
  return () => (made ??= make());
}

// Reads a listed split's headers; an empty class fails here, before any decoding.
async function scanListed(listed: Listed, options: LoadOptions, counter: DecodeCounter) {
  const scan = await scanHeaders(listed, pixelLimit(options), options.signal);
  requireEveryClass(scan, listed.classes, scan.labels);
  counter.tick(listed.files.length - scan.files.length); // left out by their headers
  return scan;
}

/**
 * A listed split, read back from the decoded cache when `options.cache` holds it for these
 * files and settings, else decoded (to `channels`, at `size`: default its own common size) and
 * kept there. `before` runs first when it is decoded (another split's checks); `scanned` is
 * its header scan when one was made already.
 */
async function loadSplit(
  listed: Listed,
  options: LoadOptions,
  counter: DecodeCounter,
  channels: 1 | 3 | undefined,
  size: (Size & { capped?: Size }) | undefined,
  before?: () => Promise<unknown>,
  scanned?: () => Promise<Scan>,
): Promise<Dataset> {
  const maxPixels = pixelLimit(options);
  const settings: DecodeSettings = {
    channels: channels ?? 'auto',
    size: size ? { width: size.width, height: size.height } : 'common',
    maxPixels,
    maxCommonSide: MAX_COMMON_SIDE,
  };
  const { dir, classes, files, labels } = listed;
  // Read first, so that a bad $TORCHFOCAL_DECODE_CACHE_MB stops the load before any decoding.
  const limit = options.cache === undefined ? 0 : (options.cacheLimit ?? cacheLimit());
  const entry =
    options.cache === undefined
      ? undefined
      : await cacheEntry(options.cache, dir, classes, files, labels, settings, options.signal);
  const kept = entry && (await readCached(entry));
  throwIfAborted(options.signal);
  if (kept) {
    counter.tick(files.length, true);
    const skipped = sortByCodePoint([...listed.skipped, ...kept.skipped], (s) => s.file);
    return { ...kept, classNames: classes, source: dir, skipped };
  }
  const scan = await (scanned ?? (() => scanListed(listed, options, counter)))();
  await before?.();
  const decoded = await decodeSplit(
    scan,
    classes,
    size ?? commonSize(scan.sizes),
    channels,
    counter,
    options.signal,
  );
  if (entry) await keep(entry, listed, decoded, options, limit);
  return decoded;
}

// Writes a decoded split to the cache, then keeps the cache under `limit`; a failure (a
// read-only or full disk) costs only speed.
async function keep(
  entry: CacheEntry,
  listed: Listed,
  ds: Dataset,
  options: LoadOptions,
  limit: number,
) {
  const listing = new Set(listed.skipped);
  const split = {
    images: ds.images,
    labels: ds.labels,
    count: ds.count,
    channels: ds.channels,
    height: ds.height,
    width: ds.width,
    classNames: ds.classNames,
    skipped: (ds.skipped ?? []).filter((s) => !listing.has(s)),
    resized: ds.resized ?? 0,
    ...(ds.capped && { capped: ds.capped }),
  };
  const warn = options.onWarning ?? ((m: string) => process.emitWarning(m, 'TorchfocalWarning'));
  try {
    await writeCached(entry, listed.dir, split);
  } catch (err) {
    warn(
      `${listed.dir}: the decoded images could not be kept in the cache: ${(err as Error).message}`,
    );
    return;
  }
  // options.cache is set: there is an entry
  await pruneCache(options.cache!, limit, entry.file).catch((err: Error) =>
    warn(`${path.dirname(entry.file)}: could not be pruned: ${err.message}`),
  );
}

/**
 * One split folder, DIR/<class>/* (a validation set, say), read as `loadImageFolder` reads a
 * split. Its class folders must be `classNames`, all of them: a missing or extra class is an
 * error naming it. Images are brought to the size most of them have.
 */
export async function loadImageSplit(
  dir: string,
  classNames: string[],
  options: LoadOptions = {},
): Promise<Dataset> {
  return abortable(loadOneSplit(dir, classNames, options), options.signal);
}

async function loadOneSplit(
  dir: string,
  classNames: string[],
  options: LoadOptions,
): Promise<Dataset> {
  const skipped: Skipped = [];
  const classes = await listClasses(dir, skipped);
  const differs = classDifference(classNames, classes, 'not among them');
  if (differs) {
    throw new Error(`${dir}: its class folders are not the training classes: it ${differs}`);
  }
  const listed = await listSplit(dir, classNames, skipped, options.signal);
  const counter = new DecodeCounter(listed.files.length, options.onProgress);
  return loadSplit(listed, options, counter, options.channels, undefined);
}

// How the class folders `found` differ from `expected` ("lacks 'a' and has 'b' <extra>"), or
// undefined when they are the same names.
function classDifference(expected: string[], found: string[], extra: string): string | undefined {
  const missing = expected.filter((c) => !found.includes(c));
  const added = found.filter((c) => !expected.includes(c));
  const list = (names: string[]) => names.map((n) => `'${n}'`).join(', ');
  const parts = [
    missing.length ? `lacks ${list(missing)}` : '',
    added.length ? `has ${list(added)} ${extra}` : '',
  ].filter(Boolean);
  return parts.length ? parts.join(' and ') : undefined;
}
