// Small MNIST subsets: enough to learn, quick on two cores.
import fs from 'node:fs';
import path from 'node:path';
import { loadMnist, subset, type DataSplit, type Dataset } from '../../ts/index';
import { tempDir } from './cli';

/** `nTrain` and `nTest` MNIST images spread evenly over each split, in memory. */
export async function smallMnist(nTrain: number, nTest: number): Promise<DataSplit> {
  const mnist = await loadMnist();
  const pick = (ds: Dataset, n: number) =>
    subset(
      ds,
      Array.from({ length: n }, (_, i) => Math.floor((i * ds.count) / n)),
    );
  return { train: pick(mnist.train, nTrain), test: pick(mnist.test, nTest), name: 'mnist' };
}

/**
 * An MNIST-style IDX folder (a `--dataset PATH` for the CLI) holding every 15th training image
 * and every 10th test image (or every `trainStep`-th and `testStep`-th); `testSixes` is its number of test sixes.
 */
export async function smallIdxFolder(
  trainStep = 15,
  testStep = 10,
): Promise<{ dir: string; testSixes: number }> {
  const mnist = await loadMnist();
  const dir = tempDir();
  const write = (name: string, ds: typeof mnist.train, step: number) => {
    const idx = Array.from({ length: Math.floor(ds.count / step) }, (_, i) => i * step);
    const images = Buffer.alloc(16 + idx.length * 784);
    images.writeUInt32BE(0x803, 0);
    images.writeUInt32BE(idx.length, 4);
    images.writeUInt32BE(28, 8);
    images.writeUInt32BE(28, 12);
    const labels = Buffer.alloc(8 + idx.length);
    labels.writeUInt32BE(0x801, 0);
    labels.writeUInt32BE(idx.length, 4);
    idx.forEach((k, i) => {
      images.set(ds.images.subarray(k * 784, (k + 1) * 784), 16 + i * 784);
      labels[8 + i] = ds.labels[k];
    });
    fs.writeFileSync(path.join(dir, `${name}-images-idx3-ubyte`), images);
    fs.writeFileSync(path.join(dir, `${name}-labels-idx1-ubyte`), labels);
  };
  write('train', mnist.train, trainStep);
  write('t10k', mnist.test, testStep);
  let testSixes = 0;
  for (let k = 0; k < mnist.test.count; k += 10) testSixes += mnist.test.labels[k] === 6 ? 1 : 0;
  return { dir, testSixes };
}
