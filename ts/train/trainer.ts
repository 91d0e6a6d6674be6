// The public Trainer: one native model + optimizer + device data, driven epoch by epoch.
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import writeFileAtomic from 'write-file-atomic';
import {
  call,
  ERROR_CODES,
  hasErrorCode,
  native,
  type NativeOnnxGraph,
  type NativeProgress,
  type NativeTensor,
  type NativeTrainer,
  type PartialEpoch,
} from '../native';
import type { Dataset } from '../data/dataset';
import {
  decodeSafetensors,
  readSafetensors,
  writeSafetensors,
  type SafetensorsFile,
} from '../io/safetensors';
import { toEvaluation, type Evaluation } from './evaluation';
import type { ValidationFigures } from './selection';
import { classCounts } from '../data/dataset';
import { positiveInt, resolveOptions, type ResolvedOptions, type TrainerOptions } from './options';
import {
  CHECKPOINT_FILES,
  channelNormalisation,
  CHECKPOINT_VERSION,
  commitCheckpoint,
  openCheckpoint,
  readCheckpointConfig,
  type CheckpointConfig,
  type OpenCheckpoint,
} from './checkpoint';
import { withRunLock } from './run-lock';

export {
  CHECKPOINT_FILES,
  openCheckpoint,
  readCheckpointConfig,
  type CheckpointConfig,
  type OpenCheckpoint,
};

export interface EpochResult {
  epoch: number;
  loss: number;
  trainAcc: number;
  /** accuracy on the test set after this epoch, when one is set */
  testAcc?: number;
  /** training time of the epoch, evaluation excluded */
  seconds: number;
  steps: number;
  /** steps skipped for a non-finite loss (onNan: 'skip'), when there were any */
  skippedSteps?: number;
  eval?: Evaluation;
  /** the validation set's figures after this epoch, when one is set */
  val?: ValidationFigures;
}

export type Progress = NativeProgress;

export interface FitOptions {
  onEpoch?: (result: EpochResult) => void | Promise<void>;
  onProgress?: (progress: Progress) => void;
  /** aborting stops the native loop before its next step and rejects with an AbortError */
  signal?: AbortSignal;
  /**
   * evaluate the test set after every N-th epoch (counted from the first epoch ever trained)
   * and after the last epoch of this call; 1 (default) evaluates after each
   */
  evalEvery?: number;
}

export interface Prediction {
  class: number;
  name: string;
  probability: number;
  probabilities: number[];
  /** the `top` most probable classes, best first (ties: lower class first), when asked for */
  top?: { class: number; name: string; probability: number }[];
}

/** Where a run's starting weights came from (`Trainer.loadWeights`); checkpoints keep it. */
export interface InitFrom {
  /** absolute path of the safetensors file */
  file: string;
  sha256: string;
  partial: boolean;
  /** partial: the tensors whose shape differs, left as the trainer had them (initialised) */
  reinitialised: { name: string; fileShape: number[]; modelShape: number[] }[];
}

export class Trainer {
  /** @internal */
  readonly handle: NativeTrainer;
  #options: ResolvedOptions;
  readonly history: EpochResult[] = [];
  /** training images per class, once training data is set (evaluations then carry shots) */
  trainCounts?: number[];
  /** set by loadWeights (and by load, from the checkpoint) */
  initFrom?: InitFrom;
  #disposed = false;

  private constructor(handle: NativeTrainer, options: ResolvedOptions) {
    this.handle = handle;
    this.#options = options;
  }

  /** The options the trainer was built with (batch sizes as last set). */
  get options(): ResolvedOptions {
    return this.#options;
  }

