// The original experiment: one class starved, trained several ways, judged on that class.
import path from 'node:path';
import { classCounts, imbalanceCounts, loadDataset } from '../data/index';
import {
  reportRun,
  scheduleSpan,
  trainerOptions,
  type RunHooks,
  type RunSpec,
  type RunSummary,
} from '../train/run';
import type { EpochResult } from '../train/trainer';
import { writeReport, type Report } from '../report/index';
import { resolveOptions } from '../train/options';
import { experimentRun, interruption, isAbort } from './interrupted';

export interface StarveOptions extends Omit<
  RunSpec,
  'imbalance' | 'loss' | 'alpha' | 'gamma' | 'out' | 'resume'
> {
  /** the starved class (default 6) */
  starvedClass?: number;
  /** fraction of its training images kept (default 0.01: 5918 → 59) */
  keep?: number;
  /** focal α on the starved class (default 100) */
  alpha?: number;
  gamma?: number;
  /** add α-only (γ = 0) and γ-only (α = 1) focal runs */
  ablation?: boolean;
  /** more imbalanced rows, one per loss of the family (e.g. cb-focal, balanced-softmax) */
  losses?: string[];
  /** each run's checkpoint goes to OUT/<run name>; the report to OUT */
  out?: string;
  /**
   * continue an interrupted experiment in `out`: finished runs are taken from their folders,
   * the interrupted one resumes from its checkpoint, the others run
   */
  resume?: boolean;
}

export interface StarveRow extends RunSummary {
  name: string;
  loss: string;
  /** recall of the starved class */
  classAcc: number;
}

export interface StarveResult {
  rows: StarveRow[];
  /** sentences computed from the numbers (the ablation's split of the recovery) */
  findings: string[];
  report?: string;
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
      { name: ABLATION.alphaOnly, spec: { loss: 'focal', alpha, gamma: 0, imbalance: cut } },
      { name: ABLATION.gammaOnly, spec: { loss: 'focal', gamma, imbalance: cut } },
    );
  }
  for (const loss of o.losses ?? []) {
    const name = `imbalanced-${loss}`;
    if (variants.some((v) => v.name === name)) continue;
    variants.push({ name, spec: { loss, gamma, imbalance: cut } });
  }
  return variants;
}

const ABLATION = {
  alphaOnly: 'imbalanced-focal-alpha-only',
  gammaOnly: 'imbalanced-focal-gamma-only',
} as const;

/** How much of focal loss's recovery of the starved class each factor gives, in one sentence. */
export function ablationFinding(rows: StarveRow[], starved: string): string | undefined {
  const get = (name: string) => rows.find((r) => r.name === name)?.classAcc;
  const ce = get('imbalanced-ce');
  const focal = get('imbalanced-focal');
  const alphaOnly = get(ABLATION.alphaOnly);
  const gammaOnly = get(ABLATION.gammaOnly);
  if (
    ce === undefined ||
    focal === undefined ||
    alphaOnly === undefined ||
    gammaOnly === undefined
  ) {
    return undefined;
  }
  const total = focal - ce;
  const f = (x: number) => x.toFixed(3);
  const signed = (x: number) => `${x >= 0 ? '+' : ''}${x.toFixed(3)}`;
  const share = (gain: number) =>
    Math.abs(total) < 1e-9 ? '' : ` (${Math.round((100 * gain) / total)}% of the recovery)`;
  return (
    `Focal loss moves the recall of class ${starved} from ${f(ce)} to ${f(focal)} (${signed(total)}): ` +
    `alpha alone (gamma 0, a weighted cross-entropy) gives ${signed(alphaOnly - ce)}${share(alphaOnly - ce)}, ` +
    `gamma alone (alpha 1) gives ${signed(gammaOnly - ce)}${share(gammaOnly - ce)}.`
  );
}

export async function runStarve(
  o: StarveOptions,
  hooks: Omit<RunHooks, 'data' | 'onEpoch'> & {
    onRunStart?: (name: string) => void;
    onEpoch?: (name: string, r: EpochResult) => void;
  } = {},
): Promise<StarveResult> {
  const datasetName = o.dataset ?? 'mnist';
  const data = await loadDataset(datasetName, {
    signal: hooks.signal,
    cache: hooks.decodeCache,
    onProgress: hooks.onLoadProgress,
  });
  const classNames = data.train.classNames;
  const c = o.starvedClass ?? 6;
  if (!Number.isSafeInteger(c) || c < 0 || c >= classNames.length) {
    throw new Error(
      `--class: ${c} is out of range (the dataset has ${classNames.length} classes: 0..${classNames.length - 1})`,
    );
  }
  const { starvedClass, keep, ablation, losses, resume, ...base } = o;
  void [starvedClass, keep, ablation, losses];
  if (resume && !o.out) throw new Error('--resume needs --out DIR: the experiment to continue');
  const variants = starveVariants(o, classNames.length);
  // Every run is checked before the first starts: its options, and its cut against the data.
  const counts = classCounts(data.train);
  for (const v of variants) {
    const spec = { ...base, ...v.spec };
    try {
      resolveOptions({
        ...trainerOptions(spec),
        scheduleEpochs: scheduleSpan(spec),
        classNames,
      });
      if (v.spec.imbalance) {
        const kept = imbalanceCounts(v.spec.imbalance, counts, classNames);
        const empty = kept.findIndex((k, i) => k === 0 && counts[i] > 0);
        if (empty >= 0) {
          throw new Error(
            `--keep ${o.keep ?? 0.01} leaves class ${classNames[empty]} no training image (of ${counts[empty]})`,
          );
        }
      }
    } catch (err) {
      throw Object.assign(new Error(`run ${v.name}: ${(err as Error).message}`), {
        code: (err as { code?: string }).code,
      });
    }
  }
  const rows: StarveRow[] = [];
  const report = async (doneRows: StarveRow[], findings: string[]) => {
    const doc: Report = {
      title: `Class ${classNames[c]} starved to ${(o.keep ?? 0.01) * 100}% — ${o.model ?? 'lenet'} on ${datasetName}`,
      kind: 'experiment',
      createdAt: new Date().toISOString(),
      dataset: datasetName,
      classNames,
      focusClass: c,
      runs: doneRows.map((r) => reportRun(r.name, r, o.seed ?? 0)),
      findings,
    };
    return (await writeReport(path.resolve(o.out!), doc)).html;
  };
  for (const [i, v] of variants.entries()) {
    const dir = o.out ? path.join(o.out, v.name) : undefined;
    const row = (s: RunSummary): StarveRow => ({
      name: v.name,
      loss: v.spec.loss ?? 'ce',
      classAcc: s.eval.perClass[c].recall,
      ...s,
    });
    try {
      const summary = await experimentRun(
        { ...base, ...v.spec },
        dir,
        resume === true,
        { ...hooks, data, onEpoch: (r) => hooks.onEpoch?.(v.name, r) },
        () => hooks.onRunStart?.(v.name),
      );
      rows.push(row(summary));
    } catch (err) {
      if (!isAbort(err)) throw err;
      throw await interruption(
        err,
        { name: v.name, index: i, dir },
        rows.map((r) => r.name),
        variants.length,
        o.out ? (finding) => report(rows, [finding]) : undefined,
      );
    }
  }
  const finding = ablationFinding(rows, classNames[c]);
  const findings = finding ? [finding] : [];
  const written = o.out ? await report(rows, findings) : undefined;
  return { rows, findings, report: written };
}
