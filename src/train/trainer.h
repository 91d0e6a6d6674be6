// The training engine: one model, its optimizer and its data, all on one device.
#pragma once

#include <torch/torch.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "src/data/device_dataset.h"
#include "src/data/sampler.h"
#include "src/dist/collective.h"
#include "src/dist/gradient_sync.h"
#include "src/losses/loss.h"
#include "src/metrics/metrics.h"
#include "src/train/amp.h"
#include "src/train/batch_slices.h"
#include "src/train/flat_optimizer.h"
#include "src/train/init_weights.h"
#include "src/train/lr_schedule.h"
#include "src/train/named_tensors.h"
#include "src/train/random_stream.h"
#include "src/train/step_graph.h"

namespace torchfocal::train {

struct TrainConfig {
  std::string model = "lenet";
  int64_t num_classes = 10;
  int64_t width_divisor = 1;
  // Channels of the images (1 or 3; the first layer is built for them) and the side the
  // network takes them at (0: the model's own, models/registry.h).
  int64_t in_channels = 1;
  int64_t input_size = 0;
  // Per-channel normalisation after scaling to [0, 1] (src/data/device_dataset.h): "none",
  // "fixed" (normalize_mean, normalize_std), or "dataset": the training set's mean and std,
  // computed on the device when it arrives (read back with Trainer::transform()).
  std::string normalize = "none";
  std::vector<double> normalize_mean;
  std::vector<double> normalize_std;
  // Training batches' augmentation on the device (src/data/augment.h): "none", or "crop:4,flip".
  std::string augment = "none";
  // Linear probing: only the network's last layer (its classifier) trains; the rest keeps its
  // weights and, in eval mode, its batch-norm statistics (and no dropout).
  bool freeze_backbone = false;
  int64_t batch_size = 128;
  // adam | adamw | sgd, as torch.optim defines them (src/train/optimizers.h); momentum and
  // nesterov are SGD's; weight_decay unset means the optimizer's default (0.01 adamw, else 0).
  std::string optimizer = "adam";
  double lr = 0.001;
  double momentum = 0;
  bool nesterov = false;
  std::optional<double> weight_decay;
  // Before every step, scale the gradients to a total L2 norm of at most this (0: off), as
  // torch.nn.utils.clip_grad_norm_: after fp16's unscale and the ranks' averaging.
  double clip_grad_norm = 0;
  // The rate rises linearly over the first warmup_epochs epochs' steps, then lr_schedule runs
  // over the remaining schedule epochs (src/train/lr_schedule.h: LinearLR, then the schedule).
  int64_t warmup_epochs = 0;
  // The rate over the run (src/train/lr_schedule.h): "constant", "onecycle" or "cosine", the
  // last two spanning `schedule_epochs` epochs (epochs trained past them keep the last rate).
  std::string lr_schedule = "constant";
  int64_t schedule_epochs = 0;
  losses::LossConfig loss;
  uint64_t seed = 0;
  int threads = 0;  // 0 = all cores
  std::string device = "auto";
  int64_t progress_every = 20;  // steps between progress reports
  int64_t eval_batch_size = 1000;
  std::string sampler = "instance";  // instance | class-balanced | sqrt (src/data/sampler.h)
  // Layout of conv weights and image batches: "channels-last" (NHWC), "contiguous" (NCHW), or
  // "auto": channels-last on the CPU, where oneDNN's convolutions run ~20% faster in it.
  std::string memory_format = "auto";
  std::string amp = "off";  // off | bf16 | fp16 (fp16: CUDA, with a loss scaler)
  // A step whose loss is NaN or infinite: "stop" throws NonFiniteLoss before it touches the
  // weights; "skip" leaves the weights as they were and counts it. The check reads the loss
  // every step: free on the CPU, one device sync per step on a GPU.
  std::string on_nan = "stop";
  // The sync-free step: the loss check, the skip of a non-finite step and the optimizer update
  // (src/train/flat_optimizer.h) all on the device, the host reading the epoch's figures once, at
  // its end. "auto": on CUDA in one process; "on": also on the CPU (the tests run it there);
  // "off": the host loop, which reads the loss every step.
  std::string device_step = "auto";
  // Capture that step once as a CUDA graph and replay it for every full batch (the last, partial
  // batch runs uncaptured). "auto": whenever the device step runs on CUDA; "on": an error where
  // it cannot; "off".
  std::string cuda_graph = "auto";
  // On a CPU of several threads, a step of a network that allows it (trains_in_slices) runs one
  // slice of the batch per thread, forward and backward (src/train/batch_slices.h); false runs
  // every step whole, each layer split over the threads (the tests compare the two).
  bool slice_steps = true;
  // Data parallelism over c10d (src/dist/collective.h): each rank trains on its shard of every
  // epoch's order with batches of batch_size, gradients are averaged before each step, and the
  // epoch's figures and evaluations are summed over ranks.
  dist::DistributedConfig distributed;
  bool sync_bn = false;  // distributed: batch-norm statistics over all ranks (SyncBatchNorm)
};

struct NonFiniteLoss : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A step or an evaluation ran out of device (or host) memory. The trainer stays usable: the
// step's gradients and the allocator's cache are released, the epoch is kept as interrupted at
// that step, and training goes on after set_batch_sizes with smaller batches.
struct OutOfMemory : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Progress {
  int64_t epoch, step, steps;
  double loss;  // mean batch loss since the start of the epoch
};
using ProgressFn = std::function<void(const Progress&)>;

struct EpochResult {
  int64_t epoch = 0;
  int64_t steps = 0;
  double loss = 0;            // mean of the batch losses, as the original experiment prints it
  double train_acc = 0;       // over the epoch's training samples, in training mode
  double seconds = 0;         // training time, evaluation excluded
  int64_t skipped_steps = 0;  // steps whose loss was not finite (on_nan = "skip")
  bool has_test = false;
  metrics::Metrics test;  // test-set evaluation after the epoch, when a test set is set
  bool has_val = false;   // a validation set is set: evaluated after every epoch
  metrics::Metrics val;
  double val_loss = 0;  // the training loss on the validation set (mean over its images)
};

// Where an interrupted epoch stopped: with the weights and optimizer state of that moment, enough
// to continue it step for step (the epoch's order is a pure function of seed and epoch).
struct PartialEpoch {
  int64_t epoch = -1;  // -1: none
  int64_t step = 0;    // steps done
  double loss_sum = 0;
  int64_t correct = 0;
  int64_t skipped = 0;
  double seconds = 0;
};

// Thrown when a run is cancelled between two steps.
struct Cancelled : std::runtime_error {
  Cancelled() : std::runtime_error("cancelled") {}
};

class Trainer {
 public:
  // Inputs of at most this many values (one or a few small images) run on the calling thread
  // alone on the CPU: a second thread's wake-up and barriers cost more than its share. The
  // binding runs such a predict at once instead of queueing it.
  static constexpr int64_t kSmallInput = 16 * 1024;

