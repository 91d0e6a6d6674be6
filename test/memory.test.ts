// Running out of memory: a clean error with a code, the epoch kept as interrupted, a checkpoint
// to resume from, and training that goes on with a smaller batch. Real allocation failures: the
// child process caps its own address space (prlimit) a little above what it already uses, then
// asks for a batch that cannot fit.
import test from 'ava';
import path from 'node:path';
import { jsonLines, runCli, runProcess, tempDir } from './helpers/cli';
import { smallIdxFolder } from './helpers/mnist';

const INDEX = path.join(__dirname, '..', 'ts', 'index.js');
const HEADROOM = 128 * 1024 * 1024;

const SCRIPT = `
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const { Trainer, loadMnist, subset, runTraining, ERROR_CODES } = require(process.argv[1]);
const [out, headroom] = [process.argv[2], Number(process.argv[3])];
const vmSize = () => 1024 * Number(/VmSize:\\s+(\\d+)/.exec(fs.readFileSync('/proc/self/status', 'utf8'))[1]);
const failure = async (run) => {
  try { await run(); return null; } catch (e) { return { message: e.message, code: e.code }; }
};
(async () => {
  const m = await loadMnist();
  const first = (ds, n) => subset(ds, Array.from({ length: n }, (_, i) => i));
  const data = { train: first(m.train, 4096), test: first(m.test, 256), name: 'mnist' };
  const t = await Trainer.create({ model: 'lenet', classNames: m.train.classNames, threads: 1, batchSize: 64 });
  await t.setData(data);
  await t.fit(1); // warm: threads, arenas and pools exist before the cap
  const warm = vmSize();
  execFileSync('prlimit', ['--pid', String(process.pid), '--as=' + (warm + headroom) + ':unlimited']);

  // LeNet's activations for 4096 images: over 250 MB, the first layer's output and its sigmoid
  // alone 154 MB
  t.setBatchSizes({ batchSize: 4096 });
  const error = await failure(() => t.fit(1));
  const partial = t.partialEpoch;
  const epochsAfterError = t.epochsDone;
  t.setBatchSizes({ batchSize: 64 });
  const [after] = await t.fit(1);
  t.dispose();

  const spec = { model: 'lenet', threads: 1, epochs: 1, out };
  const runError = await failure(() => runTraining({ ...spec, batchSize: 4096 }, { data }));
  // The cap goes: the resume writes a report, and sharp's threads need address space too.
  execFileSync('prlimit', ['--pid', String(process.pid), '--as=unlimited:unlimited']);
  const saved = JSON.parse(fs.readFileSync(out + '/config.json', 'utf8'));
  const resumed = await runTraining({ ...spec, resume: true, batchSize: 64 }, { data });
  console.log(JSON.stringify({
    warm, error, partial, epochsAfterError, after, outOfMemory: ERROR_CODES.outOfMemory,
    runError, savedPartial: saved.partialEpoch, savedBatch: saved.options.batchSize,
    resumed: resumed.history.map((r) => ({ steps: r.steps, loss: r.loss })),
  }));
})().catch((e) => { console.error(e); process.exit(1); });`;

function runChild(out: string) {
  return runProcess(process.execPath, ['-e', SCRIPT, INDEX, out, String(HEADROOM)]);
}

let warmVmSize = 0;

test.serial(
  'out of memory: a coded error, the epoch kept, training on with a smaller batch',
  async (t) => {
    const out = tempDir();
    const r = await runChild(out);
    t.is(r.code, 0, r.stderr);
    const got = JSON.parse(r.stdout.trim().split('\n').pop()!);
    warmVmSize = got.warm;

    t.is(got.error?.code, got.outOfMemory);
    t.regex(
      got.error.message,
      /^trainEpoch: out of memory at batch size 4096 \(epoch 1, step 1 of 1\): /,
    );
    t.regex(got.error.message, /smaller batch size$/);
    t.false(got.error.message.includes('\n'));
    t.deepEqual([got.partial.epoch, got.partial.step], [1, 0]);
    t.is(got.epochsAfterError, 1);
    t.is(got.after.epoch, 1);
    t.is(got.after.steps, 64);
    t.true(Number.isFinite(got.after.loss));

    // runTraining checkpoints the interrupted epoch; a resume with a smaller batch finishes it.
    t.is(got.runError?.code, got.outOfMemory);
    t.deepEqual([got.savedPartial.epoch, got.savedPartial.step], [0, 0]);
    t.is(got.savedBatch, 4096);
    t.is(got.resumed.length, 1);
    t.is(got.resumed[0].steps, 64);
    t.true(Number.isFinite(got.resumed[0].loss));
  },
);

// The CLI under `ulimit -v`, set from the address space the API child needed plus 2 GiB: AlexNet's
// first convolution over 4,000 images (4.5 GB) cannot fit.
test.serial(
  'the CLI: one line naming the batch size, exit 1, and the resume command',
  async (t) => {
    t.true(warmVmSize > 0, 'the test before measured the address space');
    const { dir } = await smallIdxFolder();
    const out = tempDir();
    const limitKiB = Math.ceil((warmVmSize + 2 * 1024 ** 3) / 1024);
    const args = ['--dataset', dir, '--model', 'alexnet', '--batch-size', '4096', '--epochs', '2'];
    const r = await runCli(['train', ...args, '--threads', '1', '--out', out, '--json'], {
      shell: `ulimit -v ${limitKiB}; exec "$@"`,
    });
    t.is(r.code, 1, r.stderr);
    t.is(r.signal, null);
    const lines = r.stderr.trim().split('\n');
    t.is(lines.length, 1, r.stderr);
    t.regex(lines[0], /out of memory at batch size 4096 \(epoch 0, step 1 of 1\)/);
    t.true(
      lines[0].endsWith(
        `continue with node dist/ts/cli/main.js train --out ${out} --resume --epochs 2 --batch-size 2048`,
      ),
      lines[0],
    );
    t.deepEqual(jsonLines(r.stdout), []);
  },
);
