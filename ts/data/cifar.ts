// CIFAR-10 and CIFAR-100 in their official binary formats (https://www.cs.toronto.edu/~kriz/cifar.html):
// records of label byte(s) then 3072 pixel bytes, 1024 R, 1024 G, 1024 B, each plane 32×32
// row-major. That is a Dataset's planar CHW layout, so the pixels are copied, never converted.
import fs from 'node:fs/promises';
import path from 'node:path';
import { cacheDir } from './cache';
import { isDirectory, type DataSplit, type Dataset } from './dataset';
import { fetchArchive, type DownloadProgress } from './download';
import { invalidArgument } from '../native';

export const CIFAR_NAMES = ['cifar10', 'cifar100'] as const;
export type CifarName = (typeof CIFAR_NAMES)[number];

export interface CifarFormat {
  name: CifarName;
  /** as the papers write it */
  title: string;
  /** the folder the official archive unpacks to */
  folder: string;
  train: string[];
  test: string[];
  /** the class names, one per line (empty lines ignored) */
  namesFile: string;
  /** the label bytes that start a record, in order; the last one is the class */
  labels: { name: string; classes: number }[];
  /** the official archive, and its MD5 as published beside it */
  url: string;
  md5: string;
}

export const CIFAR: Record<CifarName, CifarFormat> = {
  cifar10: {
    name: 'cifar10',
    title: 'CIFAR-10',
    folder: 'cifar-10-batches-bin',
    train: [1, 2, 3, 4, 5].map((i) => `data_batch_${i}.bin`),
    test: ['test_batch.bin'],
    namesFile: 'batches.meta.txt',
    labels: [{ name: 'label', classes: 10 }],
    url: 'https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz',
    md5: 'c32a1d4ab5d03f1284b67883e8d87530',
  },
  cifar100: {
    name: 'cifar100',
    title: 'CIFAR-100',
    folder: 'cifar-100-binary',
    train: ['train.bin'],
    test: ['test.bin'],
    namesFile: 'fine_label_names.txt',
    // The 20 superclasses, then the 100 classes the papers train and report on.
    labels: [
      { name: 'coarse label', classes: 20 },
      { name: 'fine label', classes: 100 },
    ],
    url: 'https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz',
    md5: '03b5dce01913d631647c71ecec9e9cb8',
  },
};

/** CIFAR images are 32×32 RGB. */
export const CIFAR_SIDE = 32;
const CHANNELS = 3;
const PIXELS = CHANNELS * CIFAR_SIDE * CIFAR_SIDE;

/**
 * 'cifar10', 'cifar100', 'cifar10:DIR' or 'cifar100:DIR': the format, and DIR when given
 * (without it, the cache that `data fetch` fills); undefined for any other spec.
 */
export function parseCifarSpec(spec: string): { format: CifarFormat; dir?: string } | undefined {
  const m = /^(cifar10|cifar100)(?::(.*))?$/s.exec(spec);
  if (!m) return undefined;
  return { format: CIFAR[m[1] as CifarName], ...(m[2] !== undefined && { dir: m[2] }) };
}

// 'data_batch_1.bin … data_batch_5.bin, test_batch.bin and batches.meta.txt'
function holds(f: CifarFormat): string {
  const train = f.train.length > 2 ? `${f.train[0]} … ${f.train.at(-1)}` : f.train.join(', ');
  return `${train}, ${f.test.join(', ')} and ${f.namesFile}`;
}

/**
 * `--dataset cifar10[:DIR]`: DIR is the folder holding `cifar-10-batches-bin` (or
 * `cifar-100-binary`) or that folder itself; without DIR, the cache folder (cacheDir).
 */
export async function loadCifar(
  format: CifarFormat,
  dir?: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<DataSplit> {
  if (dir === '') {
    throw new Error(
      `--dataset ${format.name}: give a folder after '${format.name}:', or plain ${format.name} for the downloaded copy`,
    );
  }
  if (dir !== undefined) return loadCifarFolder(format, await findCifarFolder(format, dir));
  const cached = path.join(cacheDir(undefined, env), format.folder);
  if (!(await isDirectory(cached))) {
    throw new Error(
      `${format.name}: not downloaded (no ${cached}); run \`torchfocal data fetch ${format.name}\`, or give --dataset ${format.name}:DIR`,
    );
  }
  return loadCifarFolder(format, cached);
}

/** The folder holding the files: `dir/cifar-10-batches-bin` when there is one, else `dir`. */
export async function findCifarFolder(format: CifarFormat, dir: string): Promise<string> {
  const inner = path.join(dir, format.folder);
  if (await isDirectory(inner)) return inner;
  if (!(await isDirectory(dir))) {
    throw new Error(`${dir}: no such folder (expected one holding ${format.folder}/)`);
  }
  const entries = await fs.readdir(dir);
  const files = [...format.train, ...format.test, format.namesFile];
  if (files.some((f) => entries.includes(f))) return dir;
  throw new Error(
    `${dir}: holds neither ${format.folder}/ nor ${format.title}'s files (${holds(format)})`,
  );
}

/**
 * The train and test splits of a folder in the official binary format, every file checked
 * first for presence, then for whole records, labels in range and the number of class names.
 */
export async function loadCifarFolder(format: CifarFormat, folder: string): Promise<DataSplit> {
  const entries = await fs.readdir(folder);
  const missing = [...format.train, ...format.test, format.namesFile].filter(
    (f) => !entries.includes(f),
  );
  if (missing.length > 0) {
    throw new Error(
      `${folder}: missing ${missing.join(', ')}; a ${format.title} folder (${format.folder}) holds ${holds(format)}`,
    );
  }
  const classNames = await readClassNames(path.join(folder, format.namesFile), format);
  const split = async (files: string[], part: 'train' | 'test'): Promise<Dataset> => ({
    ...(await readBatches(
      files.map((f) => path.join(folder, f)),
      format,
    )),
    channels: CHANNELS,
    height: CIFAR_SIDE,
    width: CIFAR_SIDE,
    classNames,
    source: `${format.name}:${part}`,
  });
  return {
    name: format.name,
    train: await split(format.train, 'train'),
    test: await split(format.test, 'test'),
  };
}

async function readClassNames(file: string, format: CifarFormat): Promise<string[]> {
  const text = await readFile(file);
  const names = text
    .toString('utf8')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '');
  const classes = format.labels.at(-1)!.classes;
  if (names.length !== classes) {
    throw new Error(
      `${file}: ${names.length} class names, but ${format.title} has ${classes} (one per line)`,
    );
  }
  return names;
}

