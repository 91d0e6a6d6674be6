// Many-, medium- and few-shot recall: the long-tail literature's way of summarising a
// classifier trained on imbalanced data.
import type { Evaluation } from './evaluation';

/**
 * The split convention of the long-tail literature (Liu et al., "Large-Scale Long-Tailed
 * Recognition in an Open World", CVPR 2019, followed by most long-tail papers since), by the
 * number of TRAINING images of a class:
 *   - many-shot: more than `many` images (> 100);
 *   - medium-shot: from `few` to `many` images, both ends included (20..100);
 *   - few-shot: fewer than `few` images (< 20).
 * A group's recall is the unweighted mean of its classes' test recalls (the "accuracy" of those
 * papers, which use balanced test sets). A class whose recall is not a finite number (no test
 * image of it) is listed in its group but left out of the mean; a group with no class to average
 * has `meanRecall: null`, never NaN.
 */
export interface ShotThresholds {
  /** a class with more training images than this is many-shot */
  many: number;
  /** a class with fewer training images than this is few-shot */
  few: number;
}

export const DEFAULT_SHOT_THRESHOLDS: Readonly<ShotThresholds> = Object.freeze({
  many: 100,
  few: 20,
});

export interface ShotGroup {
  /** class indices, ascending */
  classes: number[];
  names: string[];
  /** mean test recall of the group's classes; null when there is none */
  meanRecall: number | null;
}

export interface ShotSplit {
  thresholds: ShotThresholds;
  many: ShotGroup;
  medium: ShotGroup;
  few: ShotGroup;
}

export type ShotName = 'many' | 'medium' | 'few';

/** The group a class with `count` training images belongs to. */
export function shotOf(
  count: number,
  thresholds: ShotThresholds = DEFAULT_SHOT_THRESHOLDS,
): ShotName {
  if (count > thresholds.many) return 'many';
  if (count < thresholds.few) return 'few';
  return 'medium';
}

export function shotSplit(
  trainCounts: number[],
  evaluation: Pick<Evaluation, 'perClass'>,
  thresholds: ShotThresholds = { many: 100, few: 20 },
): ShotSplit {
  if (!(thresholds.few <= thresholds.many)) {
    throw new RangeError(
      `shot thresholds: few (${thresholds.few}) must not exceed many (${thresholds.many})`,
    );
  }
  if (trainCounts.length !== evaluation.perClass.length) {
    throw new RangeError(
      `shot split: ${trainCounts.length} training counts for ${evaluation.perClass.length} evaluated classes`,
    );
  }
  const byClass = new Map(evaluation.perClass.map((k) => [k.class, k]));
  const groups: Record<ShotName, { classes: number[]; names: string[]; recalls: number[] }> = {
    many: { classes: [], names: [], recalls: [] },
    medium: { classes: [], names: [], recalls: [] },
    few: { classes: [], names: [], recalls: [] },
  };
  trainCounts.forEach((count, c) => {
    const k = byClass.get(c);
    if (k === undefined) throw new RangeError(`shot split: class ${c} is not in the evaluation`);
    if (!Number.isFinite(count) || count < 0) {
      throw new RangeError(`shot split: class ${c} has an invalid training count ${count}`);
    }
    const g = groups[shotOf(count, thresholds)];
    g.classes.push(c);
    g.names.push(k.name);
    if (Number.isFinite(k.recall)) g.recalls.push(k.recall);
  });
  const done = (g: (typeof groups)[ShotName]): ShotGroup => ({
    classes: g.classes,
    names: g.names,
    meanRecall:
      g.recalls.length === 0 ? null : g.recalls.reduce((a, b) => a + b, 0) / g.recalls.length,
  });
  return {
    thresholds: { many: thresholds.many, few: thresholds.few },
    many: done(groups.many),
    medium: done(groups.medium),
    few: done(groups.few),
  };
}
