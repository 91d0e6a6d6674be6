// Sweeps: a grid of runs (models × imbalance × losses × seeds) trained one after another in the
// engine, then compared in one report as mean ± std over seeds.
import fs from 'node:fs/promises';
import path from 'node:path';
import writeFileAtomic from 'write-file-atomic';
import { classCounts, imbalanceCounts, loadDataset } from '../data/index';
import type { DataSplit } from '../data/dataset';
import {
  reportRun,
  scheduleSpan,
  trainerOptions,
  type RunSpec,
  type RunSummary,
} from '../train/run';
import { resolveOptions } from '../train/options';
import type { Evaluation } from '../train/evaluation';
import type { EpochResult, Progress } from '../train/trainer';
import { classLabels } from '../report/charts';
import { writeReport, type Report, type ReportGroup, type ReportPaths } from '../report/index';
import { native } from '../native';
import { experimentRun, interruption, isAbort } from './interrupted';
import { makeDir } from '../train/run-lock';

/** Loss options a loss entry may set (the rest of a run's options are shared by the sweep). */
type LossKey = 'alpha' | 'alphaNormalize' | 'gamma' | 'labelSmoothing' | 'beta' | 'tau' | 'drw';

/** One loss of the grid with its options; `name` labels it in group names (default: `loss`). */
export interface SweepLoss extends Pick<RunSpec, LossKey> {
  loss: string;
  name?: string;
}

/** Run options every run of the sweep shares. */
export type SweepShared = Omit<
  RunSpec,
  | 'model'
  | 'loss'
  | 'imbalance'
  | 'seed'
  | 'out'
  | 'resume'
  | 'distributed'
  | 'syncBn'
  | LossKey
  | 'initFrom'
  | 'initFromPartial'
  // a sweep compares runs on the test set; picking epochs by validation is train's
  | 'valSplit'
  | 'valDataset'
  | 'monitor'
  | 'saveBest'
  | 'earlyStop'
  | 'overwrite'
>;

/** A sweep, as a JSON file holds it. */
export interface SweepConfig extends SweepShared {
  /** report title (default: one made from the grid) */
  title?: string;
  /** default ['lenet'] */
  models?: string[];
  /** loss names, or loss entries with options */
  losses: (string | SweepLoss)[];
  /** `--imbalance` specs, passed unchanged to each run; 'none' trains on the whole set (default ['none']) */
  imbalance?: string[];
  /** default [0] */
  seeds?: number[];
}

/** A config after parseSweepConfig: every list present, every loss an entry with a label. */
export interface ParsedSweepConfig extends SweepConfig {
  models: string[];
  losses: (SweepLoss & { name: string })[];
  imbalance: string[];
  seeds: number[];
}

/** One run of the grid, before it is trained. */
export interface SweepRun {
  /** position in the sweep, from 0 */
  index: number;
  /** the grid cell without the seed: `lenet · 6=0.01 · focal` */
  group: string;
  /** `lenet · 6=0.01 · focal · seed 0` */
  name: string;
  /** the run's checkpoint folder inside the sweep's folder */
  dir: string;
  model: string;
  /** the imbalance spec, or null for the whole training set */
  imbalance: string | null;
  /** the loss entry's label */
  loss: string;
  seed: number;
  spec: RunSpec;
}

/** One trained run. */
export interface SweepRow extends Omit<SweepRun, 'spec'>, RunSummary {}

export interface MeanStd {
  mean: number;
  /** sample standard deviation (n − 1); 0 for a single value */
  std: number;
}

/** A grid cell over its seeds. */
export interface SweepGroup {
  name: string;
  model: string;
  imbalance: string | null;
  loss: string;
  n: number;
  seeds: number[];
  testAcc: MeanStd;
  balancedAccuracy: MeanStd;
  macroF1: MeanStd;
  /** recall of each class, indexed by class */
  recall: MeanStd[];
  trainSeconds: MeanStd;
}

