// The data layer: datasets by name or folder, and class imbalance.
import path from 'node:path';
import { isDirectory, withChannels, type DataSplit } from './dataset';
import {
  loadImageFolder,
  loadImageFolderTest,
  loadImageSplit,
  looksLikeImageFolder,
  throwIfAborted,
  type LoadOptions,
  type TestSplit,
  type TestSplitOptions,
} from './imagefolder';
import { loadFashionMnist, loadIdxFolder, loadMnist, looksLikeIdxFolder } from './mnist';
import { loadCifar, parseCifarSpec } from './cifar';
import { cacheDir } from './cache';
import { COLOUR_DIGITS, colourDigitsFolder } from './colour-digits';

export { classCounts, subset, withChannels, imageBytes } from './dataset';
export type { Dataset, DataSplit } from './dataset';
export { readIdx, parseIdx, loadIdxPair, IDX_MAX_BYTES } from './idx';
export type { Idx, IdxOptions } from './idx';
export {
  loadMnist,
  loadFashionMnist,
  loadIdxFolder,
  looksLikeIdxFolder,
  MNIST_CLASSES,
  FASHION_MNIST_CLASSES,
  FASHION_MNIST_DIR,
} from './mnist';
export {
  loadImageFolder,
  loadImageFolderTest,
  looksLikeImageFolder,
  listImageFiles,
  decodeImage,
  pilLuma,
  isImageFile,
  IMG_EXTENSIONS,
  DEFAULT_MAX_PIXELS,
  MAX_COMMON_SIDE,
} from './imagefolder';
export type { LoadOptions, LoadProgress, TestSplit, TestSplitOptions } from './imagefolder';
export { validationSplit, validationCount, loadValidationSet } from './validation';
export {
  CIFAR,
  CIFAR_NAMES,
  CIFAR_SIDE,
  parseCifarSpec,
  loadCifar,
  loadCifarFolder,
  findCifarFolder,
  fetchCifar,
} from './cifar';
export type { CifarName, CifarFormat, FetchCifarOptions, FetchedCifar } from './cifar';
export { cacheDir } from './cache';
export {
  COLOUR_DIGITS,
  colourDigitsFolder,
  makeColourDigits,
  writeColourDigits,
  type ColourDigitsOptions,
} from './colour-digits';
export { fetchArchive } from './download';
export type { DownloadProgress, FetchArchiveOptions } from './download';
export {
  parseImbalance,
  applyImbalance,
  imbalance,
  imbalanceCounts,
  keepCounts,
} from './imbalance';

/**
 * 'mnist', 'fashion-mnist', 'cifar10[:DIR]', 'cifar100[:DIR]' (see loadCifar), 'colour-digits'
 * (ts/data/colour-digits.ts, made in the cache on first use), or a folder:
 * either ROOT/{training,testing}/<class>/* images or MNIST's four IDX files (raw or .gz).
 * `options` (signal, onProgress) reach an image folder's decoding; IDX and CIFAR files load in
 * one go, checked for an abort before and after.
 */
export async function loadDataset(spec: string, options: LoadOptions = {}): Promise<DataSplit> {
  throwIfAborted(options.signal);
  const split = await loadAny(spec, options);
  throwIfAborted(options.signal);
  // Image folders decode to the channels asked for; other sources are converted.
  const { channels } = options;
  return channels
    ? {
        ...split,
        train: withChannels(split.train, channels),
        test: withChannels(split.test, channels),
      }
    : split;
}

/**
 * The test split of `loadDataset(spec)` alone: an image folder's training/ is not read (its
 * common size comes from `options.size` when given, see `loadImageFolderTest`).
 */
export async function loadTestSet(
  spec: string,
  options: TestSplitOptions = {},
): Promise<TestSplit> {
  throwIfAborted(options.signal);
  if (
    !isNamedDataset(spec) &&
    (await isDirectory(spec)) &&
    ((await looksLikeImageFolder(spec)) || (await isDirectory(path.join(spec, 'testing'))))
  ) {
    return loadImageFolderTest(spec, options);
  }
  const { test, name } = await loadDataset(spec, options);
  return { test, name };
}

/**
 * Whether `spec` names a dataset (mnist, fashion-mnist, cifar10[:DIR], cifar100[:DIR]) rather
 * than a folder; a name wins over a folder of the same name.
 */
export function isNamedDataset(spec: string): boolean {
  return (
    spec === 'mnist' ||
    spec === 'fashion-mnist' ||
    spec === COLOUR_DIGITS ||
    parseCifarSpec(spec) !== undefined
  );
}

async function loadAny(spec: string, options: LoadOptions): Promise<DataSplit> {
  if (spec === 'mnist') return loadMnist();
  if (spec === 'fashion-mnist') return loadFashionMnist();
  if (spec === COLOUR_DIGITS) {
    const split = await loadImageFolder(await colourDigitsFolder(cacheDir()), options);
    return { ...split, name: COLOUR_DIGITS };
  }
  const cifar = parseCifarSpec(spec);
  if (cifar) return loadCifar(cifar.format, cifar.dir);
  if (!(await isDirectory(spec))) {
    throw new Error(
      `--dataset: '${spec}' is neither mnist, fashion-mnist, cifar10[:DIR], cifar100[:DIR], colour-digits nor an existing folder`,
    );
  }
  // A folder with training/ is an image folder even if IDX files lie beside it.
  if (!(await looksLikeImageFolder(spec)) && (await looksLikeIdxFolder(spec))) {
    return loadIdxFolder(spec);
  }
  return loadImageFolder(spec, options);
}
