// `torchfocal train`: one run, the original script's lines or JSON lines.
import { Command, Help, InvalidArgumentError, Option } from 'commander';
import { ERROR_CODES, hasErrorCode, native } from '../native';
import { launch, rankFromEnv, withoutOptions } from './launch';
import { runTraining, type RunSpec } from '../train/run';
import { cacheDir } from '../data/cache';
import { claimFreshDir } from '../train/run-lock';
import { MONITORS, type Monitor } from '../train/selection';
import {
  ALPHA_NORMALIZE,
  LR_SCHEDULES,
  OPTIMIZERS,
  type OptimizerName,
  type AlphaNormalize,
  type AmpMode,
  type CudaGraphMode,
  type LrScheduleName,
  type MemoryFormat,
  type Normalize,
  type SamplerName,
} from '../train/options';
import {
  alphaList,
  fraction,
  intAtLeast,
  maxPixelsOption,
  noDecodeCacheOption,
  nonNegativeNumber,
  normalizeSpec,
  oneOf,
  positiveNumber,
  probability,
} from './parse';
import {
  EpochProgress,
  epochEvent,
  epochLine,
  ExitError,
  invokedAs,
  pickedLine,
  printJson,
  warnOnStderr,
} from './output';

/** Options shared by every command that trains (train, experiment). */
export function addTrainingOptions(cmd: Command): Command {
  return cmd
    .option(
      '--model <name>',
      "network: mlp, lenet, alexnet, vgg, googlenet, resnet, resnet32, or torchvision's resnet18, resnet34, resnet50",
      'lenet',
    )
    .option(
      '--dataset <spec>',
      'mnist, fashion-mnist, cifar10[:DIR], cifar100[:DIR] (data fetch), colour-digits, or an image-folder PATH',
      'mnist',
    )
    .option('--epochs <n>', 'epochs to train', intAtLeast(1), 5)
    .option('--batch-size <n>', 'training batch size', intAtLeast(1), 128)
    .option(
      '--eval-batch-size <n>',
      'images per evaluation batch (default 128 on the CPU, 1000 on a GPU; lower it when evaluation runs out of memory)',
      intAtLeast(1),
    )
    .addOption(
      new Option('--optimizer <name>', 'adam (default), adamw or sgd (default for mlp)').argParser(
        oneOf(...OPTIMIZERS),
      ),
    )
    .option('--lr <x>', 'learning rate (default 0.001 adam/adamw, 0.5 sgd)', positiveNumber)
    .option('--momentum <m>', 'sgd: momentum (default 0)', nonNegativeNumber)
    .option('--nesterov', 'sgd: Nesterov momentum (needs --momentum > 0)')
    .option(
      '--weight-decay <wd>',
      'adam, sgd: L2 term added to the gradient; adamw: decoupled decay (default 0; adamw 0.01)',
      nonNegativeNumber,
    )
    .option('--clip-grad-norm <x>', 'scale gradients to a total L2 norm <= X', positiveNumber)
    .option('--warmup-epochs <e>', 'linear rate warm-up, then --lr-schedule', intAtLeast(0))
    .addOption(
      new Option(
        '--lr-schedule <name>',
        'learning rate over the run: constant, onecycle (up over 30% of the steps, then down) or cosine; spans --epochs',
      )
        .choices([...LR_SCHEDULES])
        .default('constant'),
    )
    .option('--seed <n>', 'seed for weights, shuffling and imbalance', intAtLeast(0), 0)
    .option('--device <name>', 'auto, cpu or cuda', 'auto')
    .option('--threads <n>', 'CPU threads (0 = all cores)', intAtLeast(0), 0)
    .option(
      '--width-divisor <n>',
      'VGG and the ResNets: divide channel widths by N',
      intAtLeast(1),
      1,
    )
    .addOption(
      new Option(
        '--channels <n>',
        'decode images to 1 (grey, as PIL) or 3 (RGB) channels (default: 3 when any training image has colour)',
      ).argParser((v: string) => Number(oneOf('1', '3')(v)) as 1 | 3),
    )
    .option(
      '--input-size <n>',
      "resize images on the device to N×N (default: the model's, 28 to 224)",
      intAtLeast(1),
    )
    .option(
      '--normalize <spec>',
      'after scaling to [0, 1]: none, dataset (training set mean/std), imagenet, or M1,M2,M3/S1,S2,S3',
      normalizeSpec,
      'none',
    )
    .option(
      '--augment <spec>',
      'training batches, on the device: crop:PAD, flip, rrc:SCALE_MIN, jitter:B,C,S, combined with commas (crop:4,flip)',
      'none',
    )
    .option(
      '--freeze-backbone',
      'train only the last layer (linear probing, with --init-from); the rest stays in eval mode',
    )
    .option(
      '--eval-every <n>',
      'evaluate the test set every N epochs (and after the last); JSON epoch lines then carry EVAL',
      intAtLeast(1),
    )
    .addOption(
      new Option(
        '--sampler <name>',
        'instance (each image once), class-balanced or sqrt (class-aware, with replacement)',
      )
        .choices(['instance', 'class-balanced', 'sqrt'])
        .default('instance'),
    )
    .addOption(
      new Option(
        '--memory-format <name>',
        'conv layout: auto (channels-last on CPU), channels-last or contiguous',
      )
        .choices(['auto', 'channels-last', 'contiguous'])
        .default('auto'),
    )
    .addOption(
      new Option('--on-nan <action>', 'a step with a NaN/infinite loss: stop the run, or skip it')
        .choices(['stop', 'skip'])
        .default('stop'),
    )
    .addOption(
      new Option('--amp <mode>', 'mixed precision: off, bf16 (CPU or CUDA) or fp16 (CUDA)')
        .choices(['off', 'bf16', 'fp16'])
        .default('off'),
    )
    .addOption(
      new Option(
        '--cuda-graph <mode>',
        'CUDA: capture the train step once as a CUDA graph and replay it (auto = on for CUDA)',
      )
        .choices(['auto', 'on', 'off'])
        .default('auto'),
    )
    .option('--json', 'print JSON lines on stdout (progress goes to stderr)');
}

