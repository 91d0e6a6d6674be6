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
  parseImbalance,
  applyImbalance,
  imbalance,
  imbalanceCounts,
  keepCounts,
} from './imbalance';

/**
 * 'mnist', 'fashion-mnist', or a folder: either ROOT/{training,testing}/<class>/* images or
 * MNIST's four IDX files (raw or .gz). `options` (signal, onProgress) reach an image folder's
 * decoding; IDX files load in one go, checked for an abort before and after.
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
    !['mnist', 'fashion-mnist'].includes(spec) &&
    (await isDirectory(spec)) &&
    ((await looksLikeImageFolder(spec)) || (await isDirectory(path.join(spec, 'testing'))))
  ) {
    return loadImageFolderTest(spec, options);
  }
  const { test, name } = await loadDataset(spec, options);
  return { test, name };
}

async function loadAny(spec: string, options: LoadOptions): Promise<DataSplit> {
  if (spec === 'mnist') return loadMnist();
  if (spec === 'fashion-mnist') return loadFashionMnist();
  if (!(await isDirectory(spec))) {
    throw new Error(`--dataset: '${spec}' is neither mnist, fashion-mnist nor an existing folder`);
  }
  // A folder with training/ is an image folder even if IDX files lie beside it.
  if (!(await looksLikeImageFolder(spec)) && (await looksLikeIdxFolder(spec))) {
    return loadIdxFolder(spec);
  }
  return loadImageFolder(spec, options);
}
