// Resuming a run: the checkpoint it continues, and the check that the options given again ask
// for the same run.
import path from 'node:path';
import { invalidArgument } from '../native';
import { isDirectory } from '../data/dataset';
import { isNamedDataset, parseCifarSpec } from '../data/index';
import { openCheckpoint, type CheckpointConfig, type OpenCheckpoint } from './checkpoint';
import { resolveOptions } from './options';
import type { RunSpec, ValidationSpec } from './run';

export interface ResumePoint {
  opened: OpenCheckpoint;
  config: CheckpointConfig;
  /** the run's dataset: a name, or a folder (checkpointDataset) */
  dataset: string;
  /** the run's recorded total of epochs, when recorded */
  epochs: number | undefined;
  imbalance: string | undefined;
  validation: ValidationSpec | null;
}

/** What a resume may change: how and where the run executes, and how long it goes on. */
const RESUME_MAY_CHANGE = new Set<string>([
  'out',
  'resume',
  'epochs',
  'evalEvery',
  'threads',
  'device',
  'distributed',
  'cudaGraph',
  'batchSize',
  'evalBatchSize',
  'progressEvery',
  'maxPixels',
]);

/**
 * Refuses a resume whose spec asks for something else than the checkpoint's run: each option
 * given (defined) is compared with what the run was started with.
 */
export function checkResumeSpec(spec: RunSpec, resumed: ResumePoint): void {
  const given = Object.entries(spec).filter(
    ([key, value]) => value !== undefined && !RESUME_MAY_CHANGE.has(key),
  );
  const stored = resumed.config.options as unknown as Record<string, unknown>;
  const asked = resolveOptions({
    ...resumed.config.options,
    distributed: spec.distributed ?? undefined, // syncBn needs it
    // the trainer's options (the stored ones hold every key), not the run's data and selection
    ...Object.fromEntries(given.filter(([key]) => key in stored)),
  }) as unknown as Record<string, unknown>;
  const was: Record<string, unknown> = {
    dataset: resumed.dataset,
    imbalance: resumed.imbalance,
    valSplit: resumed.validation?.split ?? undefined,
    valDataset: resumed.validation?.dataset ?? undefined,
    monitor: resumed.validation?.monitor,
    saveBest: resumed.validation?.saveBest ?? false,
    earlyStop: resumed.validation?.earlyStop ?? undefined,
  };
  const now: Record<string, unknown> = {
    ...spec,
    ...(spec.dataset !== undefined && { dataset: datasetSpec(spec.dataset) }),
    ...(spec.valDataset !== undefined && { valDataset: path.resolve(spec.valDataset) }),
  };
  const differs: string[] = [];
  for (const [key] of given) {
    const [before, after] = key in was ? [was[key], now[key]] : [stored[key], asked[key]];
    if (JSON.stringify(before) !== JSON.stringify(after)) {
      differs.push(`${flagName(key)} ${show(before)} (now ${show(after)})`);
    }
  }
  if (differs.length > 0) {
    throw invalidArgument(
      `--resume: ${resumed.opened.dir} was started with ${differs.join(', ')}; a resume continues the same run (only threads, device, batch sizes, cuda-graph and epochs may change): start a new run with another --out`,
    );
  }
}

/** `learningRate` → `--learning-rate`, as the CLI spells an option. */
function flagName(key: string): string {
  return `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
}

function show(v: unknown): string {
  if (v === undefined || v === null) return 'unset';
  return Array.isArray(v) ? v.join(',') : String(v);
}

/**
 * A dataset spec as a checkpoint records it: a name, a name with its folder made absolute
 * (`cifar10:/abs/DIR`), or a folder's absolute path.
 */
export function datasetSpec(spec: string): string {
  const cifar = parseCifarSpec(spec);
  if (cifar?.dir) return `${cifar.format.name}:${path.resolve(cifar.dir)}`;
  return isFolder(spec) ? path.resolve(spec) : spec;
}

export function isFolder(spec: string): boolean {
  return !isNamedDataset(spec);
}

/**
 * The dataset of a checkpoint: its name, or its folder — the recorded path when it exists, else
 * the same place relative to the checkpoint (the two moved together), else the recorded path
 * (whose load then names it).
 */
export async function checkpointDataset(opened: OpenCheckpoint): Promise<string | undefined> {
  const { dataset, datasetFromCheckpoint } = opened.config.data ?? {};
  if (typeof dataset !== 'string') return undefined;
  if (!isFolder(dataset)) return dataset;
  if (await isDirectory(path.resolve(dataset))) return path.resolve(dataset);
  if (typeof datasetFromCheckpoint === 'string') {
    const moved = path.resolve(opened.dir, datasetFromCheckpoint);
    if (await isDirectory(moved)) return moved;
  }
  return path.resolve(dataset);
}

/** The checkpoint a `resume` continues, and the data it was trained on. */
export async function resumePoint(out: string | undefined): Promise<ResumePoint> {
  if (!out) throw new Error('--resume needs --out DIR: the run to continue');
  const opened = await openCheckpoint(out).catch((err: Error) => {
    throw new Error(`--resume: ${err.message}`);
  });
  const { config } = opened;
  const dataset = await checkpointDataset(opened);
  const imbalanceSpec = config.data?.imbalance;
  if (dataset === undefined) {
    throw new Error(`--resume: ${out} does not record its dataset (not written by a training run)`);
  }
  const epochs = config.data?.epochs;
  return {
    opened,
    config,
    dataset,
    epochs: Number.isSafeInteger(epochs) ? (epochs as number) : undefined,
    imbalance: typeof imbalanceSpec === 'string' ? imbalanceSpec : undefined,
    validation: (config.data?.validation ?? null) as ValidationSpec | null,
  };
}