  explicit Trainer(TrainConfig config);

  // Whether infer() runs `count` images on the calling thread alone: the CPU, and at most
  // kSmallInput values of model input (after the resize to input_size(), which can make a small
  // image large). Only such work may run on a thread other than the engine's (the binding's
  // one-image predict): it opens no OpenMP parallel region.
  bool infers_on_one_thread(int64_t count) const;

  const TrainConfig& config() const { return config_; }
  const torch::Device& device() const { return device_; }
  int64_t input_size() const { return transform_.side; }
  int64_t in_channels() const { return config_.in_channels; }
  // How images become inputs: side and normalisation (empty until "dataset" sees its data).
  const data::InputTransform& transform() const { return transform_; }
  // Whether the sync-free step and its CUDA graph are in use (TrainConfig::device_step,
  // cuda_graph).
  bool uses_device_step() const { return device_step_; }
  // Whether CPU steps of several threads run in slices (TrainConfig::slice_steps).
  bool uses_sliced_steps() const { return slice_training_; }
  bool uses_cuda_graph() const { return graph_ != nullptr; }
  int64_t epochs_done() const { return epoch_; }
  void set_epochs_done(int64_t epoch);
  // Set when train_epoch was cancelled; the next train_epoch continues from it.
  const PartialEpoch& partial_epoch() const { return partial_; }
  void set_partial_epoch(const PartialEpoch& partial);
  // Changes the training and evaluation batch sizes between epochs (after an OutOfMemory, say).
  // An interrupted epoch continues at the same sample, so its samples done must be a multiple of
  // the new training batch size.
  void set_batch_sizes(int64_t train, int64_t eval);