export interface SweepResult {
  runs: SweepRow[];
  groups: SweepGroup[];
  /** the sweep's folder, when `out` was given */
  out?: string;
  report?: ReportPaths;
}

export interface SweepHooks {
  /** each run's checkpoint goes to OUT/<run dir>; the report and sweep.json to OUT */
  out?: string;
  /** the dataset already loaded for `config.dataset` (tests hand a subset) */
  data?: DataSplit;
  onRunStart?: (run: SweepRun, total: number) => void;
  onRun?: (row: SweepRow, total: number) => void;
  onEpoch?: (run: SweepRun, result: EpochResult) => void;
  onProgress?: (run: SweepRun, progress: Progress) => void;
  signal?: AbortSignal;
  /** the cache folder (`cacheDir()`) where an image folder's decoded splits are kept (RunHooks) */
  decodeCache?: string;
  /**
   * continue an interrupted sweep in `out`: finished runs are taken from their folders, the
   * interrupted one resumes from its checkpoint, the others run
   */
  resume?: boolean;
}

/** The imbalance entry that means "train on the whole set". */
export const NO_IMBALANCE = 'none';

type Kind = 'string' | 'number' | 'boolean' | 'int>=0' | 'int>=1';

// Only types are checked here; value ranges are resolveOptions' (one place for them).
const SHARED_KEYS: Record<keyof SweepShared, Kind> = {
  dataset: 'string',
  epochs: 'int>=1',
  evalEvery: 'int>=1',
  batchSize: 'int>=1',
  evalBatchSize: 'int>=1',
  widthDivisor: 'int>=1',
  channels: 'int>=1',
  inputSize: 'int>=0',
  normalize: 'string',
  augment: 'string',
  freezeBackbone: 'boolean',
  progressEvery: 'int>=1',
  threads: 'int>=0',
  lr: 'number',
  momentum: 'number',
  nesterov: 'boolean',
  weightDecay: 'number',
  clipGradNorm: 'number',
  warmupEpochs: 'int>=0',
  lrSchedule: 'string',
  scheduleEpochs: 'int>=1',
  optimizer: 'string',
  device: 'string',
  sampler: 'string',
  memoryFormat: 'string',
  amp: 'string',
  cudaGraph: 'string',
  onNan: 'string',
  maxPixels: 'int>=1',
};
const LIST_KEYS = ['title', 'models', 'losses', 'imbalance', 'seeds'] as const;
const LOSS_KEYS: Record<keyof SweepLoss, Kind | 'alpha' | 'drw'> = {
  loss: 'string',
  name: 'string',
  alpha: 'alpha',
  alphaNormalize: 'string',
  gamma: 'number',
  labelSmoothing: 'number',
  beta: 'number',
  tau: 'number',
  drw: 'drw',
};

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function show(v: unknown): string {
  return JSON.stringify(v) ?? String(v);
}

function checkKind(key: string, v: unknown, kind: Kind): void {
  const ok =
    kind === 'string'
      ? typeof v === 'string' && v.trim() !== ''
      : kind === 'number'
        ? typeof v === 'number' && Number.isFinite(v)
        : kind === 'boolean'
          ? typeof v === 'boolean'
          : Number.isSafeInteger(v) && (v as number) >= (kind === 'int>=0' ? 0 : 1);
  if (!ok) {
    const what =
      kind === 'string'
        ? 'a non-empty string'
        : kind === 'number' || kind === 'boolean'
          ? `a ${kind}`
          : `an integer >= ${kind === 'int>=0' ? 0 : 1}`;
    throw new Error(`${key}: expected ${what}, got ${show(v)}`);
  }
}

function checkUnknown(where: string, o: Record<string, unknown>, known: readonly string[]): void {
  const bad = Object.keys(o).find((k) => !known.includes(k));
  if (bad !== undefined) {
    throw new Error(`${where}unknown key '${bad}' (known: ${known.join(', ')})`);
  }
}

