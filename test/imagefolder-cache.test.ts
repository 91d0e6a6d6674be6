// The decoded cache of image folders (ts/data/decode-cache.ts): what a second load reads back,
// and every change that must make it decode again.
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import sharp from 'sharp';
import {
  loadDataset,
  loadTestSet,
  type Dataset,
  type LoadOptions,
  type LoadProgress,
} from '../ts/index';
import { cacheLimit } from '../ts/data/decode-cache';
import { jsonLines, quickTrainArgs, runCli, tempDir } from './helpers/cli';
import { mnistImageFolder } from './helpers/imagefolder';

// Noise that does not compress away, seeded per image.
function noise(bytes: number, seed: number): Buffer {
  let x = seed * 2654435761 + 1;
  return Buffer.from(
    Array.from({ length: bytes }, () => ((x = (x * 1103515245 + 12345) >>> 0) >>> 16) & 255),
  );
}

// ROOT/{training,testing}/{a,b}: grey PNGs (decoded in JS), an RGB PNG with no colour, a grey
// JPEG and a 20×20 PNG (both through sharp, the latter resized), and a damaged PNG (skipped).
async function makeFolder(): Promise<string> {
  const root = tempDir('torchfocal-decode-cache-');
  let seed = 0;
  for (const split of ['training', 'testing']) {
    for (const cls of ['a', 'b']) {
      const dir = path.join(root, split, cls);
      fs.mkdirSync(dir, { recursive: true });
      for (let i = 0; i < 4; i++) {
        await sharp(noise(16 * 16, ++seed), { raw: { width: 16, height: 16, channels: 1 } })
          .toColourspace('b-w')
          .png()
          .toFile(path.join(dir, `${i}.png`));
      }
      const grey = noise(16 * 16, ++seed);
      const rgb = Buffer.alloc(3 * 256);
      for (let k = 0; k < 256; k++) rgb.fill(grey[k], 3 * k, 3 * k + 3);
      await sharp(rgb, { raw: { width: 16, height: 16, channels: 3 } })
        .png()
        .toFile(path.join(dir, 'rgb.png'));
      await sharp(noise(16 * 16, ++seed), { raw: { width: 16, height: 16, channels: 1 } })
        .jpeg()
        .toFile(path.join(dir, 'photo.jpg'));
      await sharp(noise(20 * 20, ++seed), { raw: { width: 20, height: 20, channels: 1 } })
        .toColourspace('b-w')
        .png()
        .toFile(path.join(dir, 'big.png'));
      fs.writeFileSync(path.join(dir, 'broken.png'), Buffer.from('\x89PNG\r\n\x1a\nnot really'));
    }
  }
  return root;
}

// Loads with progress recorded: the last report says how many files came from the cache.
async function load(root: string, options: LoadOptions = {}) {
  const seen: LoadProgress[] = [];
  const split = await loadDataset(root, { ...options, onProgress: (p) => seen.push({ ...p }) });
  return { split, last: seen.at(-1)! };
}

function same(t: import('ava').ExecutionContext, a: Dataset, b: Dataset, what: string) {
  t.true(Buffer.from(a.images).equals(Buffer.from(b.images)), `${what}: images differ`);
  t.deepEqual(Array.from(a.labels), Array.from(b.labels), what);
  for (const key of ['count', 'channels', 'height', 'width', 'classNames', 'source'] as const) {
    t.deepEqual(a[key], b[key], `${what}: ${key}`);
  }
  t.deepEqual(a.skipped, b.skipped, `${what}: skipped`);
  t.is(a.resized ?? 0, b.resized ?? 0, `${what}: resized`);
  t.deepEqual(a.capped, b.capped, `${what}: capped`);
}

