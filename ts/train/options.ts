// Trainer options: defaults of the original experiment and the checks that name what is wrong.
import { invalidArgument, native } from '../native';

/** torch.optim's Adam (L2 weight decay), AdamW (decoupled weight decay) and SGD. */
export const OPTIMIZERS = ['adam', 'adamw', 'sgd'] as const;
export type OptimizerName = (typeof OPTIMIZERS)[number];

/** What an epoch visits: every image once (shuffled), or a class-aware draw with replacement. */
export const SAMPLERS = ['instance', 'class-balanced', 'sqrt'] as const;
export type SamplerName = (typeof SAMPLERS)[number];

export const MEMORY_FORMATS = ['auto', 'contiguous', 'channels-last'] as const;

/** Mixed precision: 'bf16' (CPU or CUDA) or 'fp16' (CUDA, with a dynamic loss scaler). */
export const AMP_MODES = ['off', 'bf16', 'fp16'] as const;
export type AmpMode = (typeof AMP_MODES)[number];
export type MemoryFormat = (typeof MEMORY_FORMATS)[number];

/**
 * The evaluation batch when none is given: 128 on the CPU, where each of two threads takes a
 * slice of 64 (larger slices spill the caches: bench/NOTES.md §17, §21) and where a signal is
 * heard between batches; 1000 on a GPU.
 */
export function defaultEvalBatchSize(device: string): number {
  const gpu =
    device.startsWith('cuda') || (device === 'auto' && native().runtimeInfo().cudaAvailable);
  return gpu ? 1000 : 128;
}

/**
 * Per-channel normalisation after pixels are scaled to [0, 1], as torchvision's Normalize:
 * 'none' (the original experiment), 'dataset' (the training set's mean and std, computed on the
 * device once), 'imagenet' (torchvision's ImageNet figures, for its pretrained backbones), or
 * explicit figures (one for every channel, or one per channel), as {mean, std} or as the
 * command line spells them, 'M1,M2,M3/S1,S2,S3'.
 */
export type Normalize =
  'none' | 'dataset' | 'imagenet' | `${string}/${string}` | { mean: number[]; std: number[] };
/** Normalize as a trainer holds it: 'imagenet' and single figures spelled out per channel. */
export type ResolvedNormalize = 'none' | 'dataset' | { mean: number[]; std: number[] };

/** torchvision's ImageNet mean and std (R, G, B), which its pretrained weights expect. */
export const IMAGENET_NORMALIZE = { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };

/** `normalize` checked and spelled out for `channels` channels. */
export function resolveNormalize(given: Normalize, channels: number): ResolvedNormalize {
  const n = typeof given === 'string' && given.includes('/') ? parseFigures(given) : given;
  if (n === 'none' || n === 'dataset') return n;
  if (n === 'imagenet') {
    if (channels !== 3) {
      throw invalidArgument(
        `normalize: 'imagenet' is for RGB images; these have ${channels} channel`,
      );
    }
    return { mean: [...IMAGENET_NORMALIZE.mean], std: [...IMAGENET_NORMALIZE.std] };
  }
  if (typeof n !== 'object' || n === null || !Array.isArray(n.mean) || !Array.isArray(n.std)) {
    throw invalidArgument(
      `normalize: expected 'none', 'dataset', 'imagenet' or {mean, std}, got ${describe(n)}`,
    );
  }
  const spread = (values: number[], name: string): number[] => {
    if (values.length !== 1 && values.length !== channels) {
      throw invalidArgument(
        `normalize: ${values.length} ${name} values for ${channels} channel(s) (give one, or one per channel)`,
      );
    }
    return values.length === 1 ? new Array<number>(channels).fill(values[0]) : [...values];
  };
  const mean = spread(n.mean, 'mean');
  const std = spread(n.std, 'std');
  if (!mean.every(Number.isFinite) || !std.every((v) => Number.isFinite(v) && v > 0)) {
    throw invalidArgument('normalize: every mean must be a finite number and every std > 0');
  }
  return { mean, std };
}