/** A non-empty list, each item checked by `item`. */
function list<T>(key: string, v: unknown, item: (x: unknown, at: string) => T): T[] {
  if (!Array.isArray(v)) throw new Error(`${key}: expected a list, got ${show(v)}`);
  if (v.length === 0) throw new Error(`${key}: the list is empty`);
  return v.map((x, i) => item(x, `${key}[${i}]`));
}

function noRepeats(key: string, labels: string[], hint = ''): void {
  const i = labels.findIndex((l, k) => labels.indexOf(l) !== k);
  if (i >= 0) {
    throw new Error(`${key}[${i}]: '${labels[i]}' is listed twice${hint ? `; ${hint}` : ''}`);
  }
}

/** Runs `f`, putting `prefix` before the message of what it throws. */
function within<T>(prefix: string, f: () => T): T {
  try {
    return f();
  } catch (err) {
    throw new Error(`${prefix}${err instanceof Error ? err.message : String(err)}`);
  }
}

function parseLoss(v: unknown, at: string, known: string[]): SweepLoss & { name: string } {
  if (typeof v !== 'string' && !isObject(v)) {
    throw new Error(`${at}: expected a loss name or an object with "loss", got ${show(v)}`);
  }
  const entry: Record<string, unknown> = typeof v === 'string' ? { loss: v } : v;
  checkUnknown(`${at}: `, entry, Object.keys(LOSS_KEYS));
  if (entry.loss === undefined) throw new Error(`${at}: "loss" is missing`);
  for (const [key, kind] of Object.entries(LOSS_KEYS)) {
    const x = entry[key];
    if (x === undefined) continue;
    if (kind === 'alpha') {
      const ok =
        x === 'auto' ||
        (typeof x === 'number' && Number.isFinite(x)) ||
        (Array.isArray(x) &&
          x.length > 0 &&
          x.every((a) => typeof a === 'number' && Number.isFinite(a)));
      if (!ok)
        throw new Error(
          `${at}.alpha: expected a number, a list of numbers or 'auto', got ${show(x)}`,
        );
    } else if (kind === 'drw') {
      if (x !== null) checkKind(`${at}.drw`, x, 'int>=0');
    } else {
      checkKind(`${at}.${key}`, x, kind);
    }
  }
  for (const key of ['loss', 'name'] as const) {
    const text = entry[key];
    if (typeof text === 'string' && /[\u0000-\u001f\u007f]/.test(text)) {
      throw new Error(`${at}.${key}: ${show(text)} holds a control character`);
    }
  }
  const loss = entry.loss as string;
  if (!known.includes(loss)) {
    throw new Error(`${at}.loss: unknown loss '${loss}' (known: ${known.join(', ')})`);
  }
  return { ...(entry as unknown as SweepLoss), name: (entry.name as string | undefined) ?? loss };
}

function lossOptions(l: SweepLoss): Pick<RunSpec, 'loss' | LossKey> {
  const { name, ...options } = l;
  void name;
  return options;
}

/** Class names that fit a loss entry's α, for checks made before the dataset is known. */
function placeholderClasses(l: SweepLoss): string[] {
  const n = Array.isArray(l.alpha) && l.alpha.length > 1 ? l.alpha.length : 2;
  return Array.from({ length: n }, (_, k) => String(k));
}

/**
 * Validates a sweep (a parsed JSON file or an object) and fills in its defaults. Throws one line
 * naming the key at fault, e.g. `losses[1].gamma: expected a number, got "2"`. Imbalance specs
 * and α lengths are checked against the dataset when the sweep starts (runSweep).
 */
