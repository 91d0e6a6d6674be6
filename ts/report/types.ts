// The input of a report: one or more finished training runs and what was learnt from them.
import type { Evaluation } from '../train/evaluation';
import type { EpochResult } from '../train/trainer';

/** One finished training run: its epochs, its final evaluation and its training-set class counts. */
export interface ReportRun {
  name: string;
  history: EpochResult[];
  /** the final evaluation on the test set */
  eval: Evaluation;
  /** training images per class, indexed like `Report.classNames` */
  trainCounts: number[];
  /** total training time, evaluation excluded */
  trainSeconds: number;
  checkpoint?: string;
  options?: Record<string, unknown>;
  seed?: number;
}

export interface ReportGroup {
  name: string;
  /** number of runs (seeds) in the group */
  n: number;
  mean: Record<string, number>;
  std: Record<string, number>;
}

export interface Report {
  title: string;
  kind: 'run' | 'experiment' | 'sweep';
  /** ISO 8601 */
  createdAt: string;
  dataset: string;
  classNames: string[];
  /** the starved class, highlighted in tables and figures */
  focusClass?: number;
  runs: ReportRun[];
  /** sentences computed elsewhere, e.g. the ablation's */
  findings?: string[];
  /** sweeps: mean ± std over seeds */
  groups?: ReportGroup[];
  /** image folders: files left out as unreadable, and why */
  skipped?: { file: string; reason: string }[];
}