// 'M1,M2,M3/S1,S2,S3' as numbers; resolveNormalize checks their count and range.
function parseFigures(spec: string): { mean: number[]; std: number[] } {
  const [mean, std, extra] = spec.split('/');
  const numbers = (list: string) =>
    list.split(',').map((part) => {
      const v = part.trim() === '' ? NaN : Number(part);
      if (!Number.isFinite(v)) {
        throw invalidArgument(`normalize: '${part}' in '${spec}' is not a number (MEAN,…/STD,…)`);
      }
      return v;
    });
  if (extra !== undefined) throw invalidArgument(`normalize: '${spec}' has more than one '/'`);
  return { mean: numbers(mean), std: numbers(std) };
}

/** An augment spec checked by the engine's own parser, in its canonical form ('crop:4,flip'). */
export function augmentSpec(spec: unknown): string {
  if (typeof spec !== 'string') {
    throw invalidArgument(
      `augment: expected a string such as 'crop:4,flip', got ${describe(spec)}`,
    );
  }
  if (spec === 'none' || spec === '') return 'none'; // the default needs no parser
  try {
    return native().augmentSpec(spec);
  } catch (err) {
    throw invalidArgument((err as Error).message);
  }
}

export const ALPHA_NORMALIZE = ['mean', 'weights'] as const;
export type AlphaNormalize = (typeof ALPHA_NORMALIZE)[number];

/**
 * CUDA graphs: 'auto' captures the whole train step once and replays it on CUDA (one process);
 * 'on' makes anything else an error; 'off' runs the same sync-free step uncaptured.
 */
/**
 * The learning rate over a run, changed every step: 'constant'; 'onecycle' (PyTorch's OneCycleLR
 * with its defaults, rate only: up from lr/25 to lr over the first 30% of the steps, then down to
 * lr/25e4, both halves cosine); 'cosine' (PyTorch's CosineAnnealingLR from lr to 0).
 */
export const LR_SCHEDULES = ['constant', 'onecycle', 'cosine'] as const;
export type LrScheduleName = (typeof LR_SCHEDULES)[number];

export const CUDA_GRAPH_MODES = ['auto', 'on', 'off'] as const;
export type CudaGraphMode = (typeof CUDA_GRAPH_MODES)[number];

/** One rank of a data-parallel run (c10d: Gloo on the CPU, NCCL on CUDA). */
export interface DistributedOptions {
  worldSize: number;
  rank: number;
  /** the TCPStore rank 0 hosts: torchrun's MASTER_ADDR and MASTER_PORT */
  store: { host: string; port: number };
  /** a rank that has not joined, or a collective not done, after this long is an error (60) */
  timeoutSeconds?: number;
  /**
   * gradients are summed over ranks in buckets of about this many bytes, each as soon as
   * backward has produced it (DDP's bucket_cap_mb; default 25 MiB)
   */
  bucketBytes?: number;
  /** run-level values every rank must share (`epochs=5\n`), checked at start with the rest */
  runDescription?: string;
}

