// Checkpoint directories: the files, their manifest, and a commit that never leaves a directory
// without one whole, verifiable checkpoint.
//
// A commit writes every file as `<name>.next`, then `config.json.next` holding the manifest
// (size and SHA-256 of each file), then swaps: the current files become `<name>.prev`, the new
// ones take the plain names, `config.json` last. Whatever moment a process dies at, one of the
// three sets — plain, `.next` (rolled forward when found whole) or `.prev` — matches its
// manifest, and `openCheckpoint` finds it; a truncated or altered file fails its checksum and
// the previous checkpoint is used instead, with a warning.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import writeFileAtomic from 'write-file-atomic';
import type { ResolvedOptions } from './options';
import type { PartialEpoch } from '../native';

// 2: the optimizer state moved from a LibTorch archive (optimizer.pt) to checked safetensors.
export const CHECKPOINT_VERSION = 2 as const;

export const CHECKPOINT_FILES = {
  config: 'config.json',
  weights: 'model.safetensors',
  state: 'train-state.safetensors',
  metrics: 'metrics.jsonl',
} as const;

type DataFile = Exclude<keyof typeof CHECKPOINT_FILES, 'config'>;
const DATA_FILES: DataFile[] = ['weights', 'state', 'metrics'];

export interface ManifestEntry {
  file: string;
  bytes: number;
  sha256: string;
}

/** What a checkpoint directory's config.json holds: enough to rebuild the model alone. */
export interface CheckpointConfig {
  format: 'torchfocal-checkpoint';
  version: typeof CHECKPOINT_VERSION;
  options: ResolvedOptions;
  inputSize: number;
  /** how raw uint8 pixels become network inputs */
  normalisation: { scale: number; mean: number; std: number; resize: 'bilinear' };
  epochsDone: number;
  /** set when the run was interrupted mid-epoch: the resume continues that epoch there */
  partialEpoch?: PartialEpoch;
  data?: Record<string, unknown>;
  /** size and SHA-256 of every other file of the checkpoint */
  files?: ManifestEntry[];
}

/** A verified checkpoint: its config and where each of its files is. */
export interface OpenCheckpoint {
  dir: string;
  config: CheckpointConfig;
  paths: Record<DataFile, string>;
  /** set when the newest checkpoint was damaged and an older one is used: why */
  warning?: string;
}

/**
 * Writes a checkpoint into `dir`: `write(file, path)` must write each data file to the path
 * given; the manifest and the swap are done here. The previous checkpoint stays as `.prev`.
 */
export async function commitCheckpoint(
  dir: string,
  config: Omit<CheckpointConfig, 'files'>,
  write: (file: DataFile, to: string) => Promise<void>,
): Promise<void> {
  await fs.mkdir(dir, { recursive: true });
  const at = (name: string, suffix = '') => path.join(dir, name + suffix);
  const files: ManifestEntry[] = [];
  for (const f of DATA_FILES) {
    const to = at(CHECKPOINT_FILES[f], '.next');
    await write(f, to);
    files.push({ file: CHECKPOINT_FILES[f], ...(await digest(to)) });
  }
  await writeFileAtomic(
    at(CHECKPOINT_FILES.config, '.next'),
    JSON.stringify({ ...config, files }, null, 2) + '\n',
  );
  await swapIn(dir);
}

/** Opens the newest whole checkpoint of `dir` (rolling an interrupted commit forward). */
export async function openCheckpoint(dir: string): Promise<OpenCheckpoint> {
  const config = path.join(dir, CHECKPOINT_FILES.config);
  if (
    !(await exists(config)) &&
    !(await exists(config + '.next')) &&
    !(await exists(config + '.prev'))
  ) {
    throw new Error(`${dir}: not a torchfocal checkpoint (no ${CHECKPOINT_FILES.config})`);
  }
  const problems: string[] = [];
  const current = await verifiedSet(dir, '', problems);
  if (current) return current;
  // A commit died during its swap: finish it when the new set is whole.
  if (await verifiedSet(dir, '.next', [])) {
    await swapIn(dir);
    const rolled = await verifiedSet(dir, '', problems);
    if (rolled) return rolled;
  }
  const previous = await verifiedSet(dir, '.prev', []);
  if (previous) {
    previous.warning =
      `${dir}: the newest checkpoint is damaged (${problems.join('; ')}); ` +
      `using the previous one (epoch ${previous.config.epochsDone})`;
    return previous;
  }
  throw new Error(`${dir}: no intact checkpoint (${problems.join('; ') || 'no manifest'})`);
}

