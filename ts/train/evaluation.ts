// The EVAL object of DESIGN.md: native metrics plus class names, in the documented key order.
import type { NativeMetrics } from '../native';
import { shotSplit, type ShotSplit } from './shots';

export interface ClassEvaluation {
  class: number;
  name: string;
  support: number;
  recall: number;
  precision: number;
  f1: number;
}

/** `eval --top-k` and train's final EVAL: top-5 unless asked otherwise. */
export const DEFAULT_TOP_K = 5;

export interface Evaluation {
  accuracy: number;
  balancedAccuracy: number;
  macroF1: number;
  /**
   * the fraction of test images whose true class is among the k highest logits; present when
   * the dataset has more than k classes
   */
  topK?: { k: number; accuracy: number };
  perClass: ClassEvaluation[];
  confusion: number[][];
  /**
   * mean test recall of the many- (> 100 training images), medium- (20–100) and few-shot
   * (< 20) classes; present when the training set's class counts are known
   */
  shots?: ShotSplit;
}

export function toEvaluation(
  m: NativeMetrics,
  classNames: string[],
  trainCounts?: number[],
  topK = DEFAULT_TOP_K,
): Evaluation {
  // topKAccuracy[k - 1], computed natively from the logits, one per k = 1..C
  const top = m.topKAccuracy?.[topK - 1];
  const evaluation: Evaluation = {
    accuracy: m.accuracy,
    balancedAccuracy: m.balancedAccuracy,
    macroF1: m.macroF1,
    ...(m.perClass.length > topK && top !== undefined && { topK: { k: topK, accuracy: top } }),
    perClass: m.perClass.map((k) => ({
      class: k.class,
      name: classNames[k.class] ?? String(k.class),
      support: k.support,
      recall: k.recall,
      precision: k.precision,
      f1: k.f1,
    })),
    confusion: m.confusion,
  };
  if (trainCounts) evaluation.shots = shotSplit(trainCounts, evaluation);
  return evaluation;
}
