// Image folders: MNIST as 70,000 PNGs (ROOT/training/<digit>/*.png and ROOT/testing/…, written
// once beside the bench's other caches), loaded without the decoded cache, into a cold one and
// from it; then `torchfocal eval` of a LeNet checkpoint trained on that folder, the test split
// read from the cache, against `eval --dataset mnist` (the embedded IDX files) of the same
// checkpoint: whole commands, as a user runs them. Issue 18's bars: 60,000 PNGs in ≤ 10 s, a cached
// load in ≤ 2 s, the folder's `eval` ≤ 2× the IDX one.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PNG } from 'pngjs';
import { loadImageFolder } from '../ts/data/imagefolder';
import { loadMnist } from '../ts/data/mnist';
import { PACKAGE_ROOT } from '../ts/package';
import { benchCacheDir, exec, lastLine, median, round } from './common';

export interface ImageFolderFigures {
  /** PNG files in both splits */
  files: number;
  /** seconds to load both splits with no decoded cache */
  decodeSeconds: number;
  /** the same into an empty cache (decode, then write it) */
  coldCacheSeconds: number;
  /** the same again, read back from that cache */
  cachedSeconds: number;
  /** `eval` of the folder-trained checkpoint on its own folder (cached), whole command, median */
  evalFolderSeconds: number;
  /** the same checkpoint with `--dataset mnist` */
  evalIdxSeconds: number;
  /** runs of each eval command */
  evalRuns: number;
}

const CLI = path.join(PACKAGE_ROOT, 'dist', 'ts', 'cli', 'main.js');

/**
 * ROOT/{training,testing}/<digit>/<index>.png, written once (into a temporary folder renamed into
 * place, so that an interrupted write is never read as the dataset).
 */
async function mnistPngs(root: string, log: (line: string) => void): Promise<string> {
  if (fs.existsSync(root)) return root;
  const mnist = await loadMnist();
  const tmp = `${root}.${process.pid}.tmp`;
  fs.rmSync(tmp, { recursive: true, force: true });
  const started = performance.now();
  for (const [split, set] of [
    ['training', mnist.train],
    ['testing', mnist.test],
  ] as const) {
    for (const name of set.classNames)
      fs.mkdirSync(path.join(tmp, split, name), { recursive: true });
    const side = set.height * set.width;
    for (let i = 0; i < set.count; i++) {
      const png = new PNG({ width: set.width, height: set.height });
      const grey = set.images.subarray(i * side, (i + 1) * side);
      for (let p = 0; p < side; p++)
        png.data.fill(grey[p], 4 * p, 4 * p + 3).fill(255, 4 * p + 3, 4 * p + 4);
      const file = path.join(tmp, split, set.classNames[set.labels[i]], `${i}.png`);
      fs.writeFileSync(file, PNG.sync.write(png, { colorType: 0 }));
    }
  }
  fs.renameSync(tmp, root);
  log(
    `image folder: wrote 70,000 MNIST PNGs under ${root} in ${((performance.now() - started) / 1e3).toFixed(1)} s (once)`,
  );
  return root;
}

async function seconds(run: () => Promise<unknown>): Promise<number> {
  const started = performance.now();
  await run();
  return (performance.now() - started) / 1e3;
}

/** One CLI command's wall time, with the decoded cache in `cache`. */
async function cli(args: string[], cache: string): Promise<number> {
  const started = performance.now();
  const r = await exec(process.execPath, [CLI, ...args], {
    ...process.env,
    TORCHFOCAL_CACHE: cache,
  });
  if (r.code !== 0) throw new Error(`image-folder bench: ${args[0]}: ${lastLine(r.stderr)}`);
  return (performance.now() - started) / 1e3;
}

/** `eval` on the cached folder against `eval` on the IDX files: a time ratio. */
export function imageFolderRatios(f: ImageFolderFigures): Record<string, number> {
  return { evalFolderVsIdx: round(f.evalFolderSeconds / f.evalIdxSeconds, 3) };
}

export async function runImageFolderBench(options: {
  quick?: boolean;
  log?: (line: string) => void;
}): Promise<{ figures: ImageFolderFigures; ratios: Record<string, number>; notes: string[] }> {
  const log = options.log ?? (() => {});
  const root = await mnistPngs(path.join(benchCacheDir(), 'mnist-png-splits'), log);
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'torchfocal-bench-folder-'));
  try {
    const cache = path.join(work, 'cache');
    // One untimed load first, so that every timed one reads the files from the page cache, as a
    // user's second run does (the first after writing them would time the disk).
    await loadImageFolder(root);
    let files = 0;
    log('image folder: loaded without a cache, into an empty one, from it');
    const decodeSeconds = await seconds(async () => {
      const loaded = await loadImageFolder(root);
      files = loaded.train.count + loaded.test.count;
    });
    const coldCacheSeconds = await seconds(() => loadImageFolder(root, { cache }));
    const cachedSeconds = await seconds(() => loadImageFolder(root, { cache }));
    const checkpoint = path.join(work, 'lenet');
    await cli(
      [
        'train',
        '--dataset',
        root,
        '--model',
        'lenet',
        '--epochs',
        '1',
        '--out',
        checkpoint,
        '--json',
      ],
      cache,
    );
    const runs = options.quick ? 1 : 3;
    const folder: number[] = [];
    const idx: number[] = [];
    for (let r = 0; r < runs; r++) {
      folder.push(await cli(['eval', '--checkpoint', checkpoint, '--json'], cache));
      idx.push(
        await cli(['eval', '--checkpoint', checkpoint, '--dataset', 'mnist', '--json'], cache),
      );
    }
    const figures: ImageFolderFigures = {
      files,
      decodeSeconds: round(decodeSeconds, 2),
      coldCacheSeconds: round(coldCacheSeconds, 2),
      cachedSeconds: round(cachedSeconds, 2),
      evalFolderSeconds: round(median(folder), 3),
      evalIdxSeconds: round(median(idx), 3),
      evalRuns: runs,
    };
    log(
      `image folder: decode ${figures.decodeSeconds} s, into a cold cache ${figures.coldCacheSeconds} s, cached ${figures.cachedSeconds} s; eval folder ${figures.evalFolderSeconds} s, IDX ${figures.evalIdxSeconds} s`,
    );
    return {
      figures,
      ratios: imageFolderRatios(figures),
      notes: [
        `image folder: ${files} MNIST PNGs decode in ${figures.decodeSeconds} s (${os.availableParallelism()} cores), ${figures.cachedSeconds} s from the decoded cache`,
      ],
    };
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}