/** The config of the newest whole checkpoint of `dir`. */
export async function readCheckpointConfig(dir: string): Promise<CheckpointConfig> {
  return (await openCheckpoint(dir)).config;
}

// The swap of a commit; safe to run again after an interruption at any point.
async function swapIn(dir: string): Promise<void> {
  const at = (name: string, suffix = '') => path.join(dir, name + suffix);
  const next = (name: string) => exists(at(name, '.next'));
  // 1. The current checkpoint becomes the previous one (config first: a config without its
  //    files never stands under the plain name).
  if (await next(CHECKPOINT_FILES.config)) {
    for (const name of [CHECKPOINT_FILES.config, ...DATA_FILES.map((f) => CHECKPOINT_FILES[f])]) {
      if ((await next(name)) && (await exists(at(name))))
        await fs.rename(at(name), at(name, '.prev'));
    }
  }
  // 2. The new files take the plain names, config last.
  for (const name of [...DATA_FILES.map((f) => CHECKPOINT_FILES[f]), CHECKPOINT_FILES.config]) {
    if (await next(name)) await fs.rename(at(name, '.next'), at(name));
  }
  const handle = await fs.open(dir, 'r');
  try {
    await handle.sync(); // the renames themselves reach the disk
  } finally {
    await handle.close();
  }
}

// The set of files with `suffix` (each falling back to the plain name where a swap already
// moved it), when its config parses and every file matches the manifest.
async function verifiedSet(
  dir: string,
  suffix: string,
  problems: string[],
): Promise<OpenCheckpoint | undefined> {
  const pick = async (name: string) => {
    const own = path.join(dir, name + suffix);
    return suffix && !(await exists(own)) ? path.join(dir, name) : own;
  };
  const configFile = path.join(dir, CHECKPOINT_FILES.config + suffix);
  if (!(await exists(configFile))) return undefined;
  let config: CheckpointConfig;
  try {
    config = parseConfig(await fs.readFile(configFile, 'utf8'), configFile);
  } catch (err) {
    problems.push((err as Error).message);
    return undefined;
  }
  const paths = {} as Record<DataFile, string>;
  for (const f of DATA_FILES) paths[f] = await pick(CHECKPOINT_FILES[f]);
  // Checkpoints written before manifests existed: taken as they are.
  for (const entry of config.files ?? []) {
    const f = DATA_FILES.find((d) => CHECKPOINT_FILES[d] === entry.file);
    if (!f) {
      problems.push(`${configFile}: unknown file '${entry.file}' in the manifest`);
      return undefined;
    }
    const actual = await digest(paths[f]).catch(() => undefined);
    if (!actual) {
      problems.push(`${entry.file} is missing`);
      return undefined;
    }
    if (actual.bytes !== entry.bytes || actual.sha256 !== entry.sha256) {
      problems.push(
        actual.bytes !== entry.bytes
          ? `${entry.file} has ${actual.bytes} bytes, its manifest says ${entry.bytes}`
          : `${entry.file} does not match its SHA-256 in the manifest`,
      );
      return undefined;
    }
  }
  return { dir, config, paths };
}

function parseConfig(text: string, file: string): CheckpointConfig {
  let config: CheckpointConfig;
  try {
    config = JSON.parse(text) as CheckpointConfig;
  } catch (err) {
    throw new Error(`${file}: not valid JSON (${(err as Error).message})`);
  }
  if (config?.format !== 'torchfocal-checkpoint' || !config.options) {
    throw new Error(`${file}: not a torchfocal checkpoint config (format/version missing)`);
  }
  if (config.version !== CHECKPOINT_VERSION) {
    throw new Error(
      `${file}: checkpoint format version ${JSON.stringify(config.version)} is not read by this torchfocal (it reads version ${CHECKPOINT_VERSION})`,
    );
  }
  const files = config.files;
  if (
    files !== undefined &&
    !(
      Array.isArray(files) &&
      files.every(
        (e) =>
          typeof e?.file === 'string' &&
          Number.isSafeInteger(e.bytes) &&
          typeof e.sha256 === 'string',
      )
    )
  ) {
    throw new Error(`${file}: its manifest ('files') is malformed`);
  }
  return config;
}

async function digest(file: string): Promise<{ bytes: number; sha256: string }> {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of createReadStream(file)) {
    hash.update(chunk as Buffer);
    bytes += (chunk as Buffer).length;
  }
  return { bytes, sha256: hash.digest('hex') };
}

async function exists(file: string): Promise<boolean> {
  return fs.access(file).then(
    () => true,
    () => false,
  );
}
