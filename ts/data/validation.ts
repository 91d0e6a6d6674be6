// Holding a validation set out of the training data, so that epochs are picked without the test set.
import { xoroshiro128plus } from 'pure-rand/generator/xoroshiro128plus';
import { uniformInt } from 'pure-rand/distribution/uniformInt';
import { subset, type Dataset } from './dataset';
import { loadImageSplit, type LoadOptions } from './imagefolder';

/**
 * How many of a class's `count` images a `fraction` split holds out: round(fraction × count),
 * at least one where the class has two or more, and never the class's last training image.
 */
export function validationCount(count: number, fraction: number): number {
  if (count < 2) return 0;
  return Math.min(count - 1, Math.max(1, Math.round(fraction * count)));
}

/**
 * Splits `ds` by class (stratified): each class gives validationCount(n, fraction) images, drawn
 * uniformly without replacement by a generator seeded with `seed` (a stream of its own, apart
 * from the imbalance cut's). Both parts keep the images' order.
 */
export function validationSplit(
  ds: Dataset,
  fraction: number,
  seed: number,
): { train: Dataset; val: Dataset } {
  if (!(fraction > 0 && fraction < 1)) {
    throw new RangeError(`valSplit: expected a fraction in (0, 1), got ${fraction}`);
  }
  if (!Number.isSafeInteger(seed)) throw new RangeError(`seed: expected an integer, got ${seed}`);
  const byClass: number[][] = ds.classNames.map(() => []);
  for (let i = 0; i < ds.count; i++) byClass[ds.labels[i]].push(i);
  const rng = xoroshiro128plus(seed);
  rng.jump();
  const held = new Uint8Array(ds.count);
  for (const members of byClass) {
    const k = validationCount(members.length, fraction);
    // Partial Fisher–Yates: members[0..k) becomes a uniform sample of size k.
    for (let i = 0; i < k; i++) {
      const j = uniformInt(rng, i, members.length - 1);
      [members[i], members[j]] = [members[j], members[i]];
      held[members[i]] = 1;
    }
  }
  const train: number[] = [];
  const val: number[] = [];
  for (let i = 0; i < ds.count; i++) (held[i] ? val : train).push(i);
  if (val.length === 0) {
    throw new Error(
      `--val-split ${fraction}: no class of ${ds.source} has two images to split; give --val-dataset`,
    );
  }
  return {
    train: subset(ds, train),
    val: { ...subset(ds, val), source: `${ds.source} (validation split)` },
  };
}

/**
 * A validation set of its own: DIR/<class>/* images whose class folders are the training
 * classes (`loadImageSplit`: another set of classes is an error naming the difference).
 */
export async function loadValidationSet(
  dir: string,
  classNames: string[],
  options: LoadOptions = {},
): Promise<Dataset> {
  try {
    return await loadImageSplit(dir, classNames, options);
  } catch (err) {
    if ((err as Error).name === 'AbortError') throw err;
    throw new Error(`--val-dataset: ${(err as Error).message}`);
  }
}
