// `torchfocal predict`: classify image files (or every image in folders), like test.py.
import fs from 'node:fs/promises';
import { Command } from 'commander';
import sharp from 'sharp';
import {
  DEFAULT_MAX_PIXELS,
  decodeImage,
  fileKind,
  listImageFiles,
  mapLimit,
} from '../data/imagefolder';
import { plainPngFile } from '../data/png';
import { openCheckpoint, Trainer, type Prediction } from '../train/trainer';
import { recordedImageSize } from '../train/checkpoint';
import { intAtLeast, maxPixelsOption } from './parse';
import { ExitError, warnOnStderr, printJson } from './output';

interface PredictFlags {
  checkpoint: string;
  json?: boolean;
  threads: number;
  device: string;
  evalBatchSize?: number;
  top?: number;
  maxPixels?: number;
}

// What one input became: a prediction, or why it has none.
type Outcome = { file: string; prediction: Prediction } | { file: string; error: string };

// Files decoded at once (sharp decodes on libuv's threads).
const IN_FLIGHT = 8;

// Pixels decoded and held at once: files are taken in windows of at most this many pixels (or
// one file, if larger); the next window decodes while one is predicted, and a window is
// dropped once predicted, so two windows are held at most: 32 Mi pixels, or two images of the
// largest allowed size, never eight.
const WINDOW_PIXELS = 16 * 2 ** 20;

export function predictCommand(): Command {
  return new Command('predict')
    .description(
      'classify image files or folders of images (searched recursively) with a checkpoint',
    )
    .argument('<files...>', 'image files or folders')
    .requiredOption('--checkpoint <dir>', 'checkpoint directory written by train')
    .option('--json', 'one JSON line per image')
    .option('--top <k>', 'list the k most probable classes of each image', intAtLeast(1))
    .option('--threads <n>', 'CPU threads (0 = all cores)', intAtLeast(0), 0)
    .option('--device <name>', 'auto, cpu or cuda', 'auto')
    .option('--eval-batch-size <n>', 'images per batch (default: as trained)', intAtLeast(1))
    .addOption(
      maxPixelsOption(`refuse images of more pixels (default ${DEFAULT_MAX_PIXELS} = 4096²)`),
    )
    .action(async (inputs: string[], flags: PredictFlags) => {
      const entries = await expandInputs(inputs);
      const opened = await openCheckpoint(flags.checkpoint);
      const trainer = await Trainer.load(
        opened,
        { threads: flags.threads, device: flags.device, evalBatchSize: flags.evalBatchSize },
        warnOnStderr,
      );
      // An image is brought to the run's common size as its training images were (a checkpoint
      // of the API alone: to the network's input), so the engine never gets a whole photo.
      const size = recordedImageSize(opened.config) ?? {
        width: trainer.inputSize,
        height: trainer.inputSize,
      };
      let outcomes: Outcome[];
      try {
        const classes = trainer.options.classNames.length;
        if (flags.top !== undefined && flags.top > classes) {
          throw new Error(`--top: ${flags.top} is more than the checkpoint's ${classes} classes`);
        }
        outcomes = await predictFiles(trainer, entries, size, flags.top, flags.maxPixels);
      } finally {
        trainer.dispose();
      }
      for (const o of outcomes) {
        if ('error' in o) {
          if (flags.json) printJson({ file: o.file, error: o.error });
          process.stderr.write(`torchfocal: ${o.file}: ${o.error}\n`);
          continue;
        }
        const p = o.prediction;
        const top = p.top;
        if (flags.json) {
          printJson({
            file: o.file,
            class: p.class,
            name: p.name,
            probability: p.probability,
            ...(top && { top }),
          });
        } else {
          const ranked = top ?? [p];
          console.log(
            [o.file, ...ranked.flatMap((k) => [k.name, k.probability.toFixed(4)])].join('\t'),
          );
        }
      }
      const failed = outcomes.filter((o) => 'error' in o).length;
      if (failed > 0) {
        throw new ExitError(`${failed} of ${outcomes.length} files could not be read`, 1);
      }
    });
}