test('decoded cache: a second load is read back from it, equal byte for byte to a fresh decode', async (t) => {
  const root = await makeFolder();
  const cache = tempDir();
  const fresh = await load(root);
  t.is(fresh.split.train.count, 14); // 2 classes × (4 + rgb + jpg + big); broken.png left out
  t.is(fresh.split.train.resized, 2);
  t.deepEqual(
    fresh.split.train.skipped?.map((s) => path.relative(root, s.file)),
    ['training/a/broken.png', 'training/b/broken.png'],
  );
  const first = await load(root, { cache });
  t.is(first.last.cached, undefined);
  t.is(fs.readdirSync(path.join(cache, 'decoded')).length, 2); // one file a split
  const second = await load(root, { cache });
  t.deepEqual(second.last, { decoded: 32, total: 32, cached: 32 }); // 8 files a class
  for (const split of ['train', 'test'] as const) {
    same(t, first.split[split], fresh.split[split], `first ${split}`);
    same(t, second.split[split], fresh.split[split], `cached ${split}`);
  }
  // eval's load of the test split alone (the training size and channels) reads the same file
  const { width, height, channels } = fresh.split.train;
  const seen: LoadProgress[] = [];
  const { test: alone } = await loadTestSet(root, {
    cache,
    size: { width, height },
    channels: channels as 1 | 3,
    onProgress: (p) => seen.push({ ...p }),
  });
  t.deepEqual(seen.at(-1), { decoded: 16, total: 16, cached: 16 });
  same(t, alone, fresh.split.test, 'test split alone');
});

test('decoded cache: a touched, added, removed or renamed file, or another setting, decodes again', async (t) => {
  const root = await makeFolder();
  const cache = tempDir();
  const dir = path.join(root, 'training', 'a');
  const changes: [string, () => void, LoadOptions?][] = [
    ['touched', () => fs.utimesSync(path.join(dir, '0.png'), new Date(), new Date(2001, 1, 1))],
    ['added', () => fs.copyFileSync(path.join(dir, '0.png'), path.join(dir, 'new.png'))],
    ['removed', () => fs.rmSync(path.join(dir, '1.png'))],
    ['renamed', () => fs.renameSync(path.join(dir, '2.png'), path.join(dir, 'z.png'))],
    [
      'moved to another class',
      () => fs.renameSync(path.join(dir, '3.png'), path.join(root, 'training', 'b', '3a.png')),
    ],
    [
      'rewritten',
      () => fs.writeFileSync(path.join(dir, 'rgb.png'), fs.readFileSync(path.join(dir, 'big.png'))),
    ],
    [
      'other bytes, same size and times',
      () => {
        const file = path.join(root, 'training', 'b', 'photo.jpg');
        const { atime, mtime } = fs.statSync(file);
        const bytes = fs.readFileSync(file);
        bytes[bytes.length - 40] ^= 0x55; // in the entropy-coded data: other pixels
        fs.writeFileSync(file, bytes);
        fs.utimesSync(file, atime, mtime); // its time back (to the ms; its ctime moves)
      },
    ],
    ['--max-pixels', () => {}, { maxPixels: 300 }],
    ['--channels 3', () => {}, { channels: 3 }],
  ];
  await load(root, { cache });
  for (const [what, change, options] of changes) {
    change();
    const { split, last } = await load(root, { ...options, cache });
    // the training split decoded again; the test split too when a setting changed
    t.is(last.cached, options ? undefined : 16, what);
    const fresh = await load(root, options);
    same(t, split.train, fresh.split.train, what);
    const again = await load(root, { ...options, cache });
    t.is(again.last.cached, again.last.total, `${what}: then read back`);
    same(t, again.split.train, fresh.split.train, `${what}: read back`);
  }
});

test('decoded cache: a truncated or damaged file is decoded again and rewritten, never served', async (t) => {
  const root = await makeFolder();
  const cache = tempDir();
  const fresh = await load(root);
  await load(root, { cache });
  const decoded = path.join(cache, 'decoded');
  const files = fs.readdirSync(decoded).map((f) => path.join(decoded, f));
  const sizes = files.map((f) => fs.statSync(f).size);
  const damages: [string, (file: string) => void][] = [
    ['truncated', (f) => fs.truncateSync(f, fs.statSync(f).size - 1)],
    ['cut in its header', (f) => fs.truncateSync(f, 20)],
    ['empty', (f) => fs.writeFileSync(f, '')],
    ['overwritten', (f) => fs.writeFileSync(f, Buffer.alloc(fs.statSync(f).size, 7))],
  ];
  for (const [what, damage] of damages) {
    files.forEach(damage);
    const { split, last } = await load(root, { cache });
    t.is(last.cached, undefined, what);
    same(t, split.train, fresh.split.train, what);
    same(t, split.test, fresh.split.test, what);
    t.deepEqual(
      files.map((f) => fs.statSync(f).size),
      sizes,
      `${what}: rewritten`,
    );
    t.is((await load(root, { cache })).last.cached, 32, `${what}: read back after`);
  }
});