  /**
   * Builds the network (seeded) and its optimizer natively, off the JS thread. `statistics`
   * (internal: `load`) are the figures a 'dataset' normalisation computed when it was trained.
   */
  static async create(
    options: TrainerOptions,
    statistics?: { mean: number[]; std: number[] },
  ): Promise<Trainer> {
    const o = resolveOptions(options);
    const normalize = o.normalize === 'dataset' && statistics ? statistics : o.normalize;
    const handle = new (native().NativeTrainer)({
      model: o.model,
      numClasses: o.classNames.length,
      widthDivisor: o.widthDivisor,
      channels: o.channels,
      inputSize: o.inputSize,
      augment: o.augment,
      freezeBackbone: o.freezeBackbone,
      ...(typeof normalize === 'string'
        ? { normalize }
        : { normalize: 'fixed', normalizeMean: normalize.mean, normalizeStd: normalize.std }),
      batchSize: o.batchSize,
      evalBatchSize: o.evalBatchSize,
      syncBn: o.syncBn,
      ...(o.distributed && {
        distributed: {
          worldSize: o.distributed.worldSize,
          rank: o.distributed.rank,
          masterAddr: o.distributed.store.host,
          masterPort: o.distributed.store.port,
          timeoutSeconds: o.distributed.timeoutSeconds ?? 60,
          bucketBytes: o.distributed.bucketBytes,
          runDescription: o.distributed.runDescription,
        },
      }),
      optimizer: o.optimizer,
      lr: o.lr,
      momentum: o.momentum,
      nesterov: o.nesterov,
      weightDecay: o.weightDecay,
      clipGradNorm: o.clipGradNorm,
      warmupEpochs: o.warmupEpochs,
      lrSchedule: o.lrSchedule,
      scheduleEpochs: o.scheduleEpochs,
      loss: o.loss,
      alpha: o.alpha === 'auto' ? [] : o.alpha,
      alphaMode: o.alpha === 'auto' ? 'auto' : undefined,
      alphaNormalize: o.alphaNormalize,
      gamma: o.gamma,
      labelSmoothing: o.labelSmoothing,
      beta: o.beta,
      tau: o.tau,
      drwEpoch: o.drw ?? -1,
      seed: o.seed,
      threads: o.threads,
      device: o.device,
      progressEvery: o.progressEvery,
      sampler: o.sampler,
      memoryFormat: o.memoryFormat,
      amp: o.amp,
      cudaGraph: o.cudaGraph,
      onNan: o.onNan,
    });
    await call(() => handle.init());
    return new Trainer(handle, o);
  }

  /** Square input side of the network; images are resized to it on the device. */
  get inputSize(): number {
    return this.handle.info().inputSize ?? 0;
  }

  get device(): string {
    return this.handle.info().device ?? 'cpu';
  }

  /**
   * The per-channel mean and std images are normalised with (after scaling to [0, 1]); none
   * (undefined) for 'none', and for 'dataset' until training data is set.
   */
  get normalisation(): { mean: number[]; std: number[] } | undefined {
    const { mean, std } = this.handle.info();
    return mean && std ? { mean, std } : undefined;
  }

  get epochsDone(): number {
    return this.handle.info().epochsDone ?? 0;
  }

  /** Where an aborted epoch stopped (the next epoch call continues it), if one did. */
  get partialEpoch(): PartialEpoch | undefined {
    return this.handle.info().partialEpoch;
  }

