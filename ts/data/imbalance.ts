// Starving chosen classes of training images: the class-imbalanced setting focal loss is for.
import { xoroshiro128plus } from 'pure-rand/generator/xoroshiro128plus';
import { uniformInt } from 'pure-rand/distribution/uniformInt';
import { classCounts, subset, type Dataset } from './dataset';

const FRACTION = /^(\d+(\.\d*)?|\.\d+)(e[-+]?\d+)?$/i;

/**
 * Parses `CLASS=FRACTION[,CLASS=FRACTION…]`, e.g. '6=0.01,3=0.1'. A class is an index or,
 * given `classNames`, a name ('Sandal=0.01'); a name wins over an index when both match.
 */
export function parseImbalance(
  spec: string,
  numClasses: number,
  classNames?: string[],
): Map<number, number> {
  const keep = new Map<number, number>();
  const pieceOf = new Map<number, string>();
  for (const raw of spec.split(',')) {
    const piece = raw.trim();
    if (!piece)
      throw new Error(`--imbalance: empty entry in '${spec}' (expected CLASS=FRACTION,…)`);
    const m = /^([^=]+)=([^=]+)$/.exec(piece);
    const fraction = m ? m[2].trim() : '';
    if (!m || !FRACTION.test(fraction)) {
      throw new Error(
        `--imbalance: '${piece}' is not CLASS=FRACTION (profiles: longtail:RATIO, step:RATIO:MINORITY)`,
      );
    }
    const cls = m[1].trim();
    const named = classNames?.indexOf(cls) ?? -1;
    let index = named;
    if (named < 0) {
      if (!/^\d+$/.test(cls)) {
        const known = classNames
          ? `classes: ${classNames.join(', ')}`
          : `classes are 0..${numClasses - 1}`;
        throw new Error(`--imbalance: '${cls}' in '${piece}' is not a class (${known})`);
      }
      index = Number(cls);
      if (index >= numClasses) {
        throw new Error(
          `--imbalance: class ${cls} is out of range (the dataset has ${numClasses} classes: 0..${numClasses - 1})`,
        );
      }
    }
    const value = Number(fraction);
    if (value > 1)
      throw new Error(`--imbalance: fraction ${fraction} in '${piece}' is not in [0, 1]`);
    const earlier = pieceOf.get(index);
    if (earlier !== undefined) {
      throw new Error(`--imbalance: class ${index} is given twice ('${earlier}' and '${piece}')`);
    }
    pieceOf.set(index, piece);
    keep.set(index, value);
  }
  return keep;
}

/**
 * Keeps Math.round(fraction × count) images of each listed class, picked uniformly without
 * replacement by a generator seeded with `seed`; other classes and the order are unchanged.
 */
export function applyImbalance(ds: Dataset, keep: Map<number, number>, seed: number): Dataset {
  const counts = classCounts(ds);
  const targets = [...counts];
  for (const [cls, fraction] of keep) {
    const valid = Number.isInteger(cls) && cls >= 0 && cls < counts.length;
    if (!valid || !(fraction >= 0 && fraction <= 1)) {
      throw new RangeError(`applyImbalance: invalid entry ${cls} → ${fraction}`);
    }
    targets[cls] = Math.round(fraction * counts[cls]);
  }
  return keepCounts(ds, targets, seed);
}

/**
 * The training-set cut an `--imbalance` spec asks for, as a count per class:
 * - `CLASS=FRACTION[,…]`: round(fraction × count) for the listed classes (see parseImbalance);
 * - `longtail:R`: the exponential long-tail profile, class k keeps
 *   floor(n_max × (1/R)^(k/(C−1))) images (n_max: the largest class count; Cao et al. 2019),
 *   computed as LDAM-DRW's `get_img_num_per_cls` computes it, so that the CIFAR-LT counts are
 *   its counts to the image (CIFAR-10, R = 100: 5000, 2997, …, 50);
 * - `step:R:K`: the step profile, the last K classes keep floor(n_max / R) images
 *   (`step:10:5` on 10 classes: half of them cut by 10×; Buda et al. 2018).
 * A profile never asks for more images than a class has: it keeps min(profile, count).
 */