// Decodes the files window by window (a few at a time, the next window while the engine
// predicts one), sends those of one size to the engine together, and returns one outcome per
// entry, in the entries' order: an unreadable file costs only itself.
async function predictFiles(
  trainer: Trainer,
  entries: { file: string; error?: string }[],
  size: { width: number; height: number },
  top?: number,
  maxPixels?: number,
): Promise<Outcome[]> {
  // Sizes from the headers alone (an unreadable one counts as small: its decode fails).
  const pixels = await mapLimit(entries, IN_FLIGHT, async (e) => {
    if (e.error) return 0;
    const m =
      plainPngFile(e.file) ??
      (await sharp(e.file, { limitInputPixels: false })
        .metadata()
        .catch(() => undefined));
    const n = (m?.width ?? 0) * (m?.height ?? 0);
    return n > (maxPixels ?? DEFAULT_MAX_PIXELS) ? 0 : n; // refused from its header, not decoded
  });
  const windows: (typeof entries)[] = [];
  for (let start = 0; start < entries.length;) {
    let end = start + 1;
    let sum = pixels[start];
    while (end < entries.length && sum + pixels[end] <= WINDOW_PIXELS) sum += pixels[end++];
    windows.push(entries.slice(start, end));
    start = end;
  }
  if (windows.length === 0) return [];
  const channels = trainer.options.channels;
  const outcomes: Outcome[] = [];
  let next = decodeWindow(windows[0], channels, size, maxPixels);
  for (let w = 0; w < windows.length; w++) {
    const decoded = await next;
    if (w + 1 < windows.length) next = decodeWindow(windows[w + 1], channels, size, maxPixels);
    outcomes.push(...(await predictDecoded(trainer, decoded, size, top)));
  }
  return outcomes;
}

type Decoded = { file: string; error: string } | { file: string; pixels: Uint8Array };

// A window's files decoded; one that cannot be is an error of its own (never a rejection).
async function decodeWindow(
  entries: { file: string; error?: string }[],
  channels: 1 | 3,
  size: { width: number; height: number },
  maxPixels?: number,
): Promise<Decoded[]> {
  // One at a time when a file is large: a window of many pixels is one file.
  const inFlight = entries.length === 1 ? 1 : IN_FLIGHT;
  return mapLimit(entries, inFlight, async (e): Promise<Decoded> => {
    if (e.error) return { file: e.file, error: e.error };
    try {
      return { file: e.file, ...(await decodeImage(e.file, channels, size, { maxPixels })) };
    } catch (err) {
      // decodeImage's message starts with the file name: keep the reason alone
      const message = (err as Error).message;
      return {
        file: e.file,
        error: message.startsWith(`${e.file}: `) ? message.slice(e.file.length + 2) : message,
      };
    }
  });
}

// Predicts a decoded window: every decoded image has `size`, so one stack, one native call.
async function predictDecoded(
  trainer: Trainer,
  decoded: Decoded[],
  size: { width: number; height: number },
  top?: number,
): Promise<Outcome[]> {
  const good = decoded.flatMap((d, i) => ('error' in d ? [] : [i]));
  const predictions = new Map<number, Prediction>();
  if (good.length > 0) {
    const { width, height } = size;
    const bytes = trainer.options.channels * width * height;
    const stack = new Uint8Array(good.length * bytes);
    good.forEach((i, k) => stack.set((decoded[i] as { pixels: Uint8Array }).pixels, k * bytes));
    const preds = await trainer.predict(stack, { count: good.length, height, width }, { top });
    good.forEach((i, k) => predictions.set(i, preds[k]));
  }
  return decoded.map((d, i) =>
    'error' in d
      ? { file: d.file, error: d.error }
      : { file: d.file, prediction: predictions.get(i)! },
  );
}

/**
 * Files as given; folders expand to their image files, sub-folders included, sorted. A path
 * that does not exist, or a folder without images, is an entry with an error.
 */
async function expandInputs(inputs: string[]): Promise<{ file: string; error?: string }[]> {
  const entries: { file: string; error?: string }[] = [];
  for (const input of inputs) {
    const stat = await fs.stat(input).catch(() => undefined);
    if (!stat) {
      entries.push({ file: input, error: 'no such file or folder' });
    } else if (stat.isFile()) {
      entries.push({ file: input });
    } else if (!stat.isDirectory()) {
      // a FIFO named x.png would block the decoder forever
      entries.push({ file: input, error: `not a regular file (${fileKind(stat)})` });
    } else {
      const skipped: { file: string; reason: string }[] = [];
      const files = await listImageFiles(input, skipped).catch((err: Error) => err);
      // Links to folders and special files are left out, each said on stderr; other
      // extensions are left out silently.
      for (const s of skipped.filter((s) => !s.reason.startsWith('not an image extension'))) {
        warnOnStderr(`${s.file}: skipped: ${s.reason}`);
      }
      if (files instanceof Error) entries.push({ file: input, error: files.message });
      else if (files.length === 0)
        entries.push({ file: input, error: 'no image files in this folder' });
      else entries.push(...files.map((file) => ({ file })));
    }
  }
  return entries;
}
