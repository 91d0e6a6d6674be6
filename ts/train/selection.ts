// Picking an epoch by its validation figures: the monitored figure, the best epoch, patience.

/** The validation figures of an epoch (the training loss's mean over the validation set). */
export interface ValidationFigures {
  loss: number;
  accuracy: number;
  balancedAccuracy: number;
  macroF1: number;
}

/**
 * What picks the best epoch. Balanced accuracy is the default: plain accuracy and the loss are
 * dominated by the large classes, which is what an imbalanced run must not be judged by.
 */
export const MONITORS = [
  'val-balanced-accuracy',
  'val-macro-f1',
  'val-accuracy',
  'val-loss',
] as const;
export type Monitor = (typeof MONITORS)[number];

const FIGURE: Record<Monitor, keyof ValidationFigures> = {
  'val-balanced-accuracy': 'balancedAccuracy',
  'val-macro-f1': 'macroF1',
  'val-accuracy': 'accuracy',
  'val-loss': 'loss',
};

/** The epoch a run picked, and by what. */
export interface Selection {
  epoch: number;
  monitor: Monitor;
  value: number;
}

/**
 * Follows the monitored figure epoch by epoch: the best epoch so far (the first of equals, so a
 * plateau does not move it) and how many epochs have passed since it improved.
 */
export class EpochSelector {
  best?: Selection;
  sinceBest = 0;

  constructor(readonly monitor: Monitor) {
    if (!MONITORS.includes(monitor)) {
      throw new Error(
        `monitor: unknown figure '${String(monitor)}' (known: ${MONITORS.join(', ')})`,
      );
    }
  }

  /** Takes an epoch's figures; true when it is the new best. A NaN figure never improves. */
  observe(epoch: number, val: ValidationFigures): boolean {
    const value = val[FIGURE[this.monitor]];
    const lower = this.monitor === 'val-loss';
    const better =
      Number.isFinite(value) &&
      (this.best === undefined || (lower ? value < this.best.value : value > this.best.value));
    if (better) {
      this.best = { epoch, monitor: this.monitor, value };
      this.sinceBest = 0;
    } else {
      this.sinceBest++;
    }
    return better;
  }
}
