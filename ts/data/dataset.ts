// In-memory datasets: grayscale images as one byte array, ready to hand to the engine in one copy.
import fs from 'node:fs/promises';

export interface Dataset {
  /** count × height × width, row-major, grayscale 0..255 */
  images: Uint8Array;
  /** count, each in [0, classNames.length) */
  labels: Int32Array;
  count: number;
  /** 1 (grey) or 3 (RGB); images are count × channels × height × width, planes in R, G, B order */
  channels: number;
  height: number;
  width: number;
  /** index = label */
  classNames: string[];
  /** human-readable origin, e.g. 'mnist:train' or a folder path */
  source: string;
  /** files an image-folder load left out, with why */
  skipped?: { file: string; reason: string }[];
  /** images an image-folder load resized to the common size */
  resized?: number;
  /** the majority size an image-folder load scaled down to its common size (over 1024 a side) */
  capped?: { width: number; height: number };
}

export interface DataSplit {
  train: Dataset;
  test: Dataset;
  name: string;
}

/** Number of images per class, indexed by label. */
export function classCounts(ds: Dataset): number[] {
  const counts = new Array<number>(ds.classNames.length).fill(0);
  for (let i = 0; i < ds.count; i++) counts[ds.labels[i]]++;
  return counts;
}

/** A copy holding the chosen images, in the order given (repeats allowed). */
export function subset(ds: Dataset, indices: ArrayLike<number>): Dataset {
  const size = ds.channels * ds.height * ds.width;
  const images = new Uint8Array(indices.length * size);
  const labels = new Int32Array(indices.length);
  for (let k = 0; k < indices.length; k++) {
    const i = indices[k];
    if (!Number.isInteger(i) || i < 0 || i >= ds.count) {
      throw new RangeError(`subset: index ${i} is out of range for ${ds.count} images`);
    }
    images.set(ds.images.subarray(i * size, (i + 1) * size), k * size);
    labels[k] = ds.labels[i];
  }
  // Provenance (source, skipped, resized) still describes where the images came from.
  return { ...ds, images, labels, count: indices.length };
}

/** @internal Whether `p` is a directory (following links); false when it does not exist. */
export async function isDirectory(p: string): Promise<boolean> {
  return (await fs.stat(p).catch(() => undefined))?.isDirectory() ?? false;
}