  /**
   * Changes the training and evaluation batch sizes between epochs: after an out-of-memory
   * error, say, which leaves the epoch interrupted at its step. An interrupted epoch continues
   * at the same sample, so the samples it has done must be a multiple of the new batch size.
   */
  setBatchSizes(sizes: { batchSize?: number; evalBatchSize?: number }): void {
    const next = { ...this.#options, ...definedOnly(sizes) };
    positiveInt('batchSize', next.batchSize);
    positiveInt('evalBatchSize', next.evalBatchSize);
    this.handle.setBatchSizes({ batchSize: next.batchSize, evalBatchSize: next.evalBatchSize });
    this.#options = next;
  }

  /**
   * Copies the data to the training device once; batches are then cut there by index. A
   * validation set is evaluated after every epoch (EpochResult.val), with the training loss.
   */
  async setData(data: { train?: Dataset; test?: Dataset; val?: Dataset }): Promise<void> {
    for (const split of ['train', 'test', 'val'] as const) {
      const ds = data[split];
      if (!ds) continue;
      if (ds.classNames.length !== this.options.classNames.length) {
        throw new Error(
          `${split} data has ${ds.classNames.length} classes but the trainer was built for ${this.options.classNames.length}`,
        );
      }
      if (ds.channels !== this.options.channels) {
        throw new Error(
          `${split} data has ${ds.channels} channel(s) but the trainer was built for ${this.options.channels}`,
        );
      }
      const { count, channels, height, width } = ds;
      await call(() =>
        this.handle.setData(split, ds.images, ds.labels, { count, channels, height, width }),
      );
      if (split === 'train') this.trainCounts = classCounts(ds);
    }
  }

  /** Training-set count per class, as the engine sees it. */
  classCounts(): number[] {
    return this.handle.classCounts();
  }

  /** Trains `count` more epochs, yielding each result as it completes. */
  async *epochs(
    count: number,
    options: Omit<FitOptions, 'onEpoch'> = {},
  ): AsyncGenerator<EpochResult> {
    if (!Number.isSafeInteger(count) || count < 0) {
      throw new Error(`epochs: expected an integer >= 0, got ${count}`);
    }
    const { signal, onProgress } = options;
    const evalEvery = options.evalEvery ?? 1;
    if (!Number.isSafeInteger(evalEvery) || evalEvery < 1) {
      throw new Error(`evalEvery: expected an integer >= 1, got ${evalEvery}`);
    }
    const abort = () => this.handle.cancel();
    signal?.addEventListener('abort', abort);
    // A distributed rank never stops on its own between epochs: the others would wait for it in
    // their next collective. An abort goes into the epoch, and all ranks stop after its first step.
    const distributed = this.options.distributed !== null;
    try {
      for (let i = 0; i < count; i++) {
        if (signal?.aborted && !distributed) throw abortError(signal);
        let native;
        try {
          const epoch = this.epochsDone;
          const evaluate = (epoch + 1) % evalEvery === 0 || i === count - 1;
          native = await call(() => {
            const running = this.handle.trainEpoch(onProgress, evaluate);
            if (signal?.aborted) this.handle.cancel(); // trainEpoch cleared the flag
            return running;
          });
        } catch (err) {
          // Stopped by our signal, or, distributed, by another rank's: an interruption either way.
          if (signal?.aborted || hasErrorCode(err, ERROR_CODES.cancelled)) throw abortError(signal);
          throw err;
        }
        const result: EpochResult = {
          epoch: native.epoch,
          loss: native.loss,
          trainAcc: native.trainAcc,
          seconds: native.seconds,
          steps: native.steps,
          ...(native.skippedSteps > 0 && { skippedSteps: native.skippedSteps }),
        };
        if (native.test) {
          result.testAcc = native.test.accuracy;
          result.eval = toEvaluation(native.test, this.options.classNames, this.trainCounts);
        }
        if (native.val) result.val = validationFigures(native.val);
        this.history.push(result);
        yield result;
      }
    } finally {
      signal?.removeEventListener('abort', abort);
    }
  }

  /** Trains `count` more epochs; resolves with their results. */
  async fit(count: number, options: FitOptions = {}): Promise<EpochResult[]> {
    const results: EpochResult[] = [];
    for await (const r of this.epochs(count, options)) {
      results.push(r);
      await options.onEpoch?.(r);
    }
    return results;
  }

  /**
   * Evaluates the test set: accuracy, balanced accuracy, macro-F1, per class, confusion.
   * Aborting `signal` stops it before its next batch and rejects with an AbortError.
   */
  async evaluate(options: { topK?: number; signal?: AbortSignal } = {}): Promise<Evaluation> {
    const m = await this.cancellable(options.signal, () => this.handle.evaluate());
    return toEvaluation(m, this.options.classNames, this.trainCounts, options.topK);
  }

  /** A native evaluation that polls the cancel flag, cancelled when `signal` aborts. */
  private async cancellable<T>(
    signal: AbortSignal | undefined,
    start: () => Promise<T>,
  ): Promise<T> {
    if (signal?.aborted) throw abortError(signal, 'evaluation');
    const abort = () => this.handle.cancel();
    signal?.addEventListener('abort', abort);
    try {
      return await call(() => {
        const running = start();
        if (signal?.aborted) this.handle.cancel(); // aborted while it started: it cleared the flag
        return running;
      });
    } catch (err) {
      if (hasErrorCode(err, ERROR_CODES.cancelled)) throw abortError(signal, 'evaluation');
      throw err;
    } finally {
      signal?.removeEventListener('abort', abort);
    }
  }

  /** The weights and buffers with PyTorch's state_dict names, on the CPU (a copy). */
  async stateDict(): Promise<NativeTensor[]> {
    return call(() => this.handle.stateDict());
  }

  /** Replaces the weights by `state` (names, shapes and dtypes checked before any copy). */
  async loadStateDict(state: NativeTensor[]): Promise<void> {
    await call(() => this.handle.loadStateDict(state));
  }

  /** The weights of the checkpoint in `dir` (verified against its manifest). */
  static async readWeights(dir: string): Promise<NativeTensor[]> {
    const { paths, contents } = await openCheckpoint(dir);
    return (await readVerified(paths.weights, contents?.weights)).tensors;
  }

  /** Evaluates the validation set: its EVAL and the training loss's mean over it. */
  async evaluateValidation(
    options: { signal?: AbortSignal } = {},
  ): Promise<Evaluation & { loss: number }> {
    const m = await this.cancellable(options.signal, () => this.handle.evaluate('val'));
    return { ...toEvaluation(m, this.options.classNames, this.trainCounts), loss: m.loss };
  }

  /**
   * Class probabilities for a stack of uint8 images, count × channels × height × width
   * (`shape.channels` defaults to the trainer's); `options.top` adds each image's most probable
   * classes.
   */
  async predict(
    images: Uint8Array,
    shape: { count: number; height: number; width: number; channels?: number },
    options: { top?: number } = {},
  ): Promise<Prediction[]> {
    const { count, height, width } = shape;
    const channels = shape.channels ?? this.options.channels;
    const probs = await call(() => this.handle.predict(images, { count, channels, height, width }));
    const c = this.options.classNames.length;
    const out: Prediction[] = [];
    for (let i = 0; i < count; i++) {
      const p = Array.from(probs.subarray(i * c, (i + 1) * c));
      const best = p.indexOf(Math.max(...p));
      // NaN probabilities (weights gone non-finite) have no most probable class: never print one.
      if (best < 0 || !p.every(Number.isFinite)) {
        throw new Error(
          `predict: image ${i} has non-finite class probabilities (the model's weights are not finite)`,
        );
      }
      const names = this.options.classNames;
      out.push({
        class: best,
        name: names[best],
        probability: p[best],
        probabilities: p,
        ...(options.top !== undefined && {
          top: p
            .map((probability, k) => ({ class: k, name: names[k], probability }))
            .sort((a, b) => b.probability - a.probability || a.class - b.class)
            .slice(0, options.top),
        }),
      });
    }
    return out;
  }

  /**
   * The network's logits for `count` inputs of `channels` × inputSize × inputSize floats
   * (N×C×S×S order), taken as they are: no scaling to [0, 1], resizing or normalisation. What
   * an exported model computes after its normalisation.
   */
  async logits(inputs: Float32Array, count: number, channels: number): Promise<Float32Array> {
    return call(() => this.handle.logits(inputs, count, channels, this.inputSize));
  }

  /** @internal The network as ONNX operators and weights (ts/export/onnx.ts encodes it). */
  async exportGraph(): Promise<NativeOnnxGraph> {
    return call(() => this.handle.exportGraph());
  }

  /**
   * Loads weights saved elsewhere (a PyTorch state_dict as safetensors, float32/64/16 or bf16),
   * optimizer state left fresh. Strict by default: the file must hold exactly the model's
   * tensors, same names and shapes, or it throws one line naming the file and listing the
   * missing, unexpected and mismatched tensors. `partial`: tensors whose shape differs (a new
   * classifier head) keep the trainer's values (a new trainer's seeded initialisation) and are
   * reported; missing and unexpected names stay errors (they mean another network).
   */
  async loadWeights(
    file: string,
    options: { partial?: boolean } = {},
  ): Promise<InitFrom & { loaded: string[] }> {
    const buf = await fs.readFile(file);
    const partial = options.partial ?? false;
    let report;
    try {
      const { tensors } = decodeSafetensors(buf, file);
      report = await call(() => this.handle.loadWeights(tensors, partial));
    } catch (err) {
      const message = (err as Error).message.replace(/^loadWeights: /, '');
      throw new Error(message.startsWith(`${file}: `) ? message : `${file}: ${message}`);
    }
    const sha256 = createHash('sha256').update(buf).digest('hex');
    this.initFrom = {
      file: path.resolve(file),
      sha256,
      partial,
      reinitialised: report.reinitialised,
    };
    return { ...this.initFrom, loaded: report.loaded };
  }

  /**
   * Writes a checkpoint directory: weights (safetensors, PyTorch's names), optimizer state,
   * metrics.jsonl and config.json with their sizes and checksums; the previous checkpoint stays
   * beside it until the next one (ts/train/checkpoint.ts says how a commit survives a crash).
   * The write holds the folder's run lock: a folder another process trains into is refused.
   */
  async save(dir: string, data?: Record<string, unknown>): Promise<void> {
    const state = await call(() => this.handle.stateDict());
    const trainState = await call(() => this.handle.trainState());
    const partialEpoch = this.partialEpoch; // one native info() call, not two
    const metrics = this.history
      .map((r) => JSON.stringify({ event: 'epoch', ...r }) + '\n')
      .join('');
    const config = {
      format: 'torchfocal-checkpoint' as const,
      version: CHECKPOINT_VERSION,
      options: this.options,
      inputSize: this.inputSize,
      channels: this.options.channels,
      normalisation: {
        scale: 1 / 255,
        ...(this.normalisation ?? {
          mean: new Array<number>(this.options.channels).fill(0),
          std: new Array<number>(this.options.channels).fill(1),
        }),
        resize: 'bilinear' as const,
      },
      epochsDone: this.epochsDone,
      ...(partialEpoch && { partialEpoch }),
      ...(this.initFrom && { initFrom: this.initFrom }),
      data,
    };
    await withRunLock(dir, () =>
      commitCheckpoint(dir, config, async (file, to) => {
        if (file === 'weights') {
          await writeSafetensors(to, state, { format: 'pt', model: this.options.model });
        } else if (file === 'state') {
          await writeSafetensors(to, trainState, { format: 'torchfocal-train-state' });
        } else {
          await writeFileAtomic(to, metrics);
        }
      }),
    );
  }

  /**
   * Rebuilds a trainer from a checkpoint directory alone (or one already opened with
   * `openCheckpoint`, not verified twice): weights, optimizer state, dropout stream, epoch count
   * and history. When the newest checkpoint is damaged the previous one is loaded and
   * `onWarning` (default: process.emitWarning) says so.
   */
  static async load(
    source: string | OpenCheckpoint,
    overrides: Pick<
      TrainerOptions,
      'threads' | 'device' | 'evalBatchSize' | 'distributed' | 'cudaGraph'
    > = {},
    onWarning: (message: string) => void = (m) => process.emitWarning(m, 'TorchfocalWarning'),
  ): Promise<Trainer> {
    const opened = typeof source === 'string' ? await openCheckpoint(source) : source;
    const { dir, config, paths, warning, contents } = opened;
    if (warning) onWarning(warning);
    const trainer = await Trainer.create(
      {
        ...config.options,
        ...definedOnly(overrides),
        // a distributed run's rendezvous belongs to that launch, never to the checkpoint
        distributed: overrides.distributed,
      },
      // 'dataset' figures as computed in training: eval and predict have no training set
      config.options.normalize === 'dataset'
        ? channelNormalisation(config, config.options.channels ?? 1)
        : undefined,
    );
    try {
      // the verified bytes: a live writer may have replaced the files since
      const weights = await readVerified(paths.weights, contents?.weights);
      await call(() => trainer.handle.loadStateDict(weights.tensors));
      if (contents?.state || (await exists(paths.state))) {
        const state = await readVerified(paths.state, contents?.state);
        await call(() => trainer.handle.loadTrainState(state.tensors));
      }
      trainer.handle.setEpochsDone(config.epochsDone);
      trainer.initFrom = (config as { initFrom?: InitFrom }).initFrom;
      if (config.partialEpoch) trainer.handle.setPartialEpoch(config.partialEpoch);
      if (contents?.metrics || (await exists(paths.metrics)))
        trainer.history.push(...(await readHistory(paths.metrics, contents?.metrics)));
      // runTraining records the training counts: evaluations of the loaded model carry shots
      const counts = config.data?.trainCounts;
      if (
        Array.isArray(counts) &&
        counts.length === config.options.classNames.length &&
        counts.every((n) => Number.isSafeInteger(n) && n >= 0)
      ) {
        trainer.trainCounts = counts as number[];
      }
    } catch (err) {
      trainer.dispose();
      throw new Error(`${dir}: ${(err as Error).message}`);
    }
    return trainer;
  }

  /** Frees the model, optimizer and device data now. Safe to call twice. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.handle.dispose();
  }
}

function validationFigures(m: ValidationFigures): ValidationFigures {
  const { loss, accuracy, balancedAccuracy, macroF1 } = m;
  return { loss, accuracy, balancedAccuracy, macroF1 };
}

/** metrics.jsonl back into epoch results. */
async function readHistory(file: string, bytes?: Buffer): Promise<EpochResult[]> {
  const text = bytes ? bytes.toString('utf8') : await fs.readFile(file, 'utf8');
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  return lines.map((line, i) => {
    let r: EpochResult & { event?: string };
    try {
      r = JSON.parse(line) as EpochResult & { event?: string };
    } catch {
      throw new Error(`${file}: line ${i + 1} is not JSON`);
    }
    if (!Number.isSafeInteger(r.epoch) || typeof r.loss !== 'number') {
      throw new Error(`${file}: line ${i + 1} is not an epoch record`);
    }
    delete r.event;
    return r;
  });
}

/** A safetensors file from the bytes a checkpoint was verified with, else from disk. */
async function readVerified(file: string, bytes?: Buffer): Promise<SafetensorsFile> {
  return bytes ? decodeSafetensors(bytes, file) : readSafetensors(file);
}

function abortError(signal: AbortSignal | undefined, what = 'training'): Error {
  const err = new Error(`${what} was aborted`, { cause: signal?.reason });
  err.name = 'AbortError';
  return err;
}

async function exists(file: string): Promise<boolean> {
  return fs.access(file).then(
    () => true,
    () => false,
  );
}

function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
