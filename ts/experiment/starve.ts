// The original experiment: one class starved, trained three ways, judged on that class.
import path from 'node:path';
import { loadDataset } from '../data/index';
import { runTraining, type RunHooks, type RunSpec } from '../train/run';
import type { Evaluation } from '../train/evaluation';
import type { EpochResult } from '../train/trainer';

export interface StarveOptions extends Omit<RunSpec, 'imbalance' | 'loss' | 'alpha' | 'gamma' | 'out'> {
  /** the starved class (default 6) */
  starvedClass?: number;
  /** fraction of its training images kept (default 0.01: 5918 → 59) */
  keep?: number;
  /** focal α on the starved class (default 100) */
  alpha?: number;
  gamma?: number;
  /** add α-only (γ = 0) and γ-only (α = 1) focal runs */
  ablation?: boolean;
  /** each run's checkpoint goes to OUT/<run name> */
  out?: string;
}

export interface StarveRow {
  name: string;
  loss: string;
  testAcc: number;
  /** recall of the starved class */
  classAcc: number;
  balancedAccuracy: number;
  macroF1: number;
  trainSeconds: number;
  checkpoint?: string;
  history: EpochResult[];
  eval: Evaluation;
}

interface Variant {
  name: string;
  spec: Pick<RunSpec, 'loss' | 'alpha' | 'gamma' | 'imbalance'>;
}

export function starveVariants(o: StarveOptions, numClasses: number): Variant[] {
  const c = o.starvedClass ?? 6;
  const cut = `${c}=${o.keep ?? 0.01}`;
  const alpha = Array.from({ length: numClasses }, (_, k) => (k === c ? (o.alpha ?? 100) : 1));
  const gamma = o.gamma ?? 2;
  const variants: Variant[] = [
    { name: 'balanced-ce', spec: { loss: 'ce' } },
    { name: 'imbalanced-ce', spec: { loss: 'ce', imbalance: cut } },
    { name: 'imbalanced-focal', spec: { loss: 'focal', alpha, gamma, imbalance: cut } },
  ];
  if (o.ablation) {
    variants.push(
      { name: 'imbalanced-focal-alpha-only', spec: { loss: 'focal', alpha, gamma: 0, imbalance: cut } },
      { name: 'imbalanced-focal-gamma-only', spec: { loss: 'focal', gamma, imbalance: cut } },
    );
  }
  return variants;
}

export async function runStarve(
  o: StarveOptions,
  hooks: Omit<RunHooks, 'data' | 'onEpoch'> & {
    onRunStart?: (name: string) => void;
    onEpoch?: (name: string, r: EpochResult) => void;
  } = {},
): Promise<StarveRow[]> {
  const data = await loadDataset(o.dataset ?? 'mnist');
  const numClasses = data.train.classNames.length;
  const c = o.starvedClass ?? 6;
  if (!Number.isSafeInteger(c) || c < 0 || c >= numClasses) {
    throw new Error(`--class: ${c} is out of range (the dataset has ${numClasses} classes: 0..${numClasses - 1})`);
  }
  const rows: StarveRow[] = [];
  for (const v of starveVariants(o, numClasses)) {
    hooks.onRunStart?.(v.name);
    const { starvedClass, keep, ablation, ...base } = o;
    void starvedClass, keep, ablation;
    const result = await runTraining(
      { ...base, ...v.spec, out: o.out ? path.join(o.out, v.name) : undefined },
      { ...hooks, data, onEpoch: (r) => hooks.onEpoch?.(v.name, r) },
    );
    rows.push({
      name: v.name,
      loss: v.spec.loss ?? 'ce',
      testAcc: result.eval.accuracy,
      classAcc: result.eval.perClass[c].recall,
      balancedAccuracy: result.eval.balancedAccuracy,
      macroF1: result.eval.macroF1,
      trainSeconds: result.trainSeconds,
      checkpoint: result.checkpoint,
      history: result.history,
      eval: result.eval,
    });
  }
  return rows;
}
