// Starving chosen classes of training images: the class-imbalanced setting focal loss is for.
import { xoroshiro128plus } from 'pure-rand/generator/xoroshiro128plus';
import { uniformInt } from 'pure-rand/distribution/uniformInt';
import { subset, type Dataset } from './dataset';

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
      throw new Error(`--imbalance: '${piece}' is not CLASS=FRACTION`);
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
  if (!Number.isSafeInteger(seed)) throw new RangeError(`seed: expected an integer, got ${seed}`);
  const byClass: number[][] = ds.classNames.map(() => []);
  for (let i = 0; i < ds.count; i++) byClass[ds.labels[i]].push(i);
  const rng = xoroshiro128plus(seed);
  const drop = new Uint8Array(ds.count);
  // Ascending class order, so the picks do not depend on the order the map was filled in.
  for (const cls of [...keep.keys()].sort((a, b) => a - b)) {
    const fraction = keep.get(cls)!;
    const valid = Number.isInteger(cls) && cls >= 0 && cls < byClass.length;
    if (!valid || !(fraction >= 0 && fraction <= 1)) {
      throw new RangeError(`applyImbalance: invalid entry ${cls} → ${fraction}`);
    }
    const members = byClass[cls];
    const k = Math.round(fraction * members.length);
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