export interface TrainerOptions {
  /**
   * zoo network: mlp, lenet, alexnet, vgg, googlenet, resnet, resnet32, or torchvision's
   * resnet18, resnet34, resnet50 (default lenet)
   */
  model?: string;
  /** class names, index = label; their count sets the network's outputs */
  classNames: string[];
  /** VGG and the ResNets: divide the channel widths by this (default 1) */
  widthDivisor?: number;
  /** the images' channels, 1 (grey, default) or 3 (RGB): the first layer is built for them */
  channels?: 1 | 3;
  /** the side images are resized to on the device (default 0: the model's own, 28…224) */
  inputSize?: number;
  /** per-channel normalisation after scaling to [0, 1] (default 'none'; see Normalize) */
  normalize?: Normalize;
  /**
   * training batches' augmentation, on the device, with torchvision's semantics (default
   * 'none'): 'crop:PAD' (RandomCrop with zero padding), 'flip' (horizontal, p = 0.5),
   * 'rrc:SCALE_MIN' (RandomResizedCrop to the input size), 'jitter:B,C,S' (ColorJitter); combine
   * them with commas: 'crop:4,flip'
   */
  augment?: string;
  /**
   * linear probing: only the network's last layer (its classifier) trains; the backbone keeps
   * its weights (from `--init-from`, say) and, in eval mode, its batch-norm statistics (default
   * false)
   */
  freezeBackbone?: boolean;
  batchSize?: number;
  /** train as one rank of a data-parallel run (launch: `torchfocal train --nproc N`) */
  distributed?: DistributedOptions;
  /** distributed: batch-norm statistics over the global batch of all ranks (SyncBatchNorm) */
  syncBn?: boolean;
  /**
   * images per evaluation and prediction batch (default 128 on the CPU, 1000 on a GPU:
   * `defaultEvalBatchSize`); lower it when they run out of memory
   */
  evalBatchSize?: number;
  /** default: adam, except sgd for mlp (the original experiment) */
  optimizer?: OptimizerName;
  /** default: 0.001 for adam and adamw, 0.5 for sgd (the original experiment) */
  lr?: number;
  /** sgd: momentum (default 0), as torch.optim.SGD's (dampening 0) */
  momentum?: number;
  /** sgd with momentum > 0: Nesterov momentum (default false) */
  nesterov?: boolean;
  /** adam, sgd: L2 term wd·p added to the gradient; adamw: p·(1 − lr·wd) each step (decoupled). Default torch.optim's: 0.01 for adamw, 0 otherwise */
  weightDecay?: number;
  /** scale the gradients to a total L2 norm of at most this before each step (torch.nn.utils.clip_grad_norm_); 0 (default): off */
  clipGradNorm?: number;
  /** the rate rises linearly, lr·(s+1)/W over the W steps of these first epochs, then lrSchedule runs (PyTorch's SequentialLR of LinearLR and the schedule); default 0 */
  warmupEpochs?: number;
  /** the rate over the run (default 'constant'; see LR_SCHEDULES) */
  lrSchedule?: LrScheduleName;
  /**
   * epochs a 'onecycle' or 'cosine' schedule spans (required by them; `runTraining` and the CLI
   * set it to the run's epochs); epochs trained past it keep its last rate
   */
  scheduleEpochs?: number;
  /** loss name (default 'ce') */
  loss?: string;
  /**
   * per-class weights (focal's α, ce's class weights): one per class, one number for all,
   * 'auto' for inverse class frequency, or omitted for 1
   */
  alpha?: number | number[] | 'auto';
  /**
   * what a batch's class-weighted loss is divided by: 'mean' (default), the batch size;
   * 'weights', the sum of the targets' class weights, as PyTorch's CrossEntropyLoss(weight=)
   */
  alphaNormalize?: AlphaNormalize;
  gamma?: number;
  /** ce, focal: label smoothing ε, applied to the target distribution first */
  labelSmoothing?: number;
  /** cb-ce, cb-focal: effective-number β (default 0.9999) */
  beta?: number;
  /** logit-adjust: τ (default 1) */
  tau?: number;
  /** deferred re-weighting: class weights switch on at this epoch */
  drw?: number | null;
  seed?: number;
  /** intra-op threads; 0 = all cores */
  threads?: number;
  device?: 'auto' | 'cpu' | 'cuda' | string;
  /** steps between progress reports */
  progressEvery?: number;
  /**
   * 'instance' (default): each image once per epoch, shuffled; 'class-balanced': each draw picks
   * a class uniformly, then one of its images; 'sqrt': a class with probability ∝ √count. The
   * last two draw with replacement, as many images per epoch as the training set holds.
   */
  sampler?: SamplerName;
  /**
   * layout of conv weights and batches: 'channels-last' (NHWC), 'contiguous' (NCHW), or 'auto'
   * (default): channels-last on the CPU, where oneDNN's convolutions are faster in it
   */
  memoryFormat?: MemoryFormat;
  /** autocast the forward pass to bf16 or fp16 (default 'off'); the loss stays float32 */
  amp?: AmpMode;
  /**
   * CUDA: capture the train step (forward, loss, backward, optimizer) as a CUDA graph and replay
   * it for every full batch ('auto', the default; 'on': an error where it cannot; 'off')
   */
  cudaGraph?: CudaGraphMode;
  /**
   * a step with a NaN or infinite loss: 'stop' (default) ends the run with an error naming the
   * epoch and step, weights untouched; 'skip' leaves the weights and counts it
   */
  onNan?: 'stop' | 'skip';
}

export type ResolvedOptions = Required<
  Omit<TrainerOptions, 'alpha' | 'drw' | 'distributed' | 'normalize'>