export function imbalanceCounts(spec: string, counts: number[], classNames?: string[]): number[] {
  const C = counts.length;
  const nMax = Math.max(...counts);
  const profile = (want: (k: number) => number) => counts.map((n, k) => Math.min(n, want(k)));
  const trimmed = spec.trim();
  let m: RegExpExecArray | null;
  if ((m = /^longtail:(.*)$/i.exec(trimmed))) {
    const ratio = profileNumber(m[1], 'longtail:RATIO', trimmed);
    if (C < 2) throw new Error(`--imbalance: '${trimmed}' needs at least 2 classes`);
    // int(img_max * imb_factor ** (k / (C - 1.0))) with imb_factor = 1/R, to the bit: R^(−k/(C−1))
    // with a rounding slack keeps 125 where LDAM-DRW keeps 124 (500 images, R = 32, 6 classes,
    // class 2).
    return checkNonEmpty(
      profile((k) => Math.floor(nMax * (1 / ratio) ** (k / (C - 1)))),
      trimmed,
    );
  }
  if ((m = /^step:([^:]*):([^:]*)$/i.exec(trimmed))) {
    const ratio = profileNumber(m[1], 'step:RATIO:MINORITY', trimmed);
    const minority = Number(m[2]);
    if (!/^\d+$/.test(m[2].trim()) || minority < 1 || minority >= C) {
      throw new Error(
        `--imbalance: '${trimmed}': MINORITY must be a whole number of classes in 1..${C - 1}`,
      );
    }
    return checkNonEmpty(
      profile((k) => (k >= C - minority ? Math.floor(nMax / ratio + 1e-9) : nMax)),
      trimmed,
    );
  }
  if (/^(longtail|step)\b/i.test(trimmed)) {
    throw new Error(`--imbalance: '${trimmed}' is not longtail:RATIO or step:RATIO:MINORITY`);
  }
  const keep = parseImbalance(spec, C, classNames);
  const targets = [...counts];
  for (const [cls, fraction] of keep) targets[cls] = Math.round(fraction * counts[cls]);
  return targets;
}

/** `ds` cut as `spec` says (imbalanceCounts), deterministic for a given seed. */
export function imbalance(ds: Dataset, spec: string, seed: number): Dataset {
  return keepCounts(ds, imbalanceCounts(spec, classCounts(ds), ds.classNames), seed);
}

function profileNumber(text: string, form: string, spec: string): number {
  const v = Number(text);
  if (!FRACTION.test(text.trim()) || !(v >= 1)) {
    throw new Error(`--imbalance: '${spec}' is not ${form} with a ratio >= 1`);
  }
  return v;
}

function checkNonEmpty(targets: number[], spec: string): number[] {
  const empty = targets.findIndex((k) => k === 0);
  if (empty >= 0) {
    throw new Error(
      `--imbalance: '${spec}' would leave class ${empty} with no image; use a smaller ratio`,
    );
  }
  return targets;
}

/**
 * Keeps `targets[c]` images of each class c (at most its count), picked uniformly without
 * replacement by a generator seeded with `seed`, classes in ascending order; classes kept whole
 * draw nothing. The order of the kept images is unchanged.
 */
export function keepCounts(ds: Dataset, targets: number[], seed: number): Dataset {
  if (!Number.isSafeInteger(seed)) throw new RangeError(`seed: expected an integer, got ${seed}`);
  if (targets.length !== ds.classNames.length) {
    throw new RangeError(
      `keepCounts: ${targets.length} targets for ${ds.classNames.length} classes`,
    );
  }
  const byClass: number[][] = ds.classNames.map(() => []);
  for (let i = 0; i < ds.count; i++) byClass[ds.labels[i]].push(i);
  const rng = xoroshiro128plus(seed);
  const drop = new Uint8Array(ds.count);
  for (const [cls, members] of byClass.entries()) {
    const k = targets[cls];
    if (!Number.isSafeInteger(k) || k < 0) {
      throw new RangeError(`keepCounts: invalid target ${k} for class ${cls}`);
    }
    if (k >= members.length) continue;
    if (k === 0) {
      throw new Error(
        `--imbalance: class ${cls} would keep 0 of ${members.length} images; ` +
          `an empty class cannot be trained on or evaluated fairly`,
      );
    }
    // Partial Fisher–Yates: members[0..k) becomes a uniform sample of size k.
    for (let i = 0; i < k; i++) {
      const j = uniformInt(rng, i, members.length - 1);
      [members[i], members[j]] = [members[j], members[i]];
    }
    for (const i of members.slice(k)) drop[i] = 1;
  }
  const kept: number[] = [];
  for (let i = 0; i < ds.count; i++) if (!drop[i]) kept.push(i);
  return subset(ds, kept);
}
