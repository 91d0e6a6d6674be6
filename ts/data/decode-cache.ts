// Decoded image-folder splits kept on disk, one file a split, so that a second run, `eval` and
// `--resume` read one file instead of decoding every image again.
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import type { Dataset } from './dataset';

/** Bumped whenever decoding could give another pixel, so that older caches are not served. */
export const DECODE_VERSION = 1;

// A cache file: MAGIC, u32 LE format, u32 LE header length, the header (JSON), the labels
// (int32 LE, one a image), the images (count × channels × height × width bytes).
const MAGIC = Buffer.from('TFDECODE');
const FORMAT = 1;
const PREAMBLE = MAGIC.length + 8;

/** How a split is decoded, beyond its files: all of it is part of the key. */
export interface DecodeSettings {
  /** as asked: 'auto' lets the training images' colours decide */
  channels: 1 | 3 | 'auto';
  /** the size asked for, or 'common' (the size most of the split's images have) */
  size: { width: number; height: number } | 'common';
  maxPixels: number;
  maxCommonSide: number;
}

/** A decoded split as the cache keeps it: a dataset without its source, with what its load left out. */
export type DecodedSplit = Omit<Dataset, 'source' | 'skipped' | 'resized'> &
  Required<Pick<Dataset, 'skipped' | 'resized'>>;

interface Header {
  digest: string;
  /** the channels asked for ('auto' or the count); `split.channels` is what came out */
  asked: DecodeSettings['channels'];
  dir: string;
  split: Omit<DecodedSplit, 'images' | 'labels'>;
}

/** Where a split's decoded images are kept, and the key they must match. */
export interface CacheEntry {
  file: string;
  digest: string;
  asked: DecodeSettings['channels'];
}

/**
 * The cache entry of the split folder `dir` holding `files` (absolute paths, in order) with
 * `labels`: its file under CACHE/decoded/ is named by the folder and the settings but its
 * channels (so that a folder takes one file, whatever changed in it); its digest covers every
 * file's path, label, size, modification and change times (nanoseconds), the classes, the
 * settings and DECODE_VERSION. Undefined when a file cannot be stat'ed (it vanished: the
 * decode will say). Stats run synchronously (a few µs each, against tens through the thread
 * pool), yielding to the event loop every few milliseconds so that an abort is heard.
 */
export async function cacheEntry(
  cache: string,
  dir: string,
  classNames: string[],
  files: string[],
  labels: number[],
  settings: DecodeSettings,
  signal?: AbortSignal,
): Promise<CacheEntry | undefined> {
  const { channels: asked, ...rest } = settings;
  const where = JSON.stringify({ dir: path.resolve(dir), ...rest, version: DECODE_VERSION });
  const hash = crypto.createHash('sha256');
  hash.update(JSON.stringify({ where, classNames }));
  let slice = performance.now();
  for (let i = 0; i < files.length; i++) {
    if (performance.now() - slice > 10) {
      await yieldToLoop();
      signal?.throwIfAborted();
      slice = performance.now();
    }
    const st = fs.statSync(files[i], { bigint: true, throwIfNoEntry: false });
    if (!st) return undefined;
    const rel = path.relative(dir, files[i]);
    hash.update(`\n${rel}\0${labels[i]}\0${st.size}\0${st.mtimeNs}\0${st.ctimeNs}`);
  }
  const name = crypto.createHash('sha256').update(where).digest('hex').slice(0, 32);
  return {
    file: path.join(cache, 'decoded', `${name}.bin`),
    digest: hash.digest('hex'),
    asked,
  };
}

/**
 * The split kept for `entry`, or undefined when there is none, it was made from other files
 * or settings, or it is damaged or truncated (it is then rewritten after the decode). Channels
 * asked for match a split decoded with 'auto' that came out with those channels (the same
 * bytes); 'auto' matches only 'auto'.
 */
export async function readCached(entry: CacheEntry): Promise<DecodedSplit | undefined> {
  const bytes = await fsp.readFile(entry.file).catch(() => undefined);
  if (!bytes || bytes.length < PREAMBLE || !bytes.subarray(0, MAGIC.length).equals(MAGIC)) {
    return undefined;
  }
  if (bytes.readUInt32LE(MAGIC.length) !== FORMAT) return undefined;
  const headerEnd = PREAMBLE + bytes.readUInt32LE(MAGIC.length + 4);
  let header: Header;
  try {
    header = JSON.parse(bytes.toString('utf8', PREAMBLE, headerEnd)) as Header;
  } catch {
    return undefined;
  }
  const { split } = header;
  if (header.digest !== entry.digest || !split) return undefined;
  if (
    entry.asked !== header.asked &&
    !(header.asked === 'auto' && entry.asked === split.channels)
  ) {
    return undefined;
  }
  const { count, channels, height, width } = split;
  const imageBytes = channels * height * width;
  if (![count, channels, height, width].every(Number.isSafeInteger)) return undefined;
  if (bytes.length !== headerEnd + count * (4 + imageBytes)) return undefined;
  const labels = new Int32Array(count);
  for (let i = 0; i < count; i++) {
    labels[i] = bytes.readInt32LE(headerEnd + 4 * i);
    if (labels[i] < 0 || labels[i] >= split.classNames.length) return undefined;
  }
  return { ...split, labels, images: bytes.subarray(headerEnd + 4 * count) };
}

/**
 * Keeps `split` for `entry`, atomically: written to a temporary file beside it, flushed, then
 * renamed into place (write-file-atomic takes one buffer, and joining the images into one would
 * copy the whole dataset).
 */
export async function writeCached(entry: CacheEntry, dir: string, split: DecodedSplit) {
  const { images, labels, ...rest } = split;
  const header: Header = { digest: entry.digest, asked: entry.asked, dir, split: rest };
  const json = Buffer.from(JSON.stringify(header));
  const preamble = Buffer.alloc(PREAMBLE);
  MAGIC.copy(preamble);
  preamble.writeUInt32LE(FORMAT, MAGIC.length);
  preamble.writeUInt32LE(json.length, MAGIC.length + 4);
  const labelBytes = Buffer.alloc(4 * split.count);
  labels.forEach((label, i) => labelBytes.writeInt32LE(label, 4 * i));
  await fsp.mkdir(path.dirname(entry.file), { recursive: true });
  const tmp = `${entry.file}.${process.pid}.${crypto.randomBytes(4).toString('hex')}.tmp`;
  const out = await fsp.open(tmp, 'wx');
  try {
    for (const part of [preamble, json, labelBytes, images]) {
      // A write moves at most ~2 GiB: go on from where it stopped.
      for (let at = 0; at < part.length;) {
        at += (await out.write(part, at, Math.min(part.length - at, 2 ** 30))).bytesWritten;
      }
    }
    await out.sync();
    await out.close();
    await fsp.rename(tmp, entry.file);
  } catch (err) {
    await out.close().catch(() => {});
    await fsp.rm(tmp, { force: true });
    throw err;
  }
}