> & {
  normalize: ResolvedNormalize;
  distributed: DistributedOptions | null;
  alpha: number[] | 'auto';
  drw: number | null;
};

/** The options that hold one number. */
const NUMBER_KEYS = [
  'widthDivisor',
  'channels',
  'inputSize',
  'batchSize',
  'evalBatchSize',
  'lr',
  'momentum',
  'weightDecay',
  'clipGradNorm',
  'warmupEpochs',
  'scheduleEpochs',
  'gamma',
  'labelSmoothing',
  'beta',
  'tau',
  'seed',
  'threads',
  'progressEvery',
] as const satisfies readonly (keyof ResolvedOptions)[];

export function resolveOptions(o: TrainerOptions): ResolvedOptions {
  const model = o.model ?? 'lenet';
  const known = native()
    .modelInfos()
    .map((m) => m.name);
  if (!known.includes(model)) {
    throw invalidArgument(`model: unknown model '${model}' (known: ${known.join(', ')})`);
  }
  if (!Array.isArray(o.classNames) || o.classNames.length < 2) {
    throw invalidArgument('classNames: at least two classes are needed');
  }
  const badName = o.classNames.findIndex((n) => typeof n !== 'string' || n === '');
  if (badName >= 0) {
    throw invalidArgument(
      `classNames[${badName}]: expected a non-empty string, got ${describe(o.classNames[badName])}`,
    );
  }
  const twice = o.classNames.find((n, i) => o.classNames.indexOf(n) !== i);
  if (twice !== undefined) throw invalidArgument(`classNames: '${twice}' is given twice`);
  const optimizer = o.optimizer ?? (model === 'mlp' ? 'sgd' : 'adam');
  if (!OPTIMIZERS.includes(optimizer)) {
    throw invalidArgument(
      `optimizer: unknown optimizer '${String(optimizer)}' (known: ${OPTIMIZERS.join(', ')})`,
    );
  }
  const losses = native().lossInfos();
  const loss = o.loss ?? 'ce';
  const info = losses.find((l) => l.name === loss);
  if (!info) {
    throw invalidArgument(
      `loss: unknown loss '${loss}' (known: ${losses.map((l) => l.name).join(', ')})`,
    );
  }
  const alpha =
    o.alpha === undefined
      ? []
      : o.alpha === 'auto'
        ? 'auto'
        : typeof o.alpha === 'number'
          ? [o.alpha]
          : o.alpha;
  if (alpha !== 'auto') {
    if (!Array.isArray(alpha))
      throw invalidArgument(`alpha: expected numbers or 'auto', got ${JSON.stringify(o.alpha)}`);
    if (alpha.length > 1 && alpha.length !== o.classNames.length) {
      throw invalidArgument(
        `alpha: ${alpha.length} values for ${o.classNames.length} classes (give one value or one per class)`,
      );
    }
    if (!alpha.every((a) => Number.isFinite(a) && a >= 0)) {
      throw invalidArgument('alpha: every value must be a finite number >= 0');
    }
  }
  if (!info.takesWeights && (alpha === 'auto' || alpha.length > 0)) {
    throw invalidArgument(`alpha: loss '${loss}' computes its own class weights; drop alpha`);
  }
  const resolved: ResolvedOptions = {
    model,
    classNames: o.classNames,
    widthDivisor: o.widthDivisor ?? 1,
    channels: o.channels ?? 1,
    inputSize: o.inputSize ?? 0,
    normalize: o.normalize as ResolvedNormalize, // checked below, once channels is
    augment: o.augment ?? 'none',
    freezeBackbone: o.freezeBackbone ?? false,
    batchSize: o.batchSize ?? 128,
    evalBatchSize: o.evalBatchSize ?? defaultEvalBatchSize(o.device ?? 'auto'),
    distributed: o.distributed ?? null,
    syncBn: o.syncBn ?? false,
    optimizer,
    lr: o.lr ?? (optimizer === 'sgd' ? 0.5 : 0.001),
    lrSchedule: o.lrSchedule ?? 'constant',
    scheduleEpochs: o.scheduleEpochs ?? 0,
    momentum: o.momentum ?? 0,
    nesterov: o.nesterov ?? false,
    weightDecay: o.weightDecay ?? (optimizer === 'adamw' ? 0.01 : 0),
    clipGradNorm: o.clipGradNorm ?? 0,
    warmupEpochs: o.warmupEpochs ?? 0,
    loss,
    alpha,
    alphaNormalize: o.alphaNormalize ?? 'mean',
    gamma: o.gamma ?? 2,
    labelSmoothing: o.labelSmoothing ?? 0,
    beta: o.beta ?? 0.9999,
    tau: o.tau ?? 1,
    drw: o.drw ?? null,
    seed: o.seed ?? 0,
    threads: o.threads ?? 0,
    device: o.device ?? 'auto',
    progressEvery: o.progressEvery ?? 20,
    sampler: o.sampler ?? 'instance',
    memoryFormat: o.memoryFormat ?? 'auto',
    amp: o.amp ?? 'off',
    cudaGraph: o.cudaGraph ?? 'auto',
    onNan: o.onNan ?? 'stop',
  };
  const unknown = Object.keys(o).filter((k) => !(k in resolved));
  if (unknown.length > 0) {
    const named = unknown.map((k) => `'${k}'${similar(k, Object.keys(resolved))}`);
    throw invalidArgument(`unknown option${unknown.length > 1 ? 's' : ''} ${named.join(', ')}`);
  }
  // Types first, so that a string '0.01' is named as one rather than as an out-of-range number.
  for (const key of NUMBER_KEYS) {
    if (typeof resolved[key] !== 'number') {
      throw invalidArgument(`${key}: expected a number, got ${describe(resolved[key])}`);
    }
  }
  if (typeof resolved.freezeBackbone !== 'boolean') {
    throw invalidArgument(
      `freezeBackbone: expected true or false, got ${describe(resolved.freezeBackbone)}`,
    );
  }
  if (typeof resolved.syncBn !== 'boolean') {
    throw invalidArgument(`syncBn: expected true or false, got ${describe(resolved.syncBn)}`);
  }
  if (resolved.syncBn && !resolved.distributed) {
    throw invalidArgument(
      'syncBn: synchronises batch norm across ranks: it needs --nproc N (distributed)',
    );
  }
  if (resolved.onNan !== 'stop' && resolved.onNan !== 'skip') {
    throw invalidArgument(`onNan: expected 'stop' or 'skip', got '${String(resolved.onNan)}'`);
  }
  if (!ALPHA_NORMALIZE.includes(resolved.alphaNormalize)) {
    throw invalidArgument(
      `alphaNormalize: expected 'mean' or 'weights', got '${String(resolved.alphaNormalize)}'`,
    );
  }
  if (!AMP_MODES.includes(resolved.amp)) {
    throw invalidArgument(
      `amp: unknown mode '${String(resolved.amp)}' (known: ${AMP_MODES.join(', ')})`,
    );
  }
  if (!LR_SCHEDULES.includes(resolved.lrSchedule)) {
    throw invalidArgument(
      `lrSchedule: unknown schedule '${String(resolved.lrSchedule)}' (known: ${LR_SCHEDULES.join(', ')})`,
    );
  }
  if (resolved.lrSchedule === 'constant') {
    if (resolved.scheduleEpochs !== 0) {
      throw invalidArgument(
        `scheduleEpochs: only a 'onecycle' or 'cosine' lrSchedule spans epochs`,
      );
    }
  } else {
    positiveInt('scheduleEpochs', resolved.scheduleEpochs);
  }
  if (!CUDA_GRAPH_MODES.includes(resolved.cudaGraph)) {
    throw invalidArgument(
      `cudaGraph: unknown mode '${String(resolved.cudaGraph)}' (known: ${CUDA_GRAPH_MODES.join(', ')})`,
    );
  }
  if (!MEMORY_FORMATS.includes(resolved.memoryFormat)) {
    throw invalidArgument(
      `memoryFormat: unknown memory format '${String(resolved.memoryFormat)}' (known: ${MEMORY_FORMATS.join(', ')})`,
    );
  }
  if (!SAMPLERS.includes(resolved.sampler)) {
    throw invalidArgument(
      `sampler: unknown sampler '${String(resolved.sampler)}' (known: ${SAMPLERS.join(', ')})`,
    );
  }
  positiveInt('batchSize', resolved.batchSize);
  positiveInt('evalBatchSize', resolved.evalBatchSize);
  const d = resolved.distributed;
  if (d) {
    positiveInt('distributed.worldSize', d.worldSize);
    if (!Number.isSafeInteger(d.rank) || d.rank < 0 || d.rank >= d.worldSize) {
      throw invalidArgument(
        `distributed.rank: expected 0..${d.worldSize - 1}, got ${describe(d.rank)}`,
      );
    }
    if (typeof d.store?.host !== 'string' || d.store.host === '') {
      throw invalidArgument('distributed.store.host: expected a host name or address');
    }
    if (!Number.isSafeInteger(d.store.port) || d.store.port < 1 || d.store.port > 65535) {
      throw invalidArgument(
        `distributed.store.port: expected 1..65535, got ${describe(d.store.port)}`,
      );
    }
    if (d.bucketBytes !== undefined) positiveInt('distributed.bucketBytes', d.bucketBytes);
    const timeout = d.timeoutSeconds ?? 60;
    if (!Number.isFinite(timeout) || timeout <= 0) {
      throw invalidArgument(
        `distributed.timeoutSeconds: expected a number > 0, got ${describe(timeout)}`,
      );
    }
  }
  positiveInt('widthDivisor', resolved.widthDivisor);
  if (resolved.channels !== 1 && resolved.channels !== 3) {
    throw invalidArgument(`channels: expected 1 or 3, got ${describe(resolved.channels)}`);
  }
  if (!Number.isSafeInteger(resolved.inputSize) || resolved.inputSize < 0) {
    throw invalidArgument(
      `inputSize: expected an integer >= 1 (0: the model's own), got ${describe(resolved.inputSize)}`,
    );
  }
  if (resolved.inputSize > 4096) {
    throw invalidArgument(`inputSize: expected at most 4096, got ${resolved.inputSize}`);
  }
  resolved.normalize = resolveNormalize(o.normalize ?? 'none', resolved.channels);
  resolved.augment = augmentSpec(resolved.augment);
  positiveInt('progressEvery', resolved.progressEvery);
  if (!Number.isSafeInteger(resolved.seed) || resolved.seed < 0) {
    throw invalidArgument(`seed: expected an integer >= 0, got ${describe(resolved.seed)}`);
  }
  if (!Number.isSafeInteger(resolved.threads) || resolved.threads < 0) {
    throw invalidArgument(`threads: expected an integer >= 0, got ${describe(resolved.threads)}`);
  }
  if (!Number.isFinite(resolved.lr) || resolved.lr <= 0) {
    throw invalidArgument(`lr: expected a number > 0, got ${describe(resolved.lr)}`);
  }
  // The engine computes in float32: a rate outside this under- or overflows it or the step.
  if (resolved.lr < 1e-30 || resolved.lr > 1e15) {
    throw invalidArgument(`lr: expected a number in [1e-30, 1e15], got ${describe(resolved.lr)}`);
  }
  checkOptimizer(resolved);
  if (!Number.isFinite(resolved.gamma) || resolved.gamma < 0) {
    throw invalidArgument(`gamma: expected a number >= 0, got ${describe(resolved.gamma)}`);
  }
  if (!(resolved.labelSmoothing >= 0 && resolved.labelSmoothing < 1)) {
    throw invalidArgument(
      `labelSmoothing: expected a number in [0, 1), got ${describe(resolved.labelSmoothing)}`,
    );
  }
  if (!(resolved.beta >= 0 && resolved.beta < 1)) {
    throw invalidArgument(`beta: expected a number in [0, 1), got ${describe(resolved.beta)}`);
  }
  if (!Number.isFinite(resolved.tau) || resolved.tau < 0) {
    throw invalidArgument(`tau: expected a number >= 0, got ${describe(resolved.tau)}`);
  }
  if (resolved.drw !== null && (!Number.isSafeInteger(resolved.drw) || resolved.drw < 0)) {
    throw invalidArgument(`drw: expected an epoch number >= 0, got ${describe(resolved.drw)}`);
  }
  return resolved;
}