  // images: [N, C, H, W] uint8 (C = in_channels; [N, H, W] for one channel), labels: [N]
  // integer; copied to the device once.
  void set_train_data(const torch::Tensor& images, const torch::Tensor& labels);
  void set_test_data(const torch::Tensor& images, const torch::Tensor& labels);
  // The validation set, held out of training to pick epochs: evaluated after every epoch, with
  // its loss, whether or not the test set is.
  void set_val_data(const torch::Tensor& images, const torch::Tensor& labels);
  std::vector<int64_t> train_class_counts() const;

  // One epoch: a seeded draw of the sampler (a shuffle by default), batches by index on the
  // device, optimizer steps; then the test set's evaluation if one is set and `with_test` asks
  // for it. `cancel` is polled between steps and between evaluation batches; cancelled during
  // the evaluation, the epoch is kept as one interrupted after its last step (partial_epoch), so
  // that the next train_epoch evaluates it without training again.
  EpochResult train_epoch(const ProgressFn& progress = {},
                          const std::atomic<bool>* cancel = nullptr, bool with_test = true);
  // `cancel` is polled between batches (Cancelled).
  metrics::Metrics evaluate_test(const std::atomic<bool>* cancel = nullptr);
  // The validation set's metrics and its mean loss under the training loss.
  std::pair<metrics::Metrics, double> evaluate_val(const std::atomic<bool>* cancel = nullptr);
  // Class probabilities [N, C] (float, CPU) for [N, H, W] uint8 images.
  torch::Tensor predict(const torch::Tensor& images);
  // The network's logits [N, C] (float, CPU) for inputs [N, channels, input_size, input_size]
  // taken as they are: no scaling, resizing or normalisation (what an exported model's network
  // part computes).
  torch::Tensor logits(const torch::Tensor& inputs);
  // The network itself (read it only while the trainer is idle).
  const torch::nn::Sequential& model() const { return model_; }

  // Parameters and buffers with PyTorch's state_dict names, on the CPU.
  NamedTensors state_dict() const;
  // Checks names, shapes and dtypes against the model before copying anything.
  void load_state_dict(const NamedTensors& state);
  // Weights from outside (a PyTorch state_dict): src/train/init_weights.h. The optimizer's state
  // stays as it is (fresh, for a new trainer).
  InitReport load_weights(const NamedTensors& state, bool partial) {
    return init_weights(*model_, state, partial);
  }
  // The optimizer's state and the dropout stream (src/train/optimizer_state.h names them);
  // loading checks every entry against the model first and changes nothing when one fails.
  NamedTensors train_state() const;
  void load_train_state(const NamedTensors& state);

 private:
  // `loss_mean`, when given, receives the training loss's mean over the dataset's images.
  // `cancel` is polled between batches, except distributed (every rank must take part in the
  // sum at the end).
  metrics::Metrics evaluate(const data::DeviceDataset& dataset, double* loss_mean = nullptr,
                            const std::atomic<bool>* cancel = nullptr);
  // Distributed: backward of `scaled`, with the gradients summed over ranks in buckets while it
  // runs (the loss and this rank's stop flag ride along), then divided by the world size;
  // returns the mean loss and whether any rank asked to stop.
  // The network in evaluation mode over `count` inputs, eval_batch_size at a time: `input(begin,
  // end)` makes a batch's network input on the device; the logits, or with `softmax` the class
  // probabilities, come back float32 on the CPU.
  torch::Tensor evaluate_batches(int64_t count,
                                 const std::function<torch::Tensor(int64_t, int64_t)>& input,
                                 bool softmax);
  std::pair<double, bool> backward_and_average(const torch::Tensor& scaled,
                                               const torch::Tensor& loss, bool stop);
  // Before a step: zeroes the flat gradient buffer (distributed), else drops the gradients.
  void clear_gradients(const std::vector<torch::Tensor>& params);
  void optimizer_step(double lr);  // the host loop's step, at the schedule's rate
  // Throws unless every rank describes the same (distributed runs; no-op otherwise).
  void check_same_on_all_ranks(const std::string& what, const std::string& description);
  // The network's training output for a batch. On a CPU of several threads each thread runs its
  // own slice, forward here and backward in train_backward (`sliced` keeps the slices).
  torch::Tensor train_forward(const torch::Tensor& images, std::optional<SlicedForward>& sliced);
  // Backward of the (scaled) loss into the trainable parameters' gradients.
  void train_backward(const torch::Tensor& scaled, std::optional<SlicedForward>& sliced);
  // A batch of model inputs in the trainer's memory format.
  torch::Tensor laid_out(torch::Tensor images) const;
  // The network's output for a batch in evaluation mode, without autograd (the caller has put
  // the model in eval mode). On a CPU with several threads each thread runs its own slice.
  torch::Tensor infer(const torch::Tensor& images);
  // Runs each(share, first, last, forward) over `shares` contiguous shares of batches
  // [0, batches), where forward(inputs) is the network's output in evaluation mode; `shares` is
  // batch_share_count(device, batches), which the caller sizes its per-share results by. Several
  // shares: one per CPU thread, each running its batches alone on single-threaded kernels (no
  // barrier and no serial work between batches); one: its forward is infer(). The model is in
  // eval mode.
  using Forward = std::function<torch::Tensor(const torch::Tensor&)>;
  void for_batch_shares(int64_t batches, int64_t shares,
                        const std::function<void(int64_t, int64_t, int64_t, const Forward&)>& each);
  // One sync-free step on the batch of `indices` (device_sums_ keeps its figures); what the CUDA
  // graph captures.
  void device_step(const torch::Tensor& indices);
  // A full batch through the CUDA graph: eager warm-ups, then one capture, then replays.
  void graph_step(const torch::Tensor& indices);
  // Drops the captured step (the data, loss or batch size changed); the next capture comes
  // after eager warm-ups again, since the new shapes may need new workspaces and algorithms.
  void reset_graph();
  // The device step's figures of the epoch so far, on the host: {loss sum, correct, skipped}.
  // Throws NonFiniteLoss when on_nan = "stop" and a step's loss was not finite.
  std::tuple<double, int64_t, int64_t> read_device_sums(int64_t steps);