export function parseSweepConfig(json: unknown): ParsedSweepConfig {
  if (!isObject(json)) throw new Error(`expected a JSON object, got ${show(json)}`);
  checkUnknown('', json, [...LIST_KEYS, ...Object.keys(SHARED_KEYS)]);
  if (json.losses === undefined)
    throw new Error('losses: missing (a list of loss names or entries)');
  const shared: Record<string, unknown> = {};
  for (const [key, kind] of Object.entries(SHARED_KEYS)) {
    if (json[key] === undefined) continue;
    checkKind(key, json[key], kind);
    shared[key] = json[key];
  }
  if (json.title !== undefined) checkKind('title', json.title, 'string');

  const knownModels = native()
    .modelInfos()
    .map((m) => m.name);
  const models = list('models', json.models ?? ['lenet'], (x, at) => {
    if (typeof x !== 'string' || !knownModels.includes(x)) {
      throw new Error(`${at}: unknown model ${show(x)} (known: ${knownModels.join(', ')})`);
    }
    return x;
  });
  noRepeats('models', models);
  const knownLosses = native()
    .lossInfos()
    .map((l) => l.name);
  const losses = list('losses', json.losses, (x, at) => parseLoss(x, at, knownLosses));
  noRepeats(
    'losses',
    losses.map((l) => l.name),
    'give each entry a distinct "name"',
  );
  const imbalance = list('imbalance', json.imbalance ?? [NO_IMBALANCE], (x, at) => {
    checkKind(at, x, 'string');
    return (x as string).trim();
  });
  noRepeats('imbalance', imbalance);
  const seeds = list('seeds', json.seeds ?? [0], (x, at) => {
    checkKind(at, x, 'int>=0');
    return x as number;
  });
  noRepeats('seeds', seeds.map(String));

  // Value ranges (lr > 0, gamma >= 0, alpha on a loss that weighs itself, …) are resolveOptions'.
  const span = { scheduleEpochs: scheduleSpan(shared) }; // as each run will fill it in
  for (const model of models) {
    resolveOptions({ ...trainerOptions(shared), ...span, model, classNames: ['0', '1'] });
  }
  losses.forEach((l, i) =>
    within(`losses[${i}].`, () =>
      resolveOptions({
        ...trainerOptions(shared),
        ...span,
        ...lossOptions(l),
        model: models[0],
        classNames: placeholderClasses(l),
      }),
    ),
  );
  return {
    ...(shared as SweepShared),
    ...(json.title === undefined ? {} : { title: json.title as string }),
    models,
    losses,
    imbalance,
    seeds,
  };
}