/**
 * Why the options compensate the imbalance twice, when they do: a class-aware sampler already
 * evens the classes out, and a loss that re-weights (or re-balances) them on top over-corrects
 * (a starved-six run with class-balanced sampling and α = 100 fell to 0.096 accuracy).
 */
export function doubleReweighting(o: ResolvedOptions): string | undefined {
  if (o.sampler === 'instance') return undefined;
  const uneven = Array.isArray(o.alpha) && o.alpha.length > 1 && new Set(o.alpha).size > 1;
  const byLoss: Record<string, string> = {
    'cb-ce': 'loss cb-ce re-weights them by effective numbers',
    'cb-focal': 'loss cb-focal re-weights them by effective numbers',
    'balanced-softmax': 'loss balanced-softmax re-balances them by the class prior',
    'logit-adjust': 'loss logit-adjust re-balances them by the class prior',
  };
  const loss =
    o.alpha === 'auto'
      ? "alpha 'auto' re-weights them by inverse frequency"
      : uneven
        ? `alpha ${o.alpha.join(',')} re-weights them`
        : byLoss[o.loss];
  if (!loss) return undefined;
  return `sampler '${o.sampler}' already evens the classes out and ${loss}: the imbalance is corrected twice, which can collapse a run; use one of the two`;
}

