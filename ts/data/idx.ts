// IDX files (the MNIST format, http://yann.lecun.com/exdb/mnist/), raw or gzipped.
import fs from 'node:fs/promises';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import type { Dataset } from './dataset';

const gunzip = promisify(zlib.gunzip);

export interface Idx {
  dims: number[];
  data: Uint8Array;
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

/** Decodes an IDX file held in memory; `name` (the file path) starts every error message. */
export async function parseIdx(buf: Uint8Array, name: string): Promise<Idx> {
  // Detected by content, not extension: Debian ships .gz, other mirrors unpack them.
  if (buf.length >= 2 && buf[0] === 0x1f && buf[1] === 0x8b) {
    try {
      buf = await gunzip(buf);
    } catch (err) {
      throw new Error(`${name}: not a valid gzip file (${(err as Error).message})`);
    }
  }
  if (buf.length < 4) {
    throw new Error(`${name}: truncated: ${buf.length} bytes is too short for an IDX header`);
  }
  if (buf[0] !== 0 || buf[1] !== 0) {
    throw new Error(
      `${name}: not an IDX file: magic number ${hex(buf.subarray(0, 4))} does not start with two zero bytes`,
    );
  }
  const type = buf[2];
  if (type !== 0x08) {
    throw new Error(
      `${name}: IDX data type ${hex([type])} (${IDX_TYPES[type] ?? 'unknown'}) ` +
        `is not supported; only unsigned bytes (0x08) are`,
    );
  }
  const ndims = buf[3];
  if (ndims === 0) throw new Error(`${name}: IDX header declares 0 dimensions`);
  const header = 4 + 4 * ndims;
  if (buf.length < header) {
    throw new Error(
      `${name}: truncated: the header of ${ndims} dimensions needs ${header} bytes but the file has ${buf.length}`,
    );
  }
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const dims = Array.from({ length: ndims }, (_, i) => view.getUint32(4 + 4 * i)); // big-endian
  const shape = dims.join('×');
  if (dims.includes(0)) throw new Error(`${name}: IDX header has an empty dimension (${shape})`);
  const size = dims.reduce((a, b) => a * b, 1);
  const follow = buf.length - header;
  const says = `header says ${shape} (${size} bytes of data) but ${follow} bytes follow`;
  if (follow < size) throw new Error(`${name}: truncated: ${says}`);
  if (follow > size) throw new Error(`${name}: has ${follow - size} extra bytes: ${says}`);
  // A view, not a copy: the MNIST training images alone are 47 MB.
  return { dims, data: new Uint8Array(buf.buffer, buf.byteOffset + header, size) };
}

/** Reads an IDX file, raw or gzipped. */
export async function readIdx(file: string): Promise<Idx> {
  let buf: Buffer;
  try {
    buf = await fs.readFile(file);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new Error(`${file}: ${e.code === 'ENOENT' ? 'no such file' : e.message}`);
  }
  return parseIdx(buf, file);
}

/**
 * Images (count×height×width) and their labels (count) from two IDX files. Without
 * `classNames` the classes are 0..max(label), named '0', '1', ….
 */
export async function loadIdxPair(
  imagesPath: string,
  labelsPath: string,
  classNames?: string[],
): Promise<Dataset> {
  const [images, labels] = await Promise.all([readIdx(imagesPath), readIdx(labelsPath)]);
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
  return {
    images: images.data,
    labels: Int32Array.from(labels.data),
    count,
    height,
    width,
    classNames: names,
    source: imagesPath,
  };
}