/** Reads and validates a sweep file; errors name the file, then the key. */
export async function loadSweepConfig(file: string): Promise<ParsedSweepConfig> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new Error(`${file}: ${code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new Error(`${file}: not valid JSON (${(err as Error).message})`);
  }
  return within(`${file}: `, () => parseSweepConfig(json));
}

/** The options every run shares: the config without its lists. */
function sharedOf(c: ParsedSweepConfig): SweepShared {
  const { title, models, losses, imbalance, seeds, ...shared } = c;
  void [title, models, losses, imbalance, seeds];
  return shared;
}

/** A folder-name-safe version of a label. */
function slug(text: string): string {
  return text.replace(/[^A-Za-z0-9.=+-]+/g, '_').replace(/^_+|_+$/g, '') || '_';
}

/**
 * The grid in run order: model, then imbalance, then loss, then seed (innermost), so that a
 * group's seeds run one after another.
 */
export function sweepRuns(config: SweepConfig): SweepRun[] {
  const c = parseSweepConfig(config);
  const { models, losses, imbalance, seeds } = c;
  const shared = sharedOf(c);
  const total = models.length * imbalance.length * losses.length * seeds.length;
  const width = Math.max(2, String(total - 1).length); // `00-…`: README's <NN>, sorted as listed
  const runs: SweepRun[] = [];
  for (const model of models) {
    for (const imb of imbalance) {
      const cut = imb === NO_IMBALANCE ? null : imb;
      for (const l of losses) {
        const group = `${model} · ${cut ?? 'balanced'} · ${l.name}`;
        for (const seed of seeds) {
          const index = runs.length;
          runs.push({
            index,
            group,
            name: `${group} · seed ${seed}`,
            // the index keeps folder names unique whatever the labels slug to
            dir: `${String(index).padStart(width, '0')}-${[model, cut ?? 'balanced', l.name].map(slug).join('_')}-seed${seed}`,
            model,
            imbalance: cut,
            loss: l.name,
            seed,
            spec: {
              ...shared,
              ...lossOptions(l),
              model,
              seed,
              ...(cut === null ? {} : { imbalance: cut }),
            },
          });
        }
      }
    }
  }
  return runs;
}

/** Mean and sample standard deviation (n − 1; 0 when there is one value). */
export function meanStd(values: readonly number[]): MeanStd {
  const n = values.length;
  if (n === 0) throw new RangeError('meanStd: no values');
  const mean = values.reduce((s, x) => s + x, 0) / n;
  if (n === 1) return { mean, std: 0 };
  const ss = values.reduce((s, x) => s + (x - mean) ** 2, 0);
  return { mean, std: Math.sqrt(ss / (n - 1)) };
}

/** What aggregation reads of a row. */
export type SweepRowMetrics = Pick<
  SweepRow,
  'group' | 'model' | 'imbalance' | 'loss' | 'seed' | 'trainSeconds'
> & { eval: Pick<Evaluation, 'accuracy' | 'balancedAccuracy' | 'macroF1' | 'perClass'> };

/** Rows grouped by grid cell, in first-seen order, each metric as mean ± std over seeds. */
export function aggregateSweep(rows: readonly SweepRowMetrics[]): SweepGroup[] {
  const byGroup = new Map<string, SweepRowMetrics[]>();
  for (const r of rows) byGroup.set(r.group, [...(byGroup.get(r.group) ?? []), r]);
  return [...byGroup.entries()].map(([name, rs]) => {
    const classes = rs[0].eval.perClass.length;
    return {
      name,
      model: rs[0].model,
      imbalance: rs[0].imbalance,
      loss: rs[0].loss,
      n: rs.length,
      seeds: rs.map((r) => r.seed),
      testAcc: meanStd(rs.map((r) => r.eval.accuracy)),
      balancedAccuracy: meanStd(rs.map((r) => r.eval.balancedAccuracy)),
      macroF1: meanStd(rs.map((r) => r.eval.macroF1)),
      recall: Array.from({ length: classes }, (_, c) =>
        meanStd(rs.map((r) => r.eval.perClass.find((k) => k.class === c)?.recall ?? 0)),
      ),
      trainSeconds: meanStd(rs.map((r) => r.trainSeconds)),
    };
  });
}

/** Groups as the report's ReportGroup rows: one column per metric and per class recall. */
export function sweepReportGroups(
  groups: readonly SweepGroup[],
  classNames: string[],
): ReportGroup[] {
  const labels = classLabels(classNames);
  return groups.map((g) => {
    const stats: [string, MeanStd][] = [
      ['test accuracy', g.testAcc],
      ['balanced accuracy', g.balancedAccuracy],
      ['macro-F1', g.macroF1],
      ...g.recall.map((s, c): [string, MeanStd] => [`recall ${labels[c] ?? c}`, s]),
      ['train seconds', g.trainSeconds],
    ];
    return {
      name: g.name,
      n: g.n,
      mean: Object.fromEntries(stats.map(([k, s]) => [k, s.mean])),
      std: Object.fromEntries(stats.map(([k, s]) => [k, s.std])),
    };
  });
}

/**
 * Trains every run of the grid, one after another, on one loaded dataset, then (with `out`)
 * writes the comparison report. Everything checkable (imbalance specs, α lengths) is checked
 * before the first run starts, so a bad sweep fails without writing anything.
 */
export async function runSweep(config: SweepConfig, hooks: SweepHooks = {}): Promise<SweepResult> {
  const c = parseSweepConfig(config);
  const runs = sweepRuns(c);
  const datasetName = c.dataset ?? 'mnist';
  const data =
    hooks.data ??
    (await loadDataset(datasetName, { signal: hooks.signal, cache: hooks.decodeCache }));
  const classNames = data.train.classNames;
  const counts = classCounts(data.train);
  c.imbalance.forEach((spec, i) => {
    if (spec === NO_IMBALANCE) return;
    // the data layer's parser, so that the message is the one `train --imbalance` gives
    try {
      imbalanceCounts(spec, counts, classNames);
    } catch (err) {
      throw new Error(`imbalance[${i}]: ${(err as Error).message.replace(/^--imbalance: /, '')}`);
    }
  });
  c.losses.forEach((l, i) =>
    within(`losses[${i}].`, () =>
      resolveOptions({
        ...trainerOptions(sharedOf(c)),
        scheduleEpochs: scheduleSpan(sharedOf(c)),
        ...lossOptions(l),
        model: c.models[0],
        classNames,
      }),
    ),
  );

  const out = hooks.out ? path.resolve(hooks.out) : undefined;
  if (out) {
    await makeDir(out); // bounded: Node's recursive mkdir spins on /proc/x/y
    // what was asked, next to what it gave
    await writeFileAtomic(path.join(out, 'sweep.json'), `${JSON.stringify(c, null, 2)}\n`);
  }
  const rows: SweepRow[] = [];
  for (const run of runs) {
    const dir = out ? path.join(out, run.dir) : undefined;
    let summary: RunSummary;
    try {
      summary = await experimentRun(
        // a sweep's folder is the sweep's: a re-run replaces its runs
        { ...run.spec, dataset: datasetName },
        dir,
        hooks.resume === true,
        {
          data,
          signal: hooks.signal,
          onEpoch: (r) => hooks.onEpoch?.(run, r),
          onProgress: (p) => hooks.onProgress?.(run, p),
        },
        () => hooks.onRunStart?.(run, runs.length),
      );
    } catch (err) {
      if (!isAbort(err)) throw err;
      throw await interruption(
        err,
        { name: run.name, index: run.index, dir },
        rows.map((r) => r.name),
        runs.length,
        out
          ? async (finding) =>
              (
                await writeReport(
                  out,
                  sweepReport(c, runs, rows, datasetName, classNames, [finding]),
                )
              ).html
          : undefined,
      );
    }
    const { spec, ...meta } = run;
    void spec;
    const row: SweepRow = { ...meta, ...summary };
    rows.push(row);
    hooks.onRun?.(row, runs.length);
  }
  const groups = aggregateSweep(rows);
  if (!out) return { runs: rows, groups };
  const report = await writeReport(out, sweepReport(c, runs, rows, datasetName, classNames, []));
  return { runs: rows, groups, out, report };
}

/** The sweep's report of `rows` (all runs, or those finished before an interruption). */
function sweepReport(
  c: ParsedSweepConfig,
  runs: SweepRun[],
  rows: SweepRow[],
  datasetName: string,
  classNames: string[],
  extra: string[],
): Report {
  const groups = aggregateSweep(rows);
  const best = groups.reduce((a, g) => (g.balancedAccuracy.mean > a.balancedAccuracy.mean ? g : a));
  const f = (s: MeanStd) => `${s.mean.toFixed(3)} ± ${s.std.toFixed(3)}`;
  return {
    title:
      c.title ??
      `Sweep of ${runs.length} runs on ${datasetName}: ${c.models.join(', ')} × ` +
        `${c.imbalance.length} imbalance × ${c.losses.length} losses × ${c.seeds.length} seeds`,
    kind: 'sweep',
    createdAt: new Date().toISOString(),
    dataset: datasetName,
    classNames,
    runs: rows.map((r) => reportRun(r.name, r, r.seed, { ...runs[r.index].spec })),
    findings: [
      ...extra,
      ...(groups.length > 1
        ? [
            `Highest mean balanced accuracy: ${best.name} (${f(best.balancedAccuracy)}, n = ${best.n}).`,
          ]
        : []),
    ],
    groups: sweepReportGroups(groups, classNames),
  };
}