// The records of several batch files, in order: pixels copied as they are, the last label
// byte as the class.
async function readBatches(
  files: string[],
  format: CifarFormat,
): Promise<{ images: Uint8Array; labels: Int32Array; count: number }> {
  const record = format.labels.length + PIXELS;
  const batches: Buffer[] = [];
  for (const file of files) batches.push(checkBatch(file, await readFile(file), format));
  const count = batches.reduce((n, b) => n + b.length / record, 0);
  const images = new Uint8Array(count * PIXELS);
  const labels = new Int32Array(count);
  let i = 0;
  for (const batch of batches) {
    for (let at = 0; at < batch.length; at += record, i++) {
      labels[i] = batch[at + format.labels.length - 1];
      images.set(batch.subarray(at + format.labels.length, at + record), i * PIXELS);
    }
  }
  return { images, labels, count };
}

// Whole records, each label byte in range.
function checkBatch(file: string, buf: Buffer, format: CifarFormat): Buffer {
  const record = format.labels.length + PIXELS;
  const whole = Math.floor(buf.length / record);
  if (buf.length === 0 || buf.length % record !== 0) {
    const over = buf.length - whole * record;
    throw new Error(
      `${file}: ${buf.length} bytes is not a whole number of ${format.title} records of ${record} bytes ` +
        `(${whole} records and ${over} bytes): truncated, or not a ${format.title} batch`,
    );
  }
  for (let i = 0; i < whole; i++) {
    format.labels.forEach((label, j) => {
      const value = buf[i * record + j];
      if (value >= label.classes) {
        throw new Error(
          `${file}: record ${i} has ${label.name} ${value}, out of range 0..${label.classes - 1}`,
        );
      }
    });
  }
  return buf;
}

async function readFile(file: string): Promise<Buffer> {
  try {
    return await fs.readFile(file);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new Error(`${file}: ${e.code === 'EISDIR' ? 'a folder, not a file' : e.message}`);
  }
}

export interface FetchCifarOptions {
  /** the cache folder (default cacheDir()) */
  cache?: string;
  /** a mirror of the archive */
  url?: string;
  /** the mirror's MD5 (only with `url`: the official archive's is fixed) */
  md5?: string;
  signal?: AbortSignal;
  onProgress?: (p: DownloadProgress) => void;
}

export interface FetchedCifar {
  /** the dataset's folder in the cache */
  dir: string;
  /** false when a valid copy was there already (nothing was downloaded) */
  downloaded: boolean;
  /** why the copy that was there was replaced, when it was */
  replaced?: string;
  /** the archive's size, when downloaded */
  bytes?: number;
  train: number;
  test: number;
  classes: number;
}

/**
 * Downloads CIFAR-10 or CIFAR-100 into the cache (see fetchArchive: MD5 checked, unpacked and
 * read in a temporary folder, then renamed into place); a valid copy already there is kept.
 */
export async function fetchCifar(
  name: CifarName,
  options: FetchCifarOptions = {},
): Promise<FetchedCifar> {
  const format = CIFAR[name];
  if (options.md5 !== undefined && options.url === undefined) {
    throw invalidArgument(`--md5 needs --url: the official ${format.title} archive's MD5 is fixed`);
  }
  const cache = cacheDir(options.cache);
  const dir = path.join(cache, format.folder);
  const summary = (split: DataSplit) => ({
    train: split.train.count,
    test: split.test.count,
    classes: split.train.classNames.length,
  });
  let replaced: string | undefined;
  if (await isDirectory(dir)) {
    try {
      return { dir, downloaded: false, ...summary(await loadCifarFolder(format, dir)) };
    } catch (err) {
      replaced = (err as Error).message;
    }
  }
  const fetched = await fetchArchive({
    url: options.url ?? format.url,
    md5: options.md5 ?? format.md5,
    cache,
    folder: format.folder,
    check: async (unpacked) => summary(await loadCifarFolder(format, unpacked)),
    signal: options.signal,
    onProgress: options.onProgress,
  });
  return {
    dir,
    downloaded: true,
    ...(replaced !== undefined && { replaced }),
    bytes: fetched.bytes,
    ...fetched.checked,
  };
}