  TrainConfig config_;
  torch::Device device_;
  data::InputTransform transform_;
  data::Augment augment_;
  // The parameters the optimizer steps: all, or the head's alone (freeze_backbone).
  std::vector<torch::Tensor> trainable_;
  // model_->train(), the frozen backbone left in eval mode.
  void train_mode();
  torch::nn::Sequential model_;
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  std::unique_ptr<losses::Loss> loss_;
  data::DeviceDataset train_, test_, val_;
  // A dataset on the device, checked to have the model's channels; `split` names it in errors.
  data::DeviceDataset on_device(const torch::Tensor& images, const torch::Tensor& labels,
                                const char* split) const;
  void check_normalisation_known(const char* op) const;
  data::Sampler sampler_ = data::Sampler::kInstance;
  bool channels_last_ = false;
  bool slice_training_ = false;  // a CPU step runs in slices (src/train/batch_slices.h)
  Amp amp_ = Amp::kOff;
  std::unique_ptr<LossScaler> scaler_;                 // fp16 only
  torch::Tensor train_labels_cpu_;                     // the samplers draw on the CPU generator
  std::unique_ptr<RandomStream> rng_;                  // dropout's draws
  std::unique_ptr<dist::Collective> collective_;       // set in a distributed run
  std::unique_ptr<dist::GradientSync> gradient_sync_;  // its gradient buckets
  torch::Tensor grad_buffer_;  // distributed: all gradients (views), then the loss and stop slots
  LrSchedule schedule_ = LrSchedule::kConstant;
  bool device_step_ = false;  // TrainConfig::device_step resolved
  // The device step's optimizer, and the CPU host loop's (over optimizer_'s state)
  std::unique_ptr<FlatOptimizer> flat_;
  torch::Tensor step_rates_;  // the device step: this epoch's rate of every step (float64)
  std::unique_ptr<StepStream> step_stream_;  // where the device step runs (CUDA)
  std::unique_ptr<StepGraph> graph_;         // the device step, captured
  int64_t graph_warmups_ = 0;                // eager device steps before capture (CUDA needs some)
  torch::Tensor graph_indices_;              // the captured step's batch indices, refilled per step
  // The device step's running figures (in place, so that the graph keeps their addresses): loss
  // sum (float64), correct, skipped steps, the step number, and with on_nan = "stop" whether a
  // non-finite loss has halted the epoch, at which step and with which value.
  struct DeviceSums {
    torch::Tensor loss_sum, correct, skipped, step, halted, bad_step, bad_value;
  } sums_;
  int64_t epoch_ = 0;
  PartialEpoch partial_;
};

}  // namespace torchfocal::train