test('decoded cache: a cache folder that cannot be written costs a warning, not the load', async (t) => {
  const root = await makeFolder();
  const notAFolder = path.join(tempDir(), 'file');
  fs.writeFileSync(notAFolder, '');
  const warnings: string[] = [];
  const { split } = await load(root, { cache: notAFolder, onWarning: (m) => warnings.push(m) });
  const fresh = await load(root);
  same(t, split.train, fresh.split.train, 'train');
  t.is(warnings.length, 2);
  t.regex(warnings[0], /training: the decoded images could not be kept in the cache: .*ENOTDIR/);
});

// The files in CACHE/decoded/ now, and those a load added.
function cacheFiles(cache: string): string[] {
  const dir = path.join(cache, 'decoded');
  return fs.existsSync(dir) ? fs.readdirSync(dir).sort() : [];
}

test("decoded cache: kept under its limit, least recently used first; splits of deleted folders and dead writers' temporary files go", async (t) => {
  const cache = tempDir();
  const [a, b, c, d] = [
    await makeFolder(),
    await makeFolder(),
    await makeFolder(),
    await makeFolder(),
  ];
  const added = async (root: string, options: LoadOptions = {}) => {
    const before = new Set(cacheFiles(cache));
    await load(root, { cache, ...options });
    return cacheFiles(cache).filter((f) => !before.has(f));
  };
  const filesA = await added(a);
  const filesB = await added(b);
  t.is(filesA.length + filesB.length, 4);
  const size = (f: string) => fs.statSync(path.join(cache, 'decoded', f)).size;
  const biggest = Math.max(...[...filesA, ...filesB].map(size));
  // A read back now, B not since: B is the least recently used (mtimes 2 s apart)
  const past = new Date(Date.now() - 2000);
  for (const f of [...filesA, ...filesB]) fs.utimesSync(path.join(cache, 'decoded', f), past, past);
  t.deepEqual((await load(a, { cache })).last.cached, 32);
  // a dead writer's temporary file (two hours old) and a live one's
  const dead = path.join(cache, 'decoded', 'x.bin.1.dead.tmp');
  const live = path.join(cache, 'decoded', 'x.bin.2.live.tmp');
  fs.writeFileSync(dead, 'partial');
  fs.writeFileSync(live, 'partial');
  const old = new Date(Date.now() - 2 * 3600 * 1000);
  fs.utimesSync(dead, old, old);
  // room for A and two splits more: C's two writes push out B's two files, oldest first
  const limit = size(filesA[0]) + size(filesA[1]) + 2 * biggest + 100;
  const filesC = await added(c, { cacheLimit: limit });
  t.is(filesC.length, 2);
  t.deepEqual(cacheFiles(cache), [...filesA, ...filesC, path.basename(live)].sort());
  // A's folder deleted: the next write (D, no limit to speak of) removes A's splits
  fs.rmSync(a, { recursive: true });
  const filesD = await added(d);
  t.deepEqual(cacheFiles(cache), [...filesC, ...filesD, path.basename(live)].sort());
});

test('decoded cache: a limit that is no whole number of MiB stops train before it decodes, in one line', async (t) => {
  t.is(cacheLimit({}), 10 * 2 ** 30);
  t.is(cacheLimit({ TORCHFOCAL_DECODE_CACHE_MB: '512' }), 512 * 2 ** 20);
  t.throws(() => cacheLimit({ TORCHFOCAL_DECODE_CACHE_MB: '2GB' }), {
    message: "TORCHFOCAL_DECODE_CACHE_MB must be a whole number of MiB, not '2GB'",
  });
  const root = await mnistImageFolder(20, 10);
  const cache = tempDir();
  const out = path.join(tempDir(), 'run');
  const env = { TORCHFOCAL_CACHE: cache, TORCHFOCAL_DECODE_CACHE_MB: '-1' };
  const r = await runCli(quickTrainArgs(root, out, '--epochs', '1'), { env });
  t.not(r.code, 0);
  t.regex(
    r.stderr.trim(),
    /^[^\n]*TORCHFOCAL_DECODE_CACHE_MB must be a whole number of MiB, not '-1'$/,
  );
  t.deepEqual(cacheFiles(cache), []);
});