/** What addTrainingOptions parses. */
export interface TrainingFlags {
  model: string;
  dataset: string;
  epochs: number;
  batchSize: number;
  evalBatchSize?: number;
  optimizer?: OptimizerName;
  lr?: number;
  momentum?: number;
  nesterov?: boolean;
  weightDecay?: number;
  clipGradNorm?: number;
  warmupEpochs?: number;
  lrSchedule: LrScheduleName;
  seed: number;
  device: string;
  threads: number;
  widthDivisor: number;
  channels?: 1 | 3;
  inputSize?: number;
  normalize: Normalize;
  augment: string;
  freezeBackbone?: boolean;
  sampler: SamplerName;
  memoryFormat: MemoryFormat;
  amp: AmpMode;
  cudaGraph: CudaGraphMode;
  onNan: 'stop' | 'skip';
  evalEvery?: number;
  json?: boolean;
}

interface TrainFlags extends TrainingFlags {
  loss: string;
  alpha?: number | number[] | 'auto';
  alphaNormalize?: AlphaNormalize;
  gamma: number;
  labelSmoothing: number;
  beta: number;
  tau: number;
  drw?: number;
  imbalance?: string;
  valSplit?: number;
  valDataset?: string;
  maxPixels?: number;
  decodeCache: boolean;
  monitor?: Monitor;
  saveBest?: boolean;
  earlyStop?: number;
  out?: string;
  overwrite?: boolean;
  resume?: boolean;
  initFrom?: string;
  initFromPartial?: boolean;
  nproc?: number;
  nnodes: number;
  nodeRank: number;
  masterAddr: string;
  masterPort?: number;
  distTimeout: number;
  bucketMb: number;
  syncBn?: boolean;
}

/** The loss registry's names (the addon is loaded on first use, not to print --version). */
function lossNames(): string[] {
  return native()
    .lossInfos()
    .map((l) => l.name);
}

const LOSS_HELP = 'the loss';

