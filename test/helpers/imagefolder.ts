// Image folders made on the fly from MNIST: ROOT/{training,testing}/<digit>/<n>.png.
import fs from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { loadMnist, type Dataset } from '../../ts/index';
import { tempDir } from './cli';

/** One 28×28 grayscale PNG of `pixels`. */
export async function writePng(file: string, pixels: Uint8Array, size = 28): Promise<void> {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  await sharp(Buffer.from(pixels), { raw: { width: size, height: size, channels: 1 } })
    .toColourspace('b-w') // sharp would otherwise write RGB
    .png({ compressionLevel: 1 })
    .toFile(file);
}

/**
 * An image folder of the first `perClassTrain` training and `perClassTest` test images of each
 * MNIST digit (or of `classes`, renamed: index = digit).
 */
export async function mnistImageFolder(
  perClassTrain: number,
  perClassTest: number,
  classes: string[] = Array.from({ length: 10 }, (_, i) => String(i)),
): Promise<string> {
  const mnist = await loadMnist();
  const root = tempDir('torchfocal-imagefolder-');
  const write = async (ds: Dataset, split: string, perClass: number) => {
    const taken = new Array<number>(classes.length).fill(0);
    const jobs: Promise<void>[] = [];
    for (let i = 0; i < ds.count && jobs.length < perClass * classes.length; i++) {
      const label = ds.labels[i];
      if (label >= classes.length || taken[label] >= perClass) continue;
      const file = path.join(
        root,
        split,
        classes[label],
        `${String(taken[label]++).padStart(5, '0')}.png`,
      );
      jobs.push(writePng(file, ds.images.subarray(i * 784, (i + 1) * 784)));
      if (jobs.length % 64 === 0) await Promise.all(jobs.slice(-64));
    }
    await Promise.all(jobs);
  };
  await write(mnist.train, 'training', perClassTrain);
  await write(mnist.test, 'testing', perClassTest);
  return root;
}