/** momentum, nesterov, weightDecay, clipGradNorm, warmupEpochs: values and combinations. */
function checkOptimizer(r: ResolvedOptions): void {
  for (const key of ['momentum', 'weightDecay', 'clipGradNorm'] as const) {
    if (!Number.isFinite(r[key]) || r[key] < 0) {
      throw invalidArgument(`${key}: expected a number >= 0, got ${r[key]}`);
    }
  }
  if (r.momentum !== 0 && r.optimizer !== 'sgd') {
    throw invalidArgument(`momentum: applies to optimizer 'sgd' only, not '${r.optimizer}'`);
  }
  if (typeof r.nesterov !== 'boolean') {
    throw invalidArgument(`nesterov: expected true or false, got ${String(r.nesterov)}`);
  }
  if (r.nesterov && !(r.optimizer === 'sgd' && r.momentum > 0)) {
    throw invalidArgument(`nesterov: needs optimizer 'sgd' with momentum > 0 (as torch.optim.SGD)`);
  }
  if (!Number.isSafeInteger(r.warmupEpochs) || r.warmupEpochs < 0) {
    throw invalidArgument(`warmupEpochs: expected an integer >= 0, got ${r.warmupEpochs}`);
  }
  if (r.warmupEpochs > 0 && r.lrSchedule === 'onecycle') {
    throw invalidArgument(`warmupEpochs: lrSchedule 'onecycle' warms up by itself`);
  }
  if (r.warmupEpochs > 0 && r.lrSchedule !== 'constant' && r.warmupEpochs >= r.scheduleEpochs) {
    throw invalidArgument(
      `warmupEpochs: ${r.warmupEpochs} leaves none of the schedule's ${r.scheduleEpochs} epochs`,
    );
  }
}

export function positiveInt(name: string, v: number): void {
  if (!Number.isSafeInteger(v) || v < 1)
    throw invalidArgument(`${name}: expected an integer >= 1, got ${describe(v)}`);
}

/** A value as an error message names it: a string is called one ('0.01' is not 0.01). */
export function describe(v: unknown): string {
  if (typeof v === 'string') return `the string '${v}'`;
  if (typeof v === 'number' || typeof v === 'boolean' || v == null) return String(v);
  return JSON.stringify(v) ?? typeof v;
}

// ' (did you mean 'gamma'?)' for a key one or two edits away from a known one
function similar(key: string, known: string[]): string {
  const distance = (a: string, b: string) => {
    let row = Array.from({ length: b.length + 1 }, (_, j) => j);
    for (let i = 1; i <= a.length; i++) {
      const next = [i];
      for (let j = 1; j <= b.length; j++) {
        next[j] = Math.min(
          row[j] + 1,
          next[j - 1] + 1,
          row[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1),
        );
      }
      row = next;
    }
    return row[b.length];
  };
  const best = known.map((k) => [k, distance(key, k)] as const).sort((x, y) => x[1] - y[1])[0];
  return best && best[1] <= 2 ? ` (did you mean '${best[0]}'?)` : '';
}