export function trainCommand(): Command {
  const cmd = new Command('train').description('train one network and write a checkpoint');
  // --help lists the losses the engine registers, read when the help is shown
  cmd.configureHelp({
    optionDescription(option) {
      const text = new Help().optionDescription(option);
      return option.long === '--loss'
        ? text.replace(LOSS_HELP, `the loss: ${lossNames().join(', ')}`)
        : text;
    },
  });
  addTrainingOptions(cmd)
    .addOption(
      new Option('--loss <name>', LOSS_HELP).default('ce').argParser((name: string) => {
        const known = lossNames();
        if (!known.includes(name)) {
          throw new InvalidArgumentError(`expected one of ${known.join(', ')}, got '${name}'`);
        }
        return name;
      }),
    )
    .option(
      '--alpha <list>',
      "class weights of ce, focal: one per class ('1,1,1,1,1,1,100,1,1,1'), one for all, or auto (inverse class frequency)",
      alphaList,
    )
    .addOption(
      new Option(
        '--alpha-normalize <how>',
        "divide a batch's weighted loss by its size (mean) or by its targets' weights (weights: PyTorch's)",
      ).choices([...ALPHA_NORMALIZE]),
    )
    .option('--gamma <x>', 'focal loss focusing parameter', nonNegativeNumber, 2)
    .option(
      '--label-smoothing <e>',
      'ce/focal: smooth the target distribution by E (in [0, 1))',
      probability,
      0,
    )
    .option(
      '--beta <b>',
      'cb-ce/cb-focal: β of the effective number (1 − β^n)/(1 − β) (in [0, 1))',
      probability,
      0.9999,
    )
    .option('--tau <t>', 'logit-adjust: the τ of τ·log prior (>= 0)', nonNegativeNumber, 1)
    .option(
      '--drw <epoch>',
      'deferred re-weighting: train unweighted until this epoch, then switch the class weights on',
      intAtLeast(0),
    )
    .option(
      '--imbalance <spec>',
      "cut the training set: '6=0.01[,3=0.1]' (fractions), 'longtail:100' or 'step:10:5'",
    )
    .option(
      '--val-split <f>',
      'hold out this fraction of the (cut) training set, by class, to pick epochs with',
      fraction,
    )
    .option('--val-dataset <path>', 'a validation set of its own: PATH/<class>/* images')
    .addOption(maxPixelsOption('image folders: skip images of more pixels (default 4096²)'))
    .addOption(noDecodeCacheOption())
    .addOption(
      new Option(
        '--monitor <figure>',
        'the validation figure that picks the best epoch (default val-balanced-accuracy)',
      ).choices([...MONITORS]),
    )
    .option('--save-best', "keep the best epoch's checkpoint as best/ in --out")
    .option(
      '--early-stop <n>',
      'stop after N epochs without a better --monitor figure',
      intAtLeast(1),
    )
    .option('--out <dir>', 'checkpoint directory (default runs/<model>-<loss>-<time>)')
    .option('--overwrite', 'replace the checkpoint already in --out (a run refuses to otherwise)')
    .option(
      '--nproc <n>',
      'train data-parallel in N processes on this machine (c10d)',
      intAtLeast(1),
    )
    .option('--nnodes <n>', 'machines in the run (each runs --nproc ranks)', intAtLeast(1), 1)
    .option('--node-rank <n>', "this machine's index among --nnodes", intAtLeast(0), 0)
    .option('--master-addr <host>', "rank 0's machine, which hosts the rendezvous", '127.0.0.1')
    .option(
      '--master-port <n>',
      'rendezvous port (default: a free one, or 29500 across machines)',
      intAtLeast(1),
    )
    .option('--sync-bn', 'distributed: batch-norm statistics over all ranks (SyncBatchNorm)')
    .option(
      '--dist-timeout <s>',
      'seconds to wait for a rank (joining, or in a collective) before stopping with an error',
      positiveNumber,
      60,
    )
    .option(
      '--bucket-mb <mb>',
      'distributed: sum gradients in buckets of this many MiB, each as backward completes it',
      positiveNumber,
      25,
    )
    .option(
      '--resume',
      'continue the run in --out from its last complete epoch up to --epochs in all ' +
        '(its model, loss, data and seed; --threads, --device, --cuda-graph and the batch sizes may change)',
    )
    .option(
      '--init-from <file>',
      'start from these weights (safetensors, PyTorch state_dict names)',
    )
    .option('--init-from-partial', '--init-from: re-initialise the tensors whose shape differs')
    .action(async (flags: TrainFlags) => {
      if (flags.resume && !flags.out)
        throw new Error('--resume needs --out DIR: the run to continue');
      // Started by a launcher (ours or torchrun's): this process is one rank.
      const rank = rankFromEnv(process.env, flags.distTimeout);
      const bucketBytes = Math.max(1, Math.round(flags.bucketMb * 2 ** 20));
      const distributed = rank && { ...rank, bucketBytes };
      if (!distributed && (flags.nproc !== undefined || flags.nnodes > 1)) {
        if (flags.nodeRank >= flags.nnodes) {
          throw new Error(`--node-rank ${flags.nodeRank}: expected 0..${flags.nnodes - 1}`);
        }
        if (flags.nnodes > 1 && !flags.out) {
          throw new Error('--nnodes > 1 needs --out DIR (the same path on every machine)');
        }
        const args = process.argv.slice(process.argv.indexOf('train') + 1);
        const own = ['--nproc', '--nnodes', '--node-rank', '--master-addr', '--master-port'];
        // All ranks must write to the same run directory: fix the default name once, here.
        const out = flags.out ? [] : ['--out', await defaultRunDir(flags.model, flags.loss)];
        await launch(
          {
            nproc: flags.nproc ?? 1,
            nnodes: flags.nnodes,
            nodeRank: flags.nodeRank,
            masterAddr: flags.masterAddr,
            masterPort: flags.masterPort,
            timeoutSeconds: flags.distTimeout,
          },
          [...withoutOptions(args, own), ...out],
          cmd.getOptionValueSource('threads') === 'cli',
        );
        return;
      }
      const quiet = (distributed?.rank ?? 0) > 0; // rank 0 speaks for the run
      // One GPU per rank: LOCAL_RANK picks it, as under torchrun.
      const localRank = process.env.LOCAL_RANK;
      const device =
        distributed && flags.device === 'cuda' && localRank ? `cuda:${localRank}` : flags.device;
      const {
        json,
        nproc,
        nnodes,
        nodeRank,
        masterAddr,
        masterPort,
        distTimeout,
        bucketMb,
        decodeCache,
        ...options
      } = flags; // the launcher's and the printer's, not the run's
      void [json, nproc, nnodes, nodeRank, masterAddr, masterPort, distTimeout, bucketMb];
      const spec: RunSpec = {
        ...options,
        device,
        out: flags.out ?? (await defaultRunDir(flags.model, flags.loss)),
        distributed,
      };
      if (flags.resume) {
        // A resume takes its run's options from the checkpoint; those given again are checked
        // against it (runTraining refuses a change), defaults are not given.
        for (const key of Object.keys(spec) as (keyof RunSpec)[]) {
          const fixed = key === 'out' || key === 'resume' || key === 'distributed';
          if (!fixed && cmd.getOptionValueSource(key) !== 'cli') delete spec[key];
        }
      }
      const progress = new EpochProgress();
      // Ctrl-C / SIGTERM: stop at the next step and checkpoint there (runTraining does).
      const interrupt = new AbortController();
      let code = 130; // 130 for SIGINT, 143 for SIGTERM, as a shell reports them
      const stop = (sig: NodeJS.Signals) => {
        if (!interrupt.signal.aborted) code = sig === 'SIGTERM' ? 143 : 130;
        interrupt.abort();
      };
      // Alone, a second Ctrl-C ends the process at once (the default action). A rank keeps its
      // handlers for good: only the launcher signals it, and a rank killed by a signal would be
      // reported as a failed rank instead of an interrupted run.
      const listen = distributed ? process.on.bind(process) : process.once.bind(process);
      listen('SIGINT', stop);
      listen('SIGTERM', stop);
      let result;
      try {
        result = await runTraining(spec, {
          signal: interrupt.signal,
          onProgress: quiet ? undefined : progress.update,
          onLoadProgress: quiet ? undefined : progress.loading,
          decodeCache: decodeCache ? cacheDir() : undefined,
          onEpoch: (r) => {
            if (quiet) return;
            progress.stop();
            if (flags.json) printJson(epochEvent(r, flags.evalEvery !== undefined));
            else console.log(epochLine(r));
          },
          onWarning: warnOnStderr,
          onInitFrom: (init) => {
            if (quiet || init.reinitialised.length === 0) return;
            const shape = (d: number[]) => `[${d.join(',')}]`;
            const list = init.reinitialised.map(
              (r) => `${r.name}: file ${shape(r.fileShape)}, model ${shape(r.modelShape)}`,
            );
            console.error(`init-from: re-initialised ${list.length} (${list.join('; ')})`);
          },
        });
      } catch (err) {
        progress.stop();
        // How to continue: the same ranks per machine (the launcher sets LOCAL_WORLD_SIZE).
        const ranks = process.env.LOCAL_WORLD_SIZE;
        const resume = (extra: string) =>
          `${spec.out} holds the run up to its last finished step: continue with ${invokedAs()} ` +
          `train --out ${spec.out} --resume` +
          `${cmd.getOptionValueSource('epochs') === 'cli' ? ` --epochs ${flags.epochs}` : ''}` +
          `${distributed && ranks ? ` --nproc ${ranks}` : ''}${extra}`;
        if (hasErrorCode(err, ERROR_CODES.outOfMemory)) {
          const failed = Number(
            /batch size (\d+)/.exec((err as Error).message)?.[1] ?? flags.batchSize,
          );
          const smaller = Math.max(1, Math.floor(failed / 2));
          throw new ExitError(
            `${(err as Error).message.split('\n')[0]}. ${resume(` --batch-size ${smaller}`)}`,
            1,
          );
        }
        // Our Ctrl-C, or (distributed) another rank's: both leave a checkpoint at that step.
        if (!interrupt.signal.aborted && (err as Error).name !== 'AbortError') throw err;
        const { stage, epochsDone } = err as { stage?: string; epochsDone?: number };
        if (stage === 'loading') {
          const kept = flags.resume ? `; ${spec.out} is as it was` : '';
          throw new ExitError(
            `interrupted while loading the data: nothing was written${kept}`,
            code,
          );
        }
        if (stage === 'finished') {
          throw new ExitError(
            `interrupted during the final evaluation: ${spec.out} holds all ${epochsDone} epochs ` +
              `(epoch ${epochsDone! - 1} finished and checkpointed) but no report; evaluate it with ` +
              `${invokedAs()} eval --checkpoint ${spec.out}, or train on with ${invokedAs()} train ` +
              `--out ${spec.out} --resume --epochs ${epochsDone! + 1}` +
              `${distributed && ranks ? ` --nproc ${ranks}` : ''}`,
            code,
          );
        }
        throw new ExitError(`interrupted; ${resume('')}`, code);
      } finally {
        // A rank stopped by another's interruption still gets the launcher's SIGTERM: it must
        // not die of it on the way out (the launcher would report a killed rank).
        if (!distributed) {
          process.off('SIGINT', stop);
          process.off('SIGTERM', stop);
        }
      }
      if (quiet) return;
      if (flags.json) {
        printJson({
          event: 'done',
          checkpoint: result.checkpoint,
          ...(result.best && { best: result.best }),
          eval: result.eval,
        });
      } else {
        if (result.best) console.error(pickedLine(result.best, flags.saveBest === true));
        console.error(`checkpoint written to ${result.checkpoint}`);
      }
    });
  return cmd;
}

/**
 * Makes `runs/<model>-<loss>-<YYYYMMDD-HHMMSS>`, with `-2`, `-3`, … when a run started in the
 * same second already took the name, and returns it.
 */
export async function defaultRunDir(model: string, loss: string): Promise<string> {
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  return claimFreshDir(`runs/${model}-${loss}-${stamp}`);
}
