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

/** The size CACHE/decoded/ is kept under unless $TORCHFOCAL_DECODE_CACHE_MB says otherwise: 10 GiB. */
export const DEFAULT_CACHE_LIMIT = 10 * 2 ** 30;

// A temporary file this old belongs to a writer that died (a write takes seconds).
const STALE_TEMP_MS = 60 * 60 * 1000;

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
  // Marks it used, in its modification time (access times move with any read, pruneCache's
  // header reads too, or not at all on noatime mounts): pruneCache removes the least recently
  // used splits first.
  const now = new Date();
  await fsp.utimes(entry.file, now, now).catch(() => {});
  return { ...split, labels, images: bytes.subarray(headerEnd + 4 * count) };
}

/**
 * Keeps `split` for `entry`, atomically: written to a temporary file beside it, flushed, then
 * renamed into place (write-file-atomic takes one buffer, and joining the images into one would
 * copy the whole dataset).
 */
export async function writeCached(entry: CacheEntry, dir: string, split: DecodedSplit) {
  const { images, labels, ...rest } = split;
  const header: Header = {
    digest: entry.digest,
    asked: entry.asked,
    dir: path.resolve(dir),
    split: rest,
  };
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

/**
 * The limit CACHE/decoded/ is kept under, in bytes: $TORCHFOCAL_DECODE_CACHE_MB (a whole number
 * of MiB) or DEFAULT_CACHE_LIMIT. Throws on anything else, naming the variable.
 */
export function cacheLimit(env: NodeJS.ProcessEnv = process.env): number {
  const value = env.TORCHFOCAL_DECODE_CACHE_MB;
  if (value === undefined || value === '') return DEFAULT_CACHE_LIMIT;
  if (!/^\d+$/.test(value.trim())) {
    throw new Error(`TORCHFOCAL_DECODE_CACHE_MB must be a whole number of MiB, not '${value}'`);
  }
  return Number(value.trim()) * 2 ** 20;
}

/**
 * Tidies CACHE/decoded/ after a split was written there (`kept`, which always stays): temporary
 * files older than an hour (their writer died) go, then splits whose image folder no longer
 * exists, then the least recently used splits (read or written longest ago: readCached sets the
 * modification time) until the rest fit in `limit` bytes. Returns the files removed; a file that cannot be removed is left.
 */
export async function pruneCache(cache: string, limit: number, kept?: string): Promise<string[]> {
  const dir = path.join(cache, 'decoded');
  const names = await fsp.readdir(dir).catch(() => [] as string[]);
  const removed: string[] = [];
  const remove = async (file: string) => {
    const gone = await fsp.rm(file, { force: true }).then(
      () => true,
      () => false,
    );
    if (gone) removed.push(file);
    return gone;
  };
  const splits: { file: string; size: number; used: number }[] = [];
  let total = 0;
  for (const name of names) {
    const file = path.join(dir, name);
    const st = await fsp.stat(file).catch(() => undefined);
    if (!st?.isFile()) continue;
    if (name.endsWith('.tmp')) {
      if (Date.now() - st.mtimeMs > STALE_TEMP_MS) await remove(file);
      continue;
    }
    if (!name.endsWith('.bin')) continue;
    total += st.size;
    if (file === kept) continue;
    const source = await sourceFolder(file);
    if (source !== undefined && !fs.existsSync(source)) {
      if (await remove(file)) total -= st.size;
      continue;
    }
    splits.push({ file, size: st.size, used: st.mtimeMs });
  }
  for (const split of splits.sort((a, b) => a.used - b.used)) {
    if (total <= limit) break;
    if (await remove(split.file)) total -= split.size;
  }
  return removed;
}

// The folder a cache file's split was decoded from, as its header records it (absolute paths
// only: older files may hold a relative one), or undefined.
async function sourceFolder(file: string): Promise<string | undefined> {
  const handle = await fsp.open(file, 'r').catch(() => undefined);
  if (!handle) return undefined;
  try {
    const preamble = Buffer.alloc(PREAMBLE);
    await handle.read(preamble, 0, PREAMBLE, 0);
    if (!preamble.subarray(0, MAGIC.length).equals(MAGIC)) return undefined;
    const json = Buffer.alloc(preamble.readUInt32LE(MAGIC.length + 4));
    await handle.read(json, 0, json.length, PREAMBLE);
    const { dir } = JSON.parse(json.toString('utf8')) as Partial<Header>;
    return typeof dir === 'string' && path.isAbsolute(dir) ? dir : undefined;
  } catch {
    return undefined;
  } finally {
    await handle.close();
  }
}
