// `npm run soak`: many short epochs in one process, the resident memory sampled after each.
// Fails when memory after the last epoch exceeds memory after the warm-up by more than 5%.
// Each epoch goes through the whole surface a long run uses: train, evaluate, checkpoint, predict.
// Run under --expose-gc: a full collection before each sample measures what is retained, not
// how lazily V8 collects (without it RSS climbs ~0.5 MiB an epoch and then levels off).
//   node --expose-gc dist/test/soak/run.js [--epochs 50] [--warmup 5] [--model mlp] [--json]
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { loadMnist, subset, Trainer } from '../../ts/index';

export interface SoakReport {
  model: string;
  epochs: number;
  warmup: number;
  /** resident set size after each epoch, MiB */
  rssMiB: number[];
  /** least-squares slope of RSS over the epochs after warm-up, KiB per epoch */
  slopeKiBPerEpoch: number;
  /** RSS after the last epoch over RSS after the warm-up */
  growth: number;
  passed: boolean;
}

export async function soak(model: string, epochs: number, warmup: number): Promise<SoakReport> {
  const mnist = await loadMnist();
  const pick = (n: number, of: number) =>
    Array.from({ length: n }, (_, i) => Math.floor((i * of) / n));
  const train = subset(mnist.train, pick(2000, mnist.train.count));
  const test = subset(mnist.test, pick(500, mnist.test.count));
  const one = subset(mnist.test, [0]);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'torchfocal-soak-'));
  const trainer = await Trainer.create({ model, classNames: train.classNames, threads: 1 });
  const rss: number[] = [];
  try {
    await trainer.setData({ train, test });
    for await (const _ of trainer.epochs(epochs)) {
      await trainer.save(dir);
      await trainer.predict(one.images, one);
      globalThis.gc?.();
      rss.push(process.memoryUsage().rss / 2 ** 20);
    }
  } finally {
    trainer.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const tail = rss.slice(warmup - 1);
  const xs = tail.map((_, i) => i);
  const mx = xs.reduce((a, b) => a + b, 0) / xs.length;
  const my = tail.reduce((a, b) => a + b, 0) / tail.length;
  const slope =
    xs.reduce((s, x, i) => s + (x - mx) * (tail[i] - my), 0) /
    Math.max(
      1e-12,
      xs.reduce((s, x) => s + (x - mx) ** 2, 0),
    );
  const growth = rss[rss.length - 1] / rss[warmup - 1];
  return {
    model,
    epochs,
    warmup,
    rssMiB: rss.map((r) => Math.round(r * 10) / 10),
    slopeKiBPerEpoch: Math.round(slope * 1024 * 10) / 10,
    growth: Math.round(growth * 10000) / 10000,
    passed: growth <= 1.05,
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      epochs: { type: 'string', default: '50' },
      warmup: { type: 'string', default: '5' },
      model: { type: 'string', default: 'mlp' },
      json: { type: 'boolean', default: false },
    },
  });
  const epochs = Number(values.epochs);
  const warmup = Number(values.warmup);
  if (!(
    Number.isSafeInteger(warmup) &&
    warmup >= 1 &&
    Number.isSafeInteger(epochs) &&
    epochs > warmup
  )) {
    throw new Error('--epochs must exceed --warmup, both integers >= 1');
  }
  if (!globalThis.gc) throw new Error('run under node --expose-gc (npm run soak does)');
  const r = await soak(values.model!, epochs, warmup);
  if (values.json) console.log(JSON.stringify(r));
  else {
    console.log(
      `${r.model}, ${r.epochs} epochs (train, evaluate, checkpoint, predict each): RSS ` +
        `${r.rssMiB[r.warmup - 1]} MiB after epoch ${r.warmup}, ${r.rssMiB[r.epochs - 1]} MiB after epoch ${r.epochs} ` +
        `(×${r.growth}), slope ${r.slopeKiBPerEpoch} KiB/epoch: ${r.passed ? 'passed' : 'FAILED (> 5% growth)'}`,
    );
  }
  if (!r.passed) process.exitCode = 1;
}

if (require.main === module) {
  main().catch((err: unknown) => {
    process.stderr.write(`soak: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 2;
  });
}