test('CLI: train keeps both splits, --resume and eval read them back (never rewritten), --no-decode-cache keeps nothing', async (t) => {
  const root = await mnistImageFolder(20, 10);
  const cache = tempDir();
  const env = { TORCHFOCAL_CACHE: cache };
  const decoded = path.join(cache, 'decoded');
  const out = path.join(tempDir(), 'run');
  const trained = await runCli(quickTrainArgs(root, out, '--epochs', '1'), { env });
  t.is(trained.code, 0, trained.stderr);
  const files = fs.readdirSync(decoded).map((f) => path.join(decoded, f));
  t.is(files.length, 2);
  // A write goes to a temporary file renamed into place: a new inode. (A read sets the
  // modification time, the cache's record of use, so that cannot tell.)
  const written = files.map((f) => fs.statSync(f, { bigint: true }).ino);
  const resumed = await runCli(quickTrainArgs(root, out, '--epochs', '2', '--resume'), { env });
  t.is(resumed.code, 0, resumed.stderr);
  const evaluated = await runCli(['eval', '--checkpoint', out, '--threads', '1', '--json'], {
    env,
  });
  t.is(evaluated.code, 0, evaluated.stderr);
  t.deepEqual(
    jsonLines(evaluated.stdout)[0].confusion,
    jsonLines(resumed.stdout).at(-1)!.eval.confusion,
  );
  // a decode would have replaced them (a miss writes the split again)
  t.deepEqual(fs.readdirSync(decoded).sort(), files.map((f) => path.basename(f)).sort());
  t.deepEqual(
    files.map((f) => fs.statSync(f, { bigint: true }).ino),
    written,
  );
  const empty = tempDir();
  const off = await runCli(
    ['eval', '--checkpoint', out, '--threads', '1', '--json', '--no-decode-cache'],
    { env: { TORCHFOCAL_CACHE: empty } },
  );
  t.is(off.code, 0, off.stderr);
  t.is(off.stdout, evaluated.stdout);
  t.deepEqual(fs.readdirSync(empty), []);
});

test('CLI: experiment starve keeps the folder decoded and a second one reads it back; --no-decode-cache keeps nothing', async (t) => {
  const root = await mnistImageFolder(20, 10);
  const cache = tempDir();
  const decoded = path.join(cache, 'decoded');
  const starve = (env: Record<string, string>, ...extra: string[]) =>
    runCli(
      [
        'experiment',
        'starve',
        '--dataset',
        root,
        '--model',
        'mlp',
        '--epochs',
        '1',
        '--keep',
        '0.5',
        '--threads',
        '1',
        '--json',
        '--out',
        path.join(tempDir(), 'starve'),
        ...extra,
      ],
      { env },
    );
  const first = await starve({ TORCHFOCAL_CACHE: cache });
  t.is(first.code, 0, first.stderr);
  const files = fs.readdirSync(decoded).map((f) => path.join(decoded, f));
  t.is(files.length, 2); // both splits
  const before = files.map((f) => fs.statSync(f, { bigint: true }));
  const second = await starve({ TORCHFOCAL_CACHE: cache });
  t.is(second.code, 0, second.stderr);
  const after = files.map((f) => fs.statSync(f, { bigint: true }));
  // read back (a read marks the file used), not decoded again (a write is a new inode)
  t.deepEqual(
    after.map((s) => s.ino),
    before.map((s) => s.ino),
  );
  t.true(after.every((s, i) => s.mtimeNs > before[i].mtimeNs));
  // the same pixels, so the same results
  const results = (r: { stdout: string }) =>
    jsonLines(r.stdout)
      .at(-1)!
      .rows.map((row: { name: string; eval: unknown }) => [row.name, row.eval]);
  t.deepEqual(results(second), results(first));
  const empty = tempDir();
  const off = await starve({ TORCHFOCAL_CACHE: empty }, '--no-decode-cache');
  t.is(off.code, 0, off.stderr);
  t.false(fs.existsSync(path.join(empty, 'decoded')));
});
