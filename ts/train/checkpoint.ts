// Checkpoint directories: the files, their manifest, and a commit that never leaves a directory
// without one whole, verifiable checkpoint.
//
// A commit writes every file as `<name>.next`, then `config.json.next` holding the manifest
// (size and SHA-256 of each file), then swaps: the current files become `<name>.prev`, the new
// ones take the plain names, `config.json` last. Whatever moment a process dies at, one of the
// three sets — plain, `.next` or `.prev` — matches its manifest, and `openCheckpoint` finds it;
// a truncated or altered file fails its checksum and the previous checkpoint is used instead,
// with a warning.
//
// Readers never change the folder: a run being trained is read while its writer commits, and
// only the writer (the holder of the run's lock, ts/train/run-lock.ts) rolls an interrupted
// commit forward (`recoverCheckpoint`). A reader that finds a commit under way reads the whole
// set it can verify, and verifies again when the files changed while it read them.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import writeFileAtomic from 'write-file-atomic';
import { makeDir } from './run-lock';
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
  /** the images' channels: 1 (grey) or 3 (RGB); absent in checkpoints from before colour: 1 */
  channels?: number;
  /**
   * how raw uint8 pixels become network inputs: (x · scale − mean[c]) / std[c] after a bilinear
   * resize to inputSize (one number for all channels in checkpoints from before colour)
   */
  normalisation: {
    scale: number;
    mean: number[] | number;
    std: number[] | number;
    /** one per channel when set (older writers): the network's channels */
    channels?: number;
    resize: 'bilinear';
  };
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
  /**
   * the bytes of each data file as verified (when the manifest lists it): load these, not
   * `paths`, which a live writer may have replaced since
   */
  contents?: Partial<Record<DataFile, Buffer>>;
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
  await makeDir(dir);
  const at = (name: string, suffix = '') => path.join(dir, name + suffix);
  const files: ManifestEntry[] = [];
  let writing = '';
  try {
    for (const f of DATA_FILES) {
      const to = (writing = at(CHECKPOINT_FILES[f], '.next'));
      await write(f, to);
      files.push({ file: CHECKPOINT_FILES[f], ...(await digest(to)) });
    }
    writing = at(CHECKPOINT_FILES.config, '.next');
    await writeFileAtomic(writing, JSON.stringify({ ...config, files }, null, 2) + '\n');
    writing = dir;
    await swapIn(dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOSPC' || code === 'EDQUOT') {
      // The partial file goes (its space with it); the last whole checkpoint stays.
      if (writing !== dir) await fs.unlink(writing).catch(() => {});
      throw Object.assign(
        new Error(
          `${writing}: no space left on the device (${code}); the last whole checkpoint in ${dir} is kept: free some space and continue the run with --resume`,
        ),
        { code },
      );
    }
    throw err;
  }
}

/**
 * Opens the newest whole checkpoint of `dir`, changing nothing in it (a commit under way is read
 * as its `.next` set). Verifications that fail while the folder's files change (a writer's swap)
 * are tried again, a bounded number of times.
 */
export async function openCheckpoint(dir: string): Promise<OpenCheckpoint> {
  let last: { opened?: OpenCheckpoint; error?: Error } = {};
  for (let attempt = 0; attempt < READ_ATTEMPTS; attempt++) {
    const before = await folderState(dir);
    last = await readNewest(dir).then(
      (opened) => ({ opened }),
      (error: Error) => ({ error }),
    );
    // A set that verified is whole whatever happened since (its bytes are in `contents`).
    if (last.opened && !last.opened.warning) return last.opened;
    if ((await folderState(dir)) === before) break;
    await new Promise((r) => setTimeout(r, 5 * (attempt + 1)));
  }
  if (last.opened) return last.opened;
  throw last.error!;
}

const READ_ATTEMPTS = 10;

async function readNewest(dir: string): Promise<OpenCheckpoint> {
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
  // A commit under way, or one that died during its swap: its new set, when whole.
  const next = await verifiedSet(dir, '.next', []);
  if (next) return next;
  const previous = await verifiedSet(dir, '.prev', []);
  if (previous) {
    previous.warning =
      `${dir}: the newest checkpoint is damaged (${problems.join('; ') || `no ${CHECKPOINT_FILES.config}`}); ` +
      `using the previous one (epoch ${previous.config.epochsDone})`;
    return previous;
  }
  throw new Error(`${dir}: no intact checkpoint (${problems.join('; ') || 'no manifest'})`);
}

// What the checkpoint's files are right now: names, inodes, sizes and times.
async function folderState(dir: string): Promise<string> {
  const names = await fs.readdir(dir).catch(() => [] as string[]);
  const ours = names.filter((n) => CHECKPOINT_NAMES.some((c) => n.startsWith(c))).sort();
  const stats = await Promise.all(
    ours.map((n) =>
      fs.stat(path.join(dir, n)).then(
        (s) => `${n}:${s.ino}:${s.size}:${s.mtimeMs}`,
        () => `${n}:gone`,
      ),
    ),
  );
  return stats.join('|');
}

