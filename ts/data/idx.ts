// IDX files (the MNIST format, http://yann.lecun.com/exdb/mnist/), raw or gzipped.
import fs from 'node:fs/promises';
import { Readable } from 'node:stream';
import zlib from 'node:zlib';
import type { Dataset } from './dataset';

export interface Idx {
  dims: number[];
  data: Uint8Array;
}

/**
 * The most bytes of data an IDX file may hold (1 GiB; EMNIST's largest split is 0.64 GB). A
 * header promising more is refused before anything is allocated or inflated.
 */
export const IDX_MAX_BYTES = 2 ** 30;

export interface IdxOptions {
  /** the most bytes of data the header may promise (default IDX_MAX_BYTES) */
  maxBytes?: number;
}

// Named so that a file of another type is rejected with what it actually holds.
const IDX_TYPES: Record<number, string> = {
  0x08: 'unsigned byte',
  0x09: 'signed byte',
  0x0b: 'int16',
  0x0c: 'int32',
  0x0d: 'float32',
  0x0e: 'float64',
};

const hex = (bytes: ArrayLike<number>) =>
  '0x' + Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');

const isGzip = (buf: Uint8Array) => buf.length >= 2 && buf[0] === 0x1f && buf[1] === 0x8b;

// Checks the first 4 bytes: magic, type and a non-zero number of dimensions.
function checkMagic(head: Uint8Array, name: string): void {
  if (head[0] !== 0 || head[1] !== 0) {
    throw new Error(
      `${name}: not an IDX file: magic number ${hex(head.subarray(0, 4))} does not start with two zero bytes`,
    );
  }
  const type = head[2];
  if (type !== 0x08) {
    throw new Error(
      `${name}: IDX data type ${hex([type])} (${IDX_TYPES[type] ?? 'unknown'}) ` +
        `is not supported; only unsigned bytes (0x08) are`,
    );
  }
  const ndims = head[3];
  if (head[3] === 0) throw new Error(`${name}: IDX header declares 0 dimensions`);
}

// Checks a complete header; returns dims and the data size it promises.
function parseHeader(
  head: Uint8Array,
  name: string,
  maxBytes: number,
): { dims: number[]; header: number; size: number } {
  checkMagic(head, name);
  const ndims = head[3];
  const header = 4 + 4 * ndims;
  const view = new DataView(head.buffer, head.byteOffset, head.byteLength);
  const dims = Array.from({ length: ndims }, (_, i) => view.getUint32(4 + 4 * i)); // big-endian
  const shape = dims.join('×');
  if (dims.includes(0)) throw new Error(`${name}: IDX header has an empty dimension (${shape})`);
  const size = dims.reduce((a, b) => a * b, 1);
  if (size > maxBytes) {
    throw new Error(
      `${name}: header says ${shape} (${size} bytes of data), more than the limit of ${maxBytes} bytes; refused before reading it`,
    );
  }
  return { dims, header, size };
}

// Reads an IDX stream chunk by chunk: the header first, then at most the bytes it promises
// plus one (to detect trailing data), so a decompression bomb never inflates past its promise.
async function readIdxStream(
  chunks: AsyncIterable<Uint8Array>,
  name: string,
  maxBytes: number,
  total?: number,
): Promise<Idx> {
  let head = new Uint8Array(0);
  let parsed: { dims: number[]; header: number; size: number } | undefined;
  let data: Uint8Array | undefined;
  let filled = 0;
  for await (const chunk of chunks) {
    let rest: Uint8Array = chunk;
    if (!parsed) {
      const joined = new Uint8Array(head.length + rest.length);
      joined.set(head);
      joined.set(rest, head.length);
      head = joined;
      const need = head.length >= 4 ? 4 + 4 * head[3] : 4;
      if (head.length >= 4) checkMagic(head, name);
      if (head.length < need) continue;
      parsed = parseHeader(head.subarray(0, need), name, maxBytes);
      if (total !== undefined) {
        // A raw file's size is known: a wrong one is refused before anything is allocated.
        const { dims, size } = parsed;
        const follow = total - need;
        const says = `header says ${dims.join('×')} (${size} bytes of data) but ${follow} bytes follow`;
        if (follow < size) throw new Error(`${name}: truncated: ${says}`);
        if (follow > size) throw new Error(`${name}: has ${follow - size} extra bytes: ${says}`);
      }
      data = new Uint8Array(parsed.size);
      rest = head.subarray(need);
    }
    const take = Math.min(rest.length, parsed.size - filled);
    data!.set(rest.subarray(0, take), filled);
    filled += take;
    if (take < rest.length) {
      throw new Error(
        `${name}: has extra bytes: header says ${parsed.dims.join('×')} (${parsed.size} bytes of data) but more follow; stopped reading after ${parsed.size + 1}`,
      );
    }
  }
  if (!parsed) {
    const need = head.length >= 4 ? 4 + 4 * head[3] : 4;
    if (head.length < 4) {
      throw new Error(`${name}: truncated: ${head.length} bytes is too short for an IDX header`);
    }
    throw new Error(
      `${name}: truncated: the header of ${head[3]} dimensions needs ${need} bytes but the file has ${head.length}`,
    );
  }
  if (filled < parsed.size) {
    throw new Error(
      `${name}: truncated: header says ${parsed.dims.join('×')} (${parsed.size} bytes of data) but ${filled} bytes follow`,
    );
  }
  return { dims: parsed.dims, data: data! };
}

