// In-memory datasets: images as one byte array, ready to hand to the engine in one copy.
import fs from 'node:fs/promises';

export interface Dataset {
  /** count × channels × height × width, row-major, 0..255 (planes in R, G, B order) */
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

/** Bytes of one image: channels × height × width. */
export function imageBytes(ds: Pick<Dataset, 'channels' | 'height' | 'width'>): number {
  return ds.channels * ds.height * ds.width;
}

/**
 * PIL's convert('L') of one RGB pixel: ITU-R 601-2 luma in 16-bit fixed point,
 * L = (19595 R + 38470 G + 7471 B + 2^15) >> 16.
 */
export function luma(r: number, g: number, b: number): number {
  return (19595 * r + 38470 * g + 7471 * b + 0x8000) >> 16;
}

/**
 * The dataset with `channels` channels: grey repeated into R, G and B (an RGB network on grey
 * data), or RGB made grey as PIL's convert('L') makes it. The same dataset when it has them.
 */
export function withChannels(ds: Dataset, channels: 1 | 3): Dataset {
  if (ds.channels === channels) return ds;
  const plane = ds.height * ds.width;
  const images = new Uint8Array(ds.count * channels * plane);
  for (let i = 0; i < ds.count; i++) {
    const from = ds.images.subarray(i * ds.channels * plane, (i + 1) * ds.channels * plane);
    const to = images.subarray(i * channels * plane, (i + 1) * channels * plane);
    if (channels === 3) {
      for (let c = 0; c < 3; c++) to.set(from, c * plane);
    } else {
      for (let k = 0; k < plane; k++) to[k] = luma(from[k], from[plane + k], from[2 * plane + k]);
    }
  }
  return { ...ds, images, channels };
}

/** Number of images per class, indexed by label. */
export function classCounts(ds: Dataset): number[] {
  const counts = new Array<number>(ds.classNames.length).fill(0);
  for (let i = 0; i < ds.count; i++) counts[ds.labels[i]]++;
  return counts;
}

/** A copy holding the chosen images, in the order given (repeats allowed). */
export function subset(ds: Dataset, indices: ArrayLike<number>): Dataset {
  const size = imageBytes(ds);
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
