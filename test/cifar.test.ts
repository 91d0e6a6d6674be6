import test, { type ExecutionContext } from 'ava';
import crypto from 'node:crypto';
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import * as tar from 'tar';
import { CLI, PYTHON, jsonLines, runCli, tempDir as makeTempDir } from './helpers/cli';
import {
  CIFAR,
  cacheDir,
  classCounts,
  imbalance,
  imbalanceCounts,
  isNamedDataset,
  loadCifar,
  loadCifarFolder,
  loadDataset,
  loadTestSet,
  type CifarFormat,
  type Dataset,
} from '../ts/data/index';
import { datasetSpec, isFolder } from '../ts/train/resume';

const SIDE = 32;
const PLANE = SIDE * SIDE;

function tempDir(t: ExecutionContext, prefix = 'torchfocal-cifar-'): string {
  const dir = makeTempDir(prefix);
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

// One generated image: its pixels as a picture, [y][x] → [r, g, b] (how a viewer sees it), and
// its label bytes (CIFAR-100: coarse, then fine).
interface Picture {
  rgb: Uint8Array; // HWC: (y·32 + x)·3 + c
  labels: number[];
}

interface Generated {
  /** file name → bytes, as the official folder holds them */
  files: Map<string, Buffer | string>;
  train: Picture[];
  test: Picture[];
  classNames: string[];
}

// A record as the official description puts it: the label byte(s), then the 1024 red values,
// the 1024 green, the 1024 blue, each plane row by row.
function record(p: Picture): Buffer {
  const out = Buffer.alloc(p.labels.length + 3 * PLANE);
  out.set(p.labels);
  for (let y = 0; y < SIDE; y++) {
    for (let x = 0; x < SIDE; x++) {
      for (let c = 0; c < 3; c++) {
        out[p.labels.length + c * PLANE + y * SIDE + x] = p.rgb[(y * SIDE + x) * 3 + c];
      }
    }
  }
  return out;
}

function picture(format: CifarFormat): Picture {
  return {
    rgb: crypto.randomBytes(PLANE * 3),
    labels: format.labels.map((l) => crypto.randomInt(l.classes)),
  };
}

/** A dataset in the official binary layout: `perFile` random records in each batch file. */
function generate(format: CifarFormat, perFile: number): Generated {
  const files = new Map<string, Buffer | string>();
  const split = (names: string[]) =>
    names.flatMap((name) => {
      const pictures = Array.from({ length: perFile }, () => picture(format));
      files.set(name, Buffer.concat(pictures.map(record)));
      return pictures;
    });
  const train = split(format.train);
  const test = split(format.test);
  const classes = format.labels.at(-1)!.classes;
  const classNames = Array.from({ length: classes }, (_, i) => `class_${i}`);
  // As the official meta files are: one name a line, then blank lines.
  files.set(format.namesFile, classNames.join('\n') + '\n\n\n');
  if (format.name === 'cifar100') {
    const coarse = Array.from({ length: 20 }, (_, i) => `superclass_${i}`);
    files.set('coarse_label_names.txt', coarse.join('\n') + '\n\n');
  }
  return { files, train, test, classNames };
}

function writeFolder(dir: string, files: Map<string, Buffer | string>): string {
  fs.mkdirSync(dir, { recursive: true });
  for (const [name, bytes] of files) fs.writeFileSync(path.join(dir, name), bytes);
  return dir;
}

/** The official archive's layout: `folder/…` in a gzipped tar. */
async function archive(t: ExecutionContext, folder: string, g: Generated): Promise<Buffer> {
  const src = tempDir(t);
  writeFolder(path.join(src, folder), g.files);
  const file = path.join(src, 'archive.tar.gz');
  await tar.c({ gzip: true, file, cwd: src }, [folder]);
  return fs.readFileSync(file);
}

/** `data fetch NAME --cache CACHE --url URL --md5 SUM`, a mirror's fetch. */
function fetchFrom(name: string, cache: string, url: string, sum: string) {
  return runCli(['data', 'fetch', name, '--cache', cache, '--url', url, '--md5', sum]);
}

const md5 = (bytes: Buffer) => crypto.createHash('md5').update(bytes).digest('hex');

// The reader's split against the generated pictures: every byte, read by (c, y, x).
function assertSplit(t: ExecutionContext, ds: Dataset, pictures: Picture[], g: Generated): void {
  t.is(ds.count, pictures.length);
  t.is(ds.channels, 3);
  t.is(ds.height, SIDE);
  t.is(ds.width, SIDE);
  t.deepEqual(ds.classNames, g.classNames);
  t.is(ds.images.length, pictures.length * 3 * PLANE);
  t.deepEqual(
    Array.from(ds.labels),
    pictures.map((p) => p.labels.at(-1)),
    'the class is the last label byte (CIFAR-100: the fine label)',
  );
  let wrong = 0;
  pictures.forEach((p, i) => {
    for (let c = 0; c < 3; c++) {
      for (let y = 0; y < SIDE; y++) {
        for (let x = 0; x < SIDE; x++) {
          const got = ds.images[i * 3 * PLANE + c * PLANE + y * SIDE + x];
          if (got !== p.rgb[(y * SIDE + x) * 3 + c]) wrong++;
        }
      }
    }
  });
  t.is(wrong, 0, 'every pixel at (image, channel, row, column) of planar CHW');
}

interface Server {
  url: (route: string) => string;
  /** requests received, by route */
  hits: Map<string, number>;
  /** resolves when /stall has sent its first bytes */
  stalled: Promise<void>;
}

/**
 * An HTTP server on 127.0.0.1 (a random port) serving `routes`: /moved redirects to
 * /archive.tar.gz, /missing is a 404, /cut promises the whole of /cut's bytes but sends half and
 * closes, /stall sends a first chunk and then nothing.
 */
async function serve(t: ExecutionContext, routes: Record<string, Buffer>): Promise<Server> {
  const hits = new Map<string, number>();
  const open = new Set<http.ServerResponse>();
  let onStall!: () => void;
  const stalled = new Promise<void>((resolve) => (onStall = resolve));
  const server = http.createServer((req, res) => {
    const route = req.url ?? '';
    hits.set(route, (hits.get(route) ?? 0) + 1);
    if (route === '/moved') {
      res.writeHead(301, { location: '/archive.tar.gz' }).end();
      return;
    }
    const body = routes[route];
    if (!body) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
      return;
    }
    res.writeHead(200, {
      'content-type': 'application/x-gzip',
      'content-length': String(body.length),
    });
    if (route === '/cut') {
      res.write(body.subarray(0, body.length >> 1), () => res.destroy());
    } else if (route === '/stall') {
      open.add(res);
      res.write(body.subarray(0, 1000), () => onStall());
    } else {
      res.end(body);
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        for (const res of open) res.destroy();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  const { port } = server.address() as AddressInfo;
  return { url: (route) => `http://127.0.0.1:${port}${route}`, hits, stalled };
}

const total = (s: Server) => [...s.hits.values()].reduce((a, b) => a + b, 0);

// A failed fetch: exit 1, one line on stderr, nothing in the cache.
function assertFailed(
  t: ExecutionContext,
  r: { code: number | null; stderr: string },
  cache: string,
  message: RegExp,
): void {
  t.is(r.code, 1, r.stderr);
  t.regex(r.stderr, /^torchfocal: .*\n$/, 'one line');
  t.regex(r.stderr, message);
  t.deepEqual(fs.existsSync(cache) ? fs.readdirSync(cache) : [], [], 'the cache holds nothing');
}

test('data fetch cifar10: downloads through a redirect, checks the MD5, unpacks; the reader returns the generated bytes; a second fetch asks nothing', async (t) => {
  const g = generate(CIFAR.cifar10, 3);
  const bytes = await archive(t, 'cifar-10-batches-bin', g);
  const server = await serve(t, { '/archive.tar.gz': bytes });
  const cache = path.join(tempDir(t), 'cache'); // made by the fetch
  const args = ['data', 'fetch', 'cifar10', '--cache', cache, '--url', server.url('/moved')];
  const first = await runCli([...args, '--md5', md5(bytes).toUpperCase(), '--json']);
  t.is(first.code, 0, first.stderr);
  t.is(first.stderr, '', 'no bar without a terminal');
  const dir = path.join(cache, 'cifar-10-batches-bin');
  t.deepEqual(jsonLines(first.stdout), [
    {
      dataset: 'cifar10',
      dir,
      downloaded: true,
      bytes: bytes.length,
      train: 15,
      test: 3,
      classes: 10,
    },
  ]);
  t.deepEqual(Object.fromEntries(server.hits), { '/moved': 1, '/archive.tar.gz': 1 });
  t.deepEqual(fs.readdirSync(cache), ['cifar-10-batches-bin'], 'no temporary file left');
  t.deepEqual(fs.readdirSync(dir).sort(), [...g.files.keys()].sort());

  // Both forms of --dataset cifar10:DIR, and the cache itself.
  for (const spec of [`cifar10:${cache}`, `cifar10:${dir}`]) {
    const split = await loadDataset(spec);
    t.is(split.name, 'cifar10');
    t.is(split.train.source, 'cifar10:train');
    t.is(split.test.source, 'cifar10:test');
    assertSplit(t, split.train, g.train, g);
    assertSplit(t, split.test, g.test, g);
    const { test: alone } = await loadTestSet(spec);
    t.deepEqual(alone.images, split.test.images);
  }
  const cached = await loadCifar(CIFAR.cifar10, undefined, { TORCHFOCAL_CACHE: cache });
  assertSplit(t, cached.train, g.train, g);

  const before = total(server);
  const again = await runCli([...args, '--md5', md5(bytes)]);
  t.is(again.code, 0, again.stderr);
  t.is(
    again.stdout,
    `cifar10: already in ${dir} (15 training and 3 test images, 10 classes, checked); not downloaded again\n`,
  );
  t.is(total(server), before, 'the server was not asked again');
});

test('data fetch cifar100: the fine labels, 100 class names; without --json one line', async (t) => {
  const g = generate(CIFAR.cifar100, 7);
  const bytes = await archive(t, 'cifar-100-binary', g);
  const server = await serve(t, { '/archive.tar.gz': bytes });
  const cache = tempDir(t);
  const url = server.url('/archive.tar.gz');
  const r = await fetchFrom('cifar100', cache, url, md5(bytes));
  t.is(r.code, 0, r.stderr);
  const dir = path.join(cache, 'cifar-100-binary');
  t.is(
    r.stdout,
    `cifar100: downloaded ${(bytes.length / 1e6).toFixed(1)} MB of CIFAR-100 (MD5 checked) into ${dir}: 7 training and 7 test images, 100 classes\n`,
  );
  const split = await loadDataset(`cifar100:${cache}`);
  t.is(split.train.source, 'cifar100:train');
  assertSplit(t, split.train, g.train, g);
  assertSplit(t, split.test, g.test, g);
  // The generated coarse labels differ from the fine ones somewhere: the right byte was taken.
  t.true(g.train.some((p) => p.labels[0] !== p.labels[1]));
});

test('data fetch: a wrong MD5, a 404, a transfer cut short, a truncated archive and an archive without the folder each fail in one line and leave the cache empty', async (t) => {
  const g = generate(CIFAR.cifar10, 2);
  const good = await archive(t, 'cifar-10-batches-bin', g);
  const truncated = good.subarray(0, good.length - 200);
  const wrongFolder = await archive(t, 'cifar-10-batches-py', g);
  const server = await serve(t, {
    '/archive.tar.gz': good,
    '/cut': good,
    '/truncated.tar.gz': truncated,
    '/other.tar.gz': wrongFolder,
  });
  const fetch = (cache: string, route: string, sum: string) =>
    fetchFrom('cifar10', cache, server.url(route), sum);
  const cases: [string, string, RegExp][] = [
    ['/archive.tar.gz', '0'.repeat(32), /MD5 [0-9a-f]{32}, expected 0{32} .*nothing was kept/],
    ['/missing.tar.gz', md5(good), /missing\.tar\.gz: HTTP 404 Not Found$/m],
    ['/cut', md5(good), new RegExp(`broke off after ${good.length >> 1} of ${good.length} bytes`)],
    [
      '/truncated.tar.gz',
      md5(truncated),
      /not a valid \.tar\.gz archive \(.*unexpected end of file/,
    ],
    [
      '/other.tar.gz',
      md5(wrongFolder),
      /the archive holds no cifar-10-batches-bin\/ \(it holds cifar-10-batches-py\)/,
    ],
  ];
  for (const [route, sum, message] of cases) {
    const cache = tempDir(t);
    const r = await fetch(cache, route, sum);
    assertFailed(t, r, cache, message);
  }
});

test('data fetch: an archive whose files are damaged is refused by the reader, named as in the archive', async (t) => {
  const g = generate(CIFAR.cifar10, 2);
  g.files.set(
    'data_batch_2.bin',
    Buffer.concat([Buffer.from(g.files.get('data_batch_2.bin')!), Buffer.alloc(7)]),
  );
  const bytes = await archive(t, 'cifar-10-batches-bin', g);
  const server = await serve(t, { '/a.tar.gz': bytes });
  const cache = tempDir(t);
  const r = await fetchFrom('cifar10', cache, server.url('/a.tar.gz'), md5(bytes));
  assertFailed(
    t,
    r,
    cache,
    /unpacked, but cifar-10-batches-bin\/data_batch_2\.bin: 6153 bytes is not a whole number of CIFAR-10 records of 3073 bytes \(2 records and 7 bytes\)/,
  );
});

test('data fetch: an invalid copy in the cache is replaced, with a warning; a dead fetch’s temporary folder is removed', async (t) => {
  const g = generate(CIFAR.cifar10, 1);
  const bytes = await archive(t, 'cifar-10-batches-bin', g);
  const server = await serve(t, { '/a.tar.gz': bytes });
  const cache = tempDir(t);
  const dir = path.join(cache, 'cifar-10-batches-bin');
  writeFolder(dir, new Map([['test_batch.bin', 'x']]));
  // A pid above Linux's largest (2^22): no process has it.
  const abandoned = path.join(cache, '.cifar-10-batches-bin.tmp-9999999-abc');
  writeFolder(abandoned, new Map([['archive.tar.gz', 'partial']]));
  const r = await fetchFrom('cifar10', cache, server.url('/a.tar.gz'), md5(bytes));
  t.is(r.code, 0, r.stderr);
  t.regex(
    r.stderr,
    /^torchfocal: warning: replaced an invalid copy: .*cifar-10-batches-bin: missing data_batch_1\.bin/,
  );
  t.deepEqual(fs.readdirSync(cache), ['cifar-10-batches-bin']);
  assertSplit(t, (await loadCifarFolder(CIFAR.cifar10, dir)).train, g.train, g);
});

test('data fetch: Ctrl-C during the download exits 130 and leaves the cache empty', async (t) => {
  const g = generate(CIFAR.cifar10, 2);
  const bytes = await archive(t, 'cifar-10-batches-bin', g);
  const server = await serve(t, { '/stall': bytes });
  const cache = tempDir(t);
  const child = spawn(
    process.execPath,
    [
      CLI,
      'data',
      'fetch',
      'cifar10',
      '--cache',
      cache,
      '--url',
      server.url('/stall'),
      '--md5',
      md5(bytes),
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((resolve) =>
    child.on('close', (code) => resolve(code)),
  );
  await server.stalled;
  t.is(fs.readdirSync(cache).length, 1, 'the download is under way in its temporary folder');
  child.kill('SIGINT');
  t.is(await exited, 130, stderr);
  t.regex(stderr, /^torchfocal: interrupted: nothing of cifar10 was kept in .*\n$/);
  t.deepEqual(fs.readdirSync(cache), []);
});

test('data fetch: usage errors exit 2', async (t) => {
  const cache = tempDir(t);
  const noUrl = await runCli([
    'data',
    'fetch',
    'cifar10',
    '--cache',
    cache,
    '--md5',
    '0'.repeat(32),
  ]);
  t.is(noUrl.code, 2);
  t.is(
    noUrl.stderr,
    "torchfocal: --md5 needs --url: the official CIFAR-10 archive's MD5 is fixed\n",
  );
  const badSum = await fetchFrom('cifar10', cache, 'http://127.0.0.1:9/a', 'xyz');
  t.is(badSum.code, 2);
  t.regex(badSum.stderr, /^torchfocal: --md5: 'xyz' is not an MD5 sum/);
  const notHttp = await fetchFrom('cifar10', cache, 'file:///etc/passwd', '0'.repeat(32));
  t.is(notHttp.code, 2);
  t.is(notHttp.stderr, "torchfocal: --url: 'file:///etc/passwd' is not an http(s) URL\n");
  const name = await runCli(['data', 'fetch', 'cifar', '--cache', cache]);
  t.is(name.code, 2);
  t.regex(name.stderr, /^torchfocal: .*expected one of cifar10, cifar100, got 'cifar'\n$/);
  t.deepEqual(fs.readdirSync(cache), []);
});

test('cifar reader: a partial record, a missing batch file, a label out of range, a wrong number of class names, a folder of something else', async (t) => {
  const root = tempDir(t);
  const folder = (name: string, change: (files: Map<string, Buffer | string>) => void) => {
    const files: Map<string, Buffer | string> = new Map(generate(CIFAR.cifar10, 2).files);
    change(files);
    return writeFolder(path.join(root, name, 'cifar-10-batches-bin'), files);
  };
  const load = (dir: string) => loadDataset(`cifar10:${dir}`);
  const partial = folder('partial', (f) => f.set('test_batch.bin', Buffer.alloc(3073 * 2 + 100)));
  await t.throwsAsync(load(partial), {
    message: `${partial}/test_batch.bin: 6246 bytes is not a whole number of CIFAR-10 records of 3073 bytes (2 records and 100 bytes): truncated, or not a CIFAR-10 batch`,
  });
  const missing = folder('missing', (f) => f.delete('data_batch_4.bin'));
  await t.throwsAsync(load(path.dirname(missing)), {
    message: `${missing}: missing data_batch_4.bin; a CIFAR-10 folder (cifar-10-batches-bin) holds data_batch_1.bin … data_batch_5.bin, test_batch.bin and batches.meta.txt`,
  });
  const label = folder('label', (f) => {
    const batch = Buffer.from(f.get('data_batch_3.bin')!);
    batch[3073] = 10;
    f.set('data_batch_3.bin', batch);
  });
  await t.throwsAsync(load(label), {
    message: `${label}/data_batch_3.bin: record 1 has label 10, out of range 0..9`,
  });
  const names = folder('names', (f) => f.set('batches.meta.txt', 'cat\n\ndog\n'));
  await t.throwsAsync(load(names), {
    message: `${names}/batches.meta.txt: 2 class names, but CIFAR-10 has 10 (one per line)`,
  });
  const coarse = path.join(root, 'coarse', 'cifar-100-binary');
  const g100 = generate(CIFAR.cifar100, 2);
  const train = Buffer.from(g100.files.get('train.bin')!);
  train[0] = 20;
  writeFolder(coarse, new Map([...g100.files, ['train.bin', train]]));
  await t.throwsAsync(loadDataset(`cifar100:${coarse}`), {
    message: `${coarse}/train.bin: record 0 has coarse label 20, out of range 0..19`,
  });
  const other = writeFolder(path.join(root, 'other'), new Map([['a.png', 'x']]));
  await t.throwsAsync(load(other), {
    message: `${other}: holds neither cifar-10-batches-bin/ nor CIFAR-10's files (data_batch_1.bin … data_batch_5.bin, test_batch.bin and batches.meta.txt)`,
  });
  await t.throwsAsync(load(path.join(root, 'nowhere')), {
    message: `${path.join(root, 'nowhere')}: no such folder (expected one holding cifar-10-batches-bin/)`,
  });
  await t.throwsAsync(loadDataset('cifar10:'), { message: /give a folder after 'cifar10:'/ });
  const empty = tempDir(t);
  await t.throwsAsync(loadCifar(CIFAR.cifar100, undefined, { TORCHFOCAL_CACHE: empty }), {
    message: `cifar100: not downloaded (no ${empty}/cifar-100-binary); run \`torchfocal data fetch cifar100\`, or give --dataset cifar100:DIR`,
  });
});

test('cifar specs: names, not folders; a checkpoint records the folder absolute', (t) => {
  for (const spec of ['cifar10', 'cifar100', 'cifar10:data', 'cifar100:/x']) {
    t.true(isNamedDataset(spec), spec);
    t.false(isFolder(spec), spec);
  }
  t.false(isNamedDataset('cifar1000'));
  t.is(datasetSpec('cifar10'), 'cifar10');
  t.is(datasetSpec('cifar10:data/c'), `cifar10:${path.resolve('data/c')}`);
  t.is(datasetSpec('cifar100:/x/y'), 'cifar100:/x/y');
});

test('cache folder: --cache, else $TORCHFOCAL_CACHE, else $XDG_CACHE_HOME/torchfocal, else ~/.cache/torchfocal', (t) => {
  const env = { TORCHFOCAL_CACHE: '/t/c', XDG_CACHE_HOME: '/x', HOME: '/h' };
  t.is(cacheDir('rel', env), path.resolve('rel'));
  t.is(cacheDir(undefined, env), '/t/c');
  t.is(cacheDir(undefined, { ...env, TORCHFOCAL_CACHE: '' }), '/x/torchfocal');
  t.is(cacheDir(undefined, { XDG_CACHE_HOME: 'relative', HOME: '/h' }), '/h/.cache/torchfocal');
  t.is(cacheDir(undefined, { HOME: '/h' }), '/h/.cache/torchfocal');
});

// A balanced dataset of `perClass` one-pixel RGB images a class, each image's bytes its index.
function balanced(classes: number, perClass: number): Dataset {
  const count = classes * perClass;
  const images = new Uint8Array(count * 3);
  for (let i = 0; i < count; i++) images.set([i & 255, (i >> 8) & 255, i >> 16], i * 3);
  return {
    images,
    labels: Int32Array.from({ length: count }, (_, i) => i % classes),
    count,
    channels: 3,
    height: 1,
    width: 1,
    classNames: Array.from({ length: classes }, (_, c) => String(c)),
    source: 'synthetic',
  };
}

// LDAM-DRW's get_img_num_per_cls for the 'exp' profile, run by Python itself.
function ldamCounts(classes: number, perClass: number, ratio: number): number[] {
  const code = `print([int(${perClass} * (1 / ${ratio}) ** (i / (${classes} - 1.0))) for i in range(${classes})])`;
  return JSON.parse(execFileSync(PYTHON, ['-c', code], { encoding: 'utf8' }));
}

test('imbalance longtail:100 gives the CIFAR-10-LT and CIFAR-100-LT counts of LDAM-DRW', (t) => {
  const ds10 = balanced(10, 5000);
  const lt10 = imbalance(ds10, 'longtail:100', 0);
  const counts10 = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50];
  t.deepEqual(classCounts(lt10), counts10);
  t.deepEqual(counts10, ldamCounts(10, 5000, 100));
  t.is(lt10.count, 12406);
  // Every kept image is the one its index names: whole RGB images were copied.
  let wrong = 0;
  for (let k = 0; k < lt10.count; k++) {
    const i = lt10.images[k * 3] | (lt10.images[k * 3 + 1] << 8) | (lt10.images[k * 3 + 2] << 16);
    if (ds10.labels[i] !== lt10.labels[k]) wrong++;
  }
  t.is(wrong, 0);
  const counts100 = imbalanceCounts('longtail:100', new Array(100).fill(500));
  t.deepEqual(counts100, ldamCounts(100, 500, 100));
  t.is(
    counts100.reduce((a, b) => a + b, 0),
    10847,
  );
  t.is(
    classCounts(imbalance(balanced(100, 500), 'longtail:100', 1)).reduce((a, b) => a + b),
    10847,
  );
  // Where R^(−k/(C−1)) with a rounding slack and LDAM-DRW's (1/R)^(k/(C−1)) part: int() truncates.
  t.deepEqual(imbalanceCounts('longtail:32', new Array(6).fill(500)), ldamCounts(6, 500, 32));
  t.is(imbalanceCounts('longtail:32', new Array(6).fill(500))[2], 124);
});

test('train on CIFAR-10 (cifar10:DIR): ResNet-32 with crop:4,flip and the recipe normalisation; eval of the checkpoint agrees', async (t) => {
  const g = generate(CIFAR.cifar10, 40); // 200 training images, 40 test images
  const dir = writeFolder(path.join(tempDir(t), 'cifar-10-batches-bin'), g.files);
  const out = path.join(tempDir(t), 'run');
  const run = await runCli([
    'train',
    '--dataset',
    `cifar10:${dir}`,
    '--model',
    'resnet32',
    '--width-divisor',
    '8',
    '--epochs',
    '1',
    '--threads',
    '1',
    '--augment',
    'crop:4,flip',
    '--normalize',
    '0.4914,0.4822,0.4465/0.2023,0.1994,0.2010',
    '--out',
    out,
    '--json',
  ]);
  t.is(run.code, 0, run.stderr);
  const config = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8'));
  t.is(config.channels, 3);
  t.is(config.inputSize, 32);
  t.is(config.options.augment, 'crop:4,flip');
  t.deepEqual(config.normalisation.mean, [0.4914, 0.4822, 0.4465]);
  const done = jsonLines(run.stdout).find((e) => e.event === 'done')!;
  const evaluated = await runCli(['eval', '--checkpoint', out, '--json']);
  t.is(evaluated.code, 0, evaluated.stderr);
  t.deepEqual(JSON.parse(evaluated.stdout).confusion, done.eval.confusion);
});