// The inflated chunks of a gzip stream, its errors named as such.
async function* gunzipChunks(source: Readable, name: string): AsyncGenerator<Uint8Array> {
  const gunzip = zlib.createGunzip();
  source.on('error', (err) => gunzip.destroy(err));
  source.pipe(gunzip);
  try {
    for await (const chunk of gunzip) yield chunk as Buffer;
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code?.startsWith('Z_') || /zlib|header|end of file/i.test(e.message)) {
      throw new Error(`${name}: not a valid gzip file (${e.message})`);
    }
    throw new Error(`${name}: ${e.message}`);
  } finally {
    // Stops inflating at once when the reader has read enough (or refused the header).
    gunzip.destroy();
    source.destroy();
  }
}

/** Decodes an IDX file held in memory (raw or gzipped); `name` starts every error message. */
export async function parseIdx(
  buf: Uint8Array,
  name: string,
  options: IdxOptions = {},
): Promise<Idx> {
  const maxBytes = options.maxBytes ?? IDX_MAX_BYTES;
  // Detected by content, not extension: Debian ships .gz, other mirrors unpack them.
  if (isGzip(buf)) return readIdxStream(gunzipChunks(Readable.from([buf]), name), name, maxBytes);
  const { data, ...rest } = await readIdxStream(
    (async function* () {
      yield buf;
    })(),
    name,
    maxBytes,
    buf.length,
  );
  // A view, not a copy, as before (the caller's buffer holds it already).
  const offset = buf.length - data.length;
  return { ...rest, data: buf.subarray(offset, offset + data.length) };
}

/**
 * Reads an IDX file, raw or gzipped, as a stream: the header is checked before the data is
 * read, and a gzipped file is inflated only up to what its header promises (plus one byte).
 */
export async function readIdx(file: string, options: IdxOptions = {}): Promise<Idx> {
  const maxBytes = options.maxBytes ?? IDX_MAX_BYTES;
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(file, 'r');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new Error(`${file}: ${e.code === 'ENOENT' ? 'no such file' : e.message}`);
  }
  let magic: Buffer;
  let total: number;
  try {
    const st = await handle.stat();
    if (!st.isFile()) throw new Error(`${file}: not a regular file`);
    total = st.size;
    magic = Buffer.alloc(2);
    const { bytesRead } = await handle.read(magic, 0, 2, 0);
    magic = magic.subarray(0, bytesRead);
  } catch (err) {
    await handle.close();
    throw err;
  }
  // The stream takes the handle over and closes it.
  const stream = handle.createReadStream({ start: 0, highWaterMark: 1 << 20 });
  const chunks = isGzip(magic)
    ? gunzipChunks(stream, file)
    : (async function* () {
        try {
          for await (const chunk of stream) yield chunk as Buffer;
        } finally {
          stream.destroy();
        }
      })();
  return readIdxStream(chunks, file, maxBytes, isGzip(magic) ? undefined : total);
}

/**
 * Images (count×height×width) and their labels (count) from two IDX files. Without
 * `classNames` the classes are 0..max(label), named '0', '1', …, and every one of them must
 * have images (as an image folder's classes must): a stray label 255 is refused rather than
 * making 246 empty classes. With `classNames`, the names say how many classes there are.
 */
export async function loadIdxPair(
  imagesPath: string,
  labelsPath: string,
  classNames?: string[],
  options: IdxOptions = {},
): Promise<Dataset> {
  const [images, labels] = await Promise.all([
    readIdx(imagesPath, options),
    readIdx(labelsPath, options),
  ]);
  if (images.dims.length !== 3) {
    throw new Error(
      `${imagesPath}: expected images of 3 dimensions (count×height×width), the header says ${images.dims.join('×')}`,
    );
  }
  if (labels.dims.length !== 1) {
    throw new Error(
      `${labelsPath}: expected labels of 1 dimension (count), the header says ${labels.dims.join('×')}`,
    );
  }
  const [count, height, width] = images.dims;
  if (labels.dims[0] !== count) {
    throw new Error(
      `${imagesPath} has ${count} images but ${labelsPath} has ${labels.dims[0]} labels`,
    );
  }
  const max = labels.data.reduce((a, b) => Math.max(a, b), 0);
  const names = classNames ?? Array.from({ length: max + 1 }, (_, i) => String(i));
  if (max >= names.length) {
    throw new Error(
      `${labelsPath}: label ${max} (at index ${labels.data.indexOf(max)}) is out of range: ` +
        `there are ${names.length} classes (0..${names.length - 1})`,
    );
  }
  if (!classNames) requireEveryLabel(labels.data, labelsPath);
  return {
    images: images.data,
    labels: Int32Array.from(labels.data),
    count,
    channels: 1,
    height,
    width,
    classNames: names,
    source: imagesPath,
  };
}

// Labels 0..max with no name list: every class up to the largest label must have images.
function requireEveryLabel(labels: Uint8Array, labelsPath: string): void {
  const counts = new Array<number>(256).fill(0);
  for (const l of labels) counts[l]++;
  let max = 255;
  while (max > 0 && counts[max] === 0) max--;
  const empty = counts.slice(0, max + 1).flatMap((c, i) => (c === 0 ? [i] : []));
  if (empty.length === 0) return;
  const list = empty.length > 5 ? `${empty.slice(0, 5).join(', ')}, …` : empty.join(', ');
  throw new Error(
    `${labelsPath}: label ${max} (at index ${labels.indexOf(max)}) makes ${max + 1} classes, ` +
      `but ${empty.length} of them have no images (${list}); labels must be 0..N-1 with every class present`,
  );
}