const CHECKPOINT_NAMES: string[] = Object.values(CHECKPOINT_FILES);

/**
 * For the holder of the run's lock only, before it writes: finishes a commit that died during
 * its swap (when its new set is whole), and removes the temporary files of writes that died
 * (`<name>.next.<n>` of write-file-atomic).
 */
export async function recoverCheckpoint(dir: string): Promise<void> {
  const names = await fs.readdir(dir).catch(() => [] as string[]);
  for (const name of names) {
    if (TEMP_FILE.test(name)) await fs.unlink(path.join(dir, name)).catch(() => {});
  }
  const configNext = path.join(dir, CHECKPOINT_FILES.config + '.next');
  if (await exists(configNext)) {
    if (await verifiedSet(dir, '.next', [])) await swapIn(dir);
  }
}

// write-file-atomic's temporary names: `<target>.<uint32>`.
const TEMP_FILE = new RegExp(
  `^(${[...CHECKPOINT_NAMES, 'report.json', 'report.md', 'report.html']
    .map((n) => n.replace(/\./g, '\\.'))
    .join('|')})(\\.next|\\.prev)?\\.\\d+$`,
);

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
    if ((await fs.lstat(configFile)).isSymbolicLink()) {
      throw new Error(
        `${configFile}: is a symbolic link; a checkpoint's config is a file of its own`,
      );
    }
    config = parseConfig(await fs.readFile(configFile, 'utf8'), configFile);
  } catch (err) {
    problems.push((err as Error).message);
    return undefined;
  }
  const paths = {} as Record<DataFile, string>;
  const contents: Partial<Record<DataFile, Buffer>> = {};
  for (const f of DATA_FILES) paths[f] = await pick(CHECKPOINT_FILES[f]);
  // Checkpoints written before manifests existed: taken as they are.
  for (const entry of config.files ?? []) {
    const f = DATA_FILES.find((d) => CHECKPOINT_FILES[d] === entry.file);
    if (!f) {
      problems.push(`${configFile}: unknown file '${entry.file}' in the manifest`);
      return undefined;
    }
    const bytes = await fs.readFile(paths[f]).catch(() => undefined);
    if (!bytes) {
      problems.push(`${entry.file} is missing`);
      return undefined;
    }
    const actual = {
      bytes: bytes.length,
      sha256: createHash('sha256').update(bytes).digest('hex'),
    };
    contents[f] = bytes;
    if (actual.bytes !== entry.bytes || actual.sha256 !== entry.sha256) {
      problems.push(
        actual.bytes !== entry.bytes
          ? `${entry.file} has ${actual.bytes} bytes, its manifest says ${entry.bytes}`
          : `${entry.file} does not match its SHA-256 in the manifest`,
      );
      return undefined;
    }
  }
  return { dir, config, paths, contents };
}

function parseConfig(text: string, file: string): CheckpointConfig {
  let config: CheckpointConfig;
  try {
    config = JSON.parse(text) as CheckpointConfig;
  } catch {
    // never the parser's message: it quotes the file's contents
    throw new Error(`${file}: not valid JSON`);
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

/** The training split's common size, as a training run records it (`data.imageSize`). */
export function recordedImageSize(
  config: CheckpointConfig,
): { width: number; height: number } | undefined {
  const size = config.data?.imageSize as { width?: unknown; height?: unknown } | undefined;
  return Number.isInteger(size?.width) && Number.isInteger(size?.height)
    ? { width: size!.width as number, height: size!.height as number }
    : undefined;
}

/**
 * The checkpoint's normalisation for network inputs in [0, 1] (a pixel / 255): the network sees
 * (x − mean[c]) / std[c] on channel c. Reads either form of `normalisation`: numbers (the same for
 * every channel) or one per channel; throws one line when it does not fit `channels`.
 */
export function channelNormalisation(
  config: CheckpointConfig,
  channels: number,
): { mean: number[]; std: number[] } {
  const n = config.normalisation;
  const fail = (why: string) => {
    throw new Error(`the checkpoint's normalisation ${why}`);
  };
  if (!n || !(n.scale > 0 && Number.isFinite(n.scale))) fail('has no positive scale');
  if (n.channels !== undefined && n.channels !== channels) {
    fail(`is for ${n.channels} channels, the network takes ${channels}`);
  }
  const perChannel = (name: 'mean' | 'std', value: unknown): number[] => {
    const values = Array.isArray(value) ? value : Array.from({ length: channels }, () => value);
    if (values.length !== channels) {
      fail(`has ${values.length} values of ${name} for ${channels} channels`);
    }
    if (!values.every((v) => typeof v === 'number' && Number.isFinite(v))) {
      fail(`has a ${name} that is not a finite number`);
    }
    // (pixel × scale − m) / s = (x − m / k) / (s / k) for x = pixel / 255, k = 255 × scale
    return (values as number[]).map((v) => v / (255 * n.scale));
  };
  const mean = perChannel('mean', n.mean);
  const std = perChannel('std', n.std);
  if (!std.every((v) => v > 0)) fail('has a std that is not positive');
  return { mean, std };
}
