#include "src/train/trainer.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <tuple>

#include "models/batch_norm.h"
#include "models/registry.h"
#include "src/train/onednn_guard.h"
#include "src/train/optimizer_state.h"
#include "src/train/optimizers.h"
#include "src/train/runtime.h"

namespace torchfocal::train {
namespace {

// SplitMix64: turns (seed, epoch) into well-spread generator seeds, so each epoch's shuffle is
// a pure function of the run's seed and the epoch number (resumable without generator state).
uint64_t mix_seed(uint64_t seed, uint64_t epoch) {
  uint64_t z = seed + 0x9E3779B97F4A7C15ull * (epoch + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Allocation failures: LibTorch's OutOfMemoryError (CUDA), a failed host allocation (a plain
// c10::Error from LibTorch's CPU allocator in 1.x), or the standard library's bad_alloc.
bool is_out_of_memory(const std::exception& e) {
  if (dynamic_cast<const c10::OutOfMemoryError*>(&e) || dynamic_cast<const std::bad_alloc*>(&e)) {
    return true;
  }
  const auto* error = dynamic_cast<const c10::Error*>(&e);
  return error != nullptr && error->msg().find("DefaultCPUAllocator") != std::string::npos;
}

std::string first_line(const std::exception& e) {
  const auto* error = dynamic_cast<const c10::Error*>(&e);
  std::string what = error != nullptr ? error->msg() : e.what();
  // LibTorch 1.x prefixes its CPU allocator's message with "[enforce fail at ...] err == 0. ".
  const auto allocator = what.find("DefaultCPUAllocator");
  if (allocator != std::string::npos) what = what.substr(allocator);
  return what.substr(0, what.find('\n'));
}

// What every rank of a distributed run must agree on, one "key=value" per line.
std::string describe(const TrainConfig& c) {
  std::ostringstream out;
  out.precision(17);
  out << "model=" << c.model << "\nclasses=" << c.num_classes
      << "\nwidth_divisor=" << c.width_divisor << "\nchannels=" << c.in_channels
      << "\ninput_size=" << c.input_size << "\nnormalize=" << c.normalize << "\nmean=";
  for (double m : c.normalize_mean) out << m << ',';
  out << "\nstd=";
  for (double s : c.normalize_std) out << s << ',';
  out << "\naugment=" << data::to_string(data::parse_augment(c.augment))
      << "\nfreeze_backbone=" << c.freeze_backbone << "\nbatch_size=" << c.batch_size
      << "\noptimizer=" << c.optimizer << "\nlr=" << c.lr << "\nmomentum=" << c.momentum
      << "\nnesterov=" << c.nesterov
      << "\nweight_decay=" << c.weight_decay.value_or(default_weight_decay(c.optimizer))
      << "\nclip_grad_norm=" << c.clip_grad_norm << "\nwarmup_epochs=" << c.warmup_epochs
      << "\nlr_schedule=" << c.lr_schedule << "\nschedule_epochs=" << c.schedule_epochs
      << "\nloss=" << c.loss.name << "\nalpha=";
  for (double a : c.loss.alpha) out << a << ',';
  out << (c.loss.alpha_auto ? "auto" : "") << "\ngamma=" << c.loss.gamma
      << "\nlabel_smoothing=" << c.loss.label_smoothing << "\nbeta=" << c.loss.beta
      << "\ntau=" << c.loss.tau << "\ndrw=" << c.loss.drw_epoch << "\nseed=" << c.seed
      << "\nsampler=" << c.sampler << "\namp=" << c.amp << "\non_nan=" << c.on_nan
      << "\nworld_size=" << c.distributed.world_size << "\nsync_bn=" << c.sync_bn
      << "\nbucket_bytes=" << c.distributed.bucket_bytes << "\n"
      << c.distributed.run_description;
  return out.str();
}

// The error of a step whose loss is not finite (on_nan = "stop"); `step` counts from 0.
std::string non_finite_message(double value, int64_t epoch, int64_t step, int64_t steps) {
  std::ostringstream what;
  what << "the loss is "
       << (std::isnan(value) ? "NaN"
           : value > 0       ? "+inf"
                             : "-inf")
       << " at epoch " << epoch << ", step " << step + 1 << " of " << steps
       << " (weights left as after the step before; the last checkpoint is "
       << "intact): lower --lr, or pass --on-nan skip";
  return what.str();
}

// Eager device steps before the CUDA graph is captured: cuBLAS/cuDNN handles, workspaces and the
// allocator's pools are set up by the first runs (PyTorch's whole-network capture recipe).
constexpr int64_t kGraphWarmups = 3;

void check_mode(const char* name, const std::string& value) {
  if (value != "auto" && value != "on" && value != "off") {
    throw std::invalid_argument(std::string("unknown ") + name + " '" + value +
                                "' (known: auto, on, off)");
  }
}

void validate(const TrainConfig& c) {
  check_mode("device_step", c.device_step);
  check_mode("cuda_graph", c.cuda_graph);
  if (c.num_classes < 2) throw std::invalid_argument("num_classes must be at least 2");
  if (c.batch_size < 1) throw std::invalid_argument("batch_size must be at least 1");
  if (c.in_channels != 1 && c.in_channels != 3) {
    throw std::invalid_argument("in_channels must be 1 or 3, got " + std::to_string(c.in_channels));
  }
  if (c.normalize != "none" && c.normalize != "dataset" && c.normalize != "fixed") {
    throw std::invalid_argument("unknown normalize '" + c.normalize +
                                "' (known: none, dataset, fixed)");
  }
  if (c.normalize == "fixed") {
    data::check_transform({0, c.normalize_mean, c.normalize_std}, c.in_channels);
  } else if (!c.normalize_mean.empty() || !c.normalize_std.empty()) {
    throw std::invalid_argument("normalize_mean and normalize_std go with normalize 'fixed'");
  }
  if (c.eval_batch_size < 1) throw std::invalid_argument("eval_batch_size must be at least 1");
  if (!std::isfinite(c.clip_grad_norm) || c.clip_grad_norm < 0) {
    throw std::invalid_argument("clip_grad_norm must be a number >= 0 (0: no clipping)");
  }
  if (c.warmup_epochs < 0) throw std::invalid_argument("warmup_epochs must be >= 0");
  if (c.warmup_epochs > 0 && c.lr_schedule == "onecycle") {
    throw std::invalid_argument("warmup_epochs: the onecycle schedule warms up by itself");
  }
  if (c.warmup_epochs > 0 && c.lr_schedule != "constant" && c.warmup_epochs >= c.schedule_epochs) {
    throw std::invalid_argument("warmup_epochs must be fewer than the schedule's epochs");
  }
  if (!std::isfinite(c.lr) || c.lr <= 0) throw std::invalid_argument("lr must be a number > 0");
  if (parse_lr_schedule(c.lr_schedule) != LrSchedule::kConstant && c.schedule_epochs < 1) {
    throw std::invalid_argument("lr_schedule '" + c.lr_schedule +
                                "' needs schedule_epochs >= 1 (the epochs it spans)");
  }
  if (c.schedule_epochs < 0) throw std::invalid_argument("schedule_epochs must be >= 0");
  if (c.optimizer != "adam" && c.optimizer != "adamw" && c.optimizer != "sgd") {
    throw std::invalid_argument("unknown optimizer '" + c.optimizer +
                                "' (known: adam, adamw, sgd)");
  }
  if (c.progress_every < 1) throw std::invalid_argument("progress_every must be at least 1");
  if (c.on_nan != "stop" && c.on_nan != "skip") {
    throw std::invalid_argument("unknown on_nan '" + c.on_nan + "' (known: stop, skip)");
  }
  if (c.memory_format != "auto" && c.memory_format != "contiguous" &&
      c.memory_format != "channels-last") {
    throw std::invalid_argument("unknown memory format '" + c.memory_format +
                                "' (known: auto, contiguous, channels-last)");
  }
}

// Model initialisation draws from LibTorch's global generator: serialise seeding + building so
// two trainers created at once in one process still get the weights their seeds promise.
std::mutex init_mutex;

}  // namespace

Trainer::Trainer(TrainConfig config) : config_(std::move(config)), device_(torch::kCPU) {
  validate(config_);
  sampler_ = data::parse_sampler(config_.sampler);
  augment_ = data::parse_augment(config_.augment);
  schedule_ = parse_lr_schedule(config_.lr_schedule);
  amp_ = parse_amp(config_.amp);
  device_ = resolve_device(config_.device);
  if (amp_ == Amp::kFp16) scaler_ = std::make_unique<LossScaler>(device_);
  transform_.side =
      config_.input_size > 0 ? config_.input_size : models::model_info(config_.model).input_size;
  if (config_.normalize == "fixed") {
    transform_.mean = config_.normalize_mean;
    transform_.std = config_.normalize_std;
  }
  configure_threads(config_.threads);
  configure_allocator();
  guard_onednn_convolutions();
  {
    std::lock_guard<std::mutex> lock(init_mutex);
    torch::manual_seed(config_.seed);
    model_ = models::make_model(config_.model, {config_.num_classes, config_.width_divisor,
                                                config_.in_channels, transform_.side});
  }
  model_->to(device_);
  // Before the gradients are made views of one buffer: each view takes its parameter's strides
  // (channels-last conv weights), the layout autograd expects of a gradient.
  channels_last_ = config_.memory_format == "channels-last" ||
                   (config_.memory_format == "auto" && device_.is_cpu());
  if (channels_last_) {
    torch::NoGradGuard no_grad;
    for (auto& p : model_->parameters()) {
      if (p.dim() == 4) p.set_data(p.contiguous(torch::MemoryFormat::ChannelsLast));
    }
  }
  trainable_ = model_->parameters();
  if (config_.freeze_backbone) {
    // The zoo's networks end with their classifier: that child is the head.
    const auto children = model_->children();
    const auto head = children.empty() ? std::vector<torch::Tensor>{}
                                       : children.back()->parameters(/*recurse=*/true);
    if (head.empty()) {
      throw std::invalid_argument("freeze_backbone: model '" + config_.model +
                                  "' has no trainable last layer");
    }
    for (auto& p : model_->parameters()) p.set_requires_grad(false);
    for (auto p : head) p.set_requires_grad(true);
    trainable_ = head;
  }
  if (config_.distributed.enabled()) {
    collective_ = std::make_unique<dist::Collective>(config_.distributed, device_);
    check_same_on_all_ranks("configuration", describe(config_));
    // The seeds already agree; rank 0's weights everywhere makes it so whatever the seeding.
    std::vector<torch::Tensor> state;
    for (const auto& p : model_->parameters()) state.push_back(p.data());
    for (const auto& b : model_->buffers()) state.push_back(b);
    collective_->broadcast(state);
    // Every gradient is a view into one flat buffer, with two slots after them for the step's
    // loss and stop flag: summed in place bucket by bucket, nothing packed or unpacked.
    const auto& params = trainable_;
    grad_buffer_ = flat_gradients(params, /*tail=*/2);
    gradient_sync_ =
        std::make_unique<dist::GradientSync>(*collective_, params, grad_buffer_,
                                             /*tail=*/2, config_.distributed.bucket_bytes);
    if (config_.sync_bn) {
      auto* collective = collective_.get();
      for (const auto& module : model_->modules(/*include_self=*/false)) {
        if (auto bn = std::dynamic_pointer_cast<models::BatchNorm2dImpl>(module)) {
          bn->set_cross_rank_sum([collective](torch::Tensor& t) { collective->sum({t}); });
        }
      }
    }
  }
  rng_ = std::make_unique<RandomStream>(device_, mix_seed(config_.seed, ~0ull));
  // Distributed ranks already run one slice each (and sum gradients in backward's hooks).
  slice_training_ =
      config_.slice_steps && device_.is_cpu() && !collective_ && trains_in_slices(*model_);
  optimizer_ = make_optimizer(
      {config_.optimizer, config_.lr, config_.momentum, config_.nesterov, config_.weight_decay},
      trainable_);
  // Built again from the real class counts when training data arrives; this one checks the
  // loss options now, so a bad α fails at construction rather than at the first epoch.
  loss_ = losses::make_loss(config_.loss, std::vector<int64_t>(config_.num_classes, 1), device_,
                            /*targets_checked=*/true);

  const bool one_process = !config_.distributed.enabled();
  const bool device_step = config_.device_step == "on" ||
                           (config_.device_step == "auto" && device_.is_cuda() && one_process);
  if (device_step && !one_process) {
    // Their collective reads the loss and the stop flag on the host at every step.
    throw std::invalid_argument("the device step does not run in distributed training");
  }
  const bool graph = device_step && device_.is_cuda() && config_.cuda_graph != "off";
  if (config_.cuda_graph == "on" && !graph) {
    throw std::invalid_argument(
        "CUDA graphs ('on') need a CUDA device and one process: use --cuda-graph auto or off");
  }
  device_step_ = device_step;
  // The host loop on the CPU steps the flat optimizer too: one pass over every parameter instead
  // of torch::optim's dozen small ops per parameter (7% of a LeNet epoch, NOTES §24). Distributed
  // ranks keep torch::optim: their gradients live in the buckets' buffer.
  const bool host_flat =
      device_.is_cpu() && one_process && !trainable_.empty() &&
      std::all_of(trainable_.begin(), trainable_.end(),
                  [](const torch::Tensor& p) { return p.scalar_type() == torch::kFloat32; });
  if (device_step || host_flat) flat_ = std::make_unique<FlatOptimizer>(*optimizer_);
  if (device_step) {
    const auto on = torch::TensorOptions().device(device_);
    sums_ = {torch::zeros({}, on.dtype(torch::kFloat64)), torch::zeros({}, on.dtype(torch::kInt64)),
             torch::zeros({}, on.dtype(torch::kInt64)),   torch::zeros({}, on.dtype(torch::kInt64)),
             torch::zeros({}, on.dtype(torch::kBool)),    torch::zeros({}, on.dtype(torch::kInt64)),
             torch::zeros({}, on.dtype(torch::kFloat64))};
  }
  if (device_step) step_stream_ = std::make_unique<StepStream>(device_);
  if (graph) graph_ = std::make_unique<StepGraph>(device_);
}

void Trainer::set_epochs_done(int64_t epoch) {
  if (epoch < 0) throw std::invalid_argument("epoch must be >= 0");
  epoch_ = epoch;
  partial_ = {};
}

void Trainer::set_partial_epoch(const PartialEpoch& partial) {
  if (partial.epoch != epoch_) {
    throw std::invalid_argument("partial epoch " + std::to_string(partial.epoch) +
                                " is not the next epoch (" + std::to_string(epoch_) + ")");
  }
  if (partial.step < 0 || partial.correct < 0 || partial.skipped < 0 ||
      partial.skipped > partial.step || !std::isfinite(partial.seconds) || partial.seconds < 0) {
    throw std::invalid_argument("partial epoch: step, counts and seconds must be >= 0");
  }
  partial_ = partial;
  if (collective_ && collective_->rank() > 0) {
    partial_.loss_sum = 0;  // rank 0's checkpoint holds the sums of all ranks (interrupt_at)
    partial_.correct = 0;
  }
}

void Trainer::set_batch_sizes(int64_t train, int64_t eval) {
  if (train < 1 || eval < 1) throw std::invalid_argument("batch sizes must be at least 1");
  if (partial_.epoch >= 0) {
    const int64_t samples = partial_.step * config_.batch_size;
    if (samples % train != 0) {
      throw std::invalid_argument("batch size " + std::to_string(train) + " does not divide the " +
                                  std::to_string(samples) +
                                  " samples the interrupted epoch has done");
    }
    partial_.step = samples / train;
  }
  config_.batch_size = train;
  config_.eval_batch_size = eval;
}

std::pair<double, bool> Trainer::backward_and_average(const torch::Tensor& scaled,
                                                      const torch::Tensor& loss, bool stop) {
  const int64_t n = grad_buffer_.size(0);
  grad_buffer_[n - 2].copy_(loss.detach().reshape({}));
  grad_buffer_[n - 1].fill_(stop ? 1.0 : 0.0);
  gradient_sync_->arm();
  scaled.backward();  // each bucket's sum starts as backward completes it
  gradient_sync_->finish();
  grad_buffer_.div_(static_cast<double>(collective_->world_size()));
  const auto tail = grad_buffer_.slice(0, n - 2).cpu();
  return {tail[0].item<double>(), tail[1].item<float>() > 0};
}

void Trainer::optimizer_step(double lr) {
  if (flat_) {
    flat_->step(lr);
  } else {
    optimizer_->step();  // its rate set by the loop (set_rate)
  }
}

void Trainer::clear_gradients(const std::vector<torch::Tensor>& params) {
  if (flat_) {
    flat_->zero_grad();  // views into the flat optimizer's buffer, as below
  } else if (grad_buffer_.defined()) {
    grad_buffer_.zero_();  // the gradients are views into it: backward accumulates in place
  } else {
    for (const auto& p : params) p.mutable_grad().reset();  // set_to_none: no memset
  }
}

void Trainer::reset_graph() {
  if (!graph_) return;
  graph_->reset();
  graph_warmups_ = 0;  // new shapes or weights: warm up again before the next capture
}

void Trainer::check_same_on_all_ranks(const std::string& what, const std::string& description) {
  if (collective_) collective_->check_same(what, description);
}

data::DeviceDataset Trainer::on_device(const torch::Tensor& images, const torch::Tensor& labels,
                                       const char* split) const {
  data::DeviceDataset dataset(images, labels, config_.num_classes, device_);
  if (dataset.channels() != config_.in_channels) {
    throw std::invalid_argument(
        std::string(split) + " images have " + std::to_string(dataset.channels()) +
        " channel(s); the model takes " + std::to_string(config_.in_channels));
  }
  return dataset;
}

void Trainer::set_train_data(const torch::Tensor& images, const torch::Tensor& labels) {
  auto dataset = on_device(images, labels, "training");
  if (collective_) {
    // Each rank shards the same epoch order: the data must be the same everywhere.
    std::ostringstream counts;
    counts << "train_images=" << dataset.size() << "\nclass_counts=";
    for (auto c : dataset.class_counts()) counts << c << ',';
    check_same_on_all_ranks("training data", counts.str() + "\n");
  }
  if (config_.normalize == "dataset") {
    auto [mean, std] = data::channel_statistics(dataset.images());
    for (size_t c = 0; c < std.size(); ++c) {
      if (std[c] <= 0) {
        throw std::invalid_argument("normalize dataset: channel " + std::to_string(c) +
                                    " of the training images is constant (std 0)");
      }
    }
    transform_.mean = std::move(mean);
    transform_.std = std::move(std);
  }
  train_ = std::move(dataset);
  train_labels_cpu_ = train_.labels().cpu();
  loss_ = losses::make_loss(config_.loss, train_.class_counts(), device_, /*targets_checked=*/true);
  reset_graph();  // the captured step read the old dataset and loss
}

void Trainer::set_test_data(const torch::Tensor& images, const torch::Tensor& labels) {
  test_ = on_device(images, labels, "test");
}

void Trainer::set_val_data(const torch::Tensor& images, const torch::Tensor& labels) {
  val_ = on_device(images, labels, "validation");
}

void Trainer::train_mode() {
  model_->train();
  if (!config_.freeze_backbone) return;
  const auto children = model_->children();
  for (size_t i = 0; i + 1 < children.size(); ++i) children[i]->eval();
}

void Trainer::check_normalisation_known(const char* op) const {
  if (config_.normalize == "dataset" && transform_.mean.empty()) {
    throw std::logic_error(std::string(op) +
                           ": normalize 'dataset' needs the training data first (its statistics)");
  }
}

std::vector<int64_t> Trainer::train_class_counts() const {
  if (train_.empty()) throw std::logic_error("no training data has been set");
  return train_.class_counts();
}

EpochResult Trainer::train_epoch(const ProgressFn& progress, const std::atomic<bool>* cancel,
                                 bool with_test) {
  if (train_.empty()) throw std::logic_error("no training data has been set");
  configure_threads(config_.threads);  // OpenMP thread counts are per calling thread
  c10::AutoGradMode grad(true);
  train_mode();
  if (loss_->set_epoch(epoch_)) reset_graph();  // deferred re-weighting began
  RandomStream::Scope random(*rng_);

  const auto start = std::chrono::steady_clock::now();
  auto generator = at::detail::createCPUGenerator(mix_seed(config_.seed, epoch_));
  auto order =
      data::epoch_indices(sampler_, train_labels_cpu_, config_.num_classes, generator).to(device_);
  const int64_t world = collective_ ? collective_->world_size() : 1;
  if (world > 1) {
    // DistributedSampler's convention: the order padded with its own start to a multiple of the
    // world size, rank r taking every world-th index from r. Step k of the ranks together then
    // covers the samples step k of one process with world times the batch would.
    const int64_t total = (order.size(0) + world - 1) / world * world;
    if (total > order.size(0))
      order = torch::cat({order, order.slice(0, 0, total - order.size(0))});
    order = order.slice(0, collective_->rank(), total, world).contiguous();
  }
  const int64_t n = order.size(0);  // this rank's samples
  const int64_t steps = (n + config_.batch_size - 1) / config_.batch_size;
  // Every step's rate, from its place in the run: epochs done so far ran at this epoch's steps.
  const auto rates =
      epoch_learning_rates(schedule_, config_.lr, epoch_ * steps, steps,
                           config_.schedule_epochs * steps, config_.warmup_epochs * steps);
  const auto set_rate = [&](int64_t step) {
    for (auto& group : optimizer_->param_groups()) group.options().set_lr(rates[step]);
  };

  // Running sums stay on the device: reading them forces a sync, done only for progress. The
  // device step keeps its own, in place (a captured graph holds their addresses).
  auto loss_sum =
      device_step_
          ? sums_.loss_sum
          : torch::zeros({}, torch::TensorOptions().dtype(torch::kFloat64).device(device_));
  auto correct =
      device_step_ ? sums_.correct
                   : torch::zeros({}, torch::TensorOptions().dtype(torch::kInt64).device(device_));
  if (device_step_) {
    loss_sum.zero_();
    correct.zero_();
    sums_.halted.fill_(false);
    sums_.bad_step.fill_(-1);
  }
  const auto& params = trainable_;
  int64_t skipped = 0;
  int64_t first = 0;
  double carried_seconds = 0;
  if (partial_.epoch == epoch_) {  // continue an interrupted epoch where it stopped
    if (partial_.step > steps) {
      throw std::invalid_argument("partial epoch: step " + std::to_string(partial_.step) +
                                  " is past the epoch's " + std::to_string(steps) + " steps");
    }
    first = partial_.step;
    loss_sum.fill_(partial_.loss_sum);
    correct.fill_(partial_.correct);
    skipped = partial_.skipped;
    carried_seconds = partial_.seconds;
  }
  if (device_step_) {
    sums_.skipped.fill_(skipped);
    sums_.step.fill_(first);
    // In place while the size holds: a captured step reads its rate from here.
    const auto host_rates = torch::tensor(rates, torch::kFloat64);
    if (!step_rates_.defined() || step_rates_.numel() != steps) {
      step_rates_ = host_rates.to(device_);
      reset_graph();
    } else {
      step_rates_.copy_(host_rates);
    }
  }
  partial_ = {};
  const auto elapsed = [&] {
    return carried_seconds +
           std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };

  // Keeps what the epoch has done before `step`, for the next train_epoch to continue. With
  // `together` (all ranks stop at this step) rank 0 keeps the sums of all ranks, the others none:
  // only rank 0's checkpoint is written, and the epoch's end sums over ranks again.
  const auto interrupt_at = [&](int64_t step, bool together) {
    if (device_step_) skipped = std::get<2>(read_device_sums(steps));  // a halted epoch throws here
    if (collective_ && together) {
      collective_->sum({loss_sum, correct});
      if (collective_->rank() > 0) {
        loss_sum.zero_();
        correct.zero_();
      }
    }
    partial_ = {epoch_, step, loss_sum.item<double>(), correct.item<int64_t>(), skipped, elapsed()};
  };

  // The device step runs on a side stream (CUDA graphs are captured off the default stream) and
  // its progress figures are read without waiting on the queue.
  std::optional<StepStream::Scope> step_stream;
  if (device_step_) step_stream.emplace(*step_stream_);
  LaggedRead progress_read;
  int64_t progress_reported = first;
  for (int64_t step = first; step < steps; ++step) {
    // Distributed ranks decide to stop together, through the step's collective (below).
    if (!collective_ && cancel != nullptr && cancel->load()) {
      interrupt_at(step, false);
      throw Cancelled();
    }
    bool stop_after_step = false;
    try {
      const int64_t begin = step * config_.batch_size;
      const auto indices = order.slice(0, begin, std::min(n, begin + config_.batch_size));
      if (device_step_) {
        if (graph_ && indices.size(0) == config_.batch_size) {
          graph_step(indices);
        } else {
          device_step(indices);  // the last, partial batch: the same step, uncaptured
        }
        if (progress && ((step + 1) % config_.progress_every == 0 || step + 1 == steps)) {
          progress_read.request(torch::stack({loss_sum, sums_.skipped.to(torch::kFloat64)}),
                                step + 1);
          if (auto landed = progress_read.latest(); landed && landed->second > progress_reported) {
            progress_reported = landed->second;
            const double sum = landed->first[0].item<double>(),
                         dropped = landed->first[1].item<double>();
            progress({epoch_, progress_reported, steps,
                      sum / (static_cast<double>(progress_reported) - dropped)});
          }
        }
        continue;
      }
      auto batch = train_.gather(indices, transform_, &augment_);
      clear_gradients(params);
      std::optional<SlicedForward> sliced;
      const auto logits = train_forward(batch.images, sliced);
      // The loss in float32, whatever precision the last layer ran in.
      auto loss = loss_->forward(logits.to(torch::kFloat32), batch.labels);
      const auto non_finite = [&](double value) {
        if (config_.on_nan == "stop")
          throw NonFiniteLoss(non_finite_message(value, epoch_, step, steps));
        ++skipped;
      };
      if (collective_) {
        // The gradients, the loss and the stop flag cross ranks in the buckets' collectives.
        const auto [value, stop] = backward_and_average(scaler_ ? scaler_->scale(loss) : loss, loss,
                                                        cancel != nullptr && cancel->load());
        stop_after_step = stop;
        if (!std::isfinite(value)) {
          non_finite(value);
          if (stop_after_step) {
            interrupt_at(step + 1, true);
            throw Cancelled();
          }
          continue;
        }
      } else {
        const double value = loss.item<double>();
        if (!std::isfinite(value)) {
          non_finite(value);
          continue;
        }
        train_backward(scaler_ ? scaler_->scale(loss) : loss, sliced);
      }
      set_rate(step);
      const auto clip = [&] {
        if (config_.clip_grad_norm > 0) clip_grad_norm(params, config_.clip_grad_norm);
      };
      if (scaler_) {
        if (scaler_->unscale(params)) {
          clip();  // the true gradients: after the unscale, as PyTorch's AMP recipe does
          optimizer_step(rates[step]);
        }
        scaler_->update();
      } else {
        clip();
        optimizer_step(rates[step]);
      }
      {
        torch::NoGradGuard no_grad;
        loss_sum += loss.detach();
        correct += logits.argmax(1).eq(batch.labels).sum();
      }
    } catch (const std::exception& e) {
      if (!is_out_of_memory(e)) throw;
      interrupt_at(step, false);  // as a cancel does; then free what the failed step held
      clear_gradients(params);
      release_cached_memory(device_);
      throw OutOfMemory("out of memory at batch size " + std::to_string(config_.batch_size) +
                        " (epoch " + std::to_string(epoch_) + ", step " + std::to_string(step + 1) +
                        " of " + std::to_string(steps) + "): " + first_line(e) +
                        "; the weights are as after the step before: train on with a smaller "
                        "batch size");
    }
    if (progress && ((step + 1) % config_.progress_every == 0 || step + 1 == steps)) {
      progress({epoch_, step + 1, steps, loss_sum.item<double>() / (step + 1 - skipped)});
    }
    if (stop_after_step) {
      interrupt_at(step + 1, true);
      throw Cancelled();
    }
  }
  if (collective_) collective_->sum({loss_sum, correct});  // the epoch's figures over all ranks
  double loss_total = 0;
  int64_t correct_total = 0;
  if (device_step_) {
    std::tie(loss_total, correct_total, skipped) = read_device_sums(steps);  // the one wait
    step_stream.reset();
    if (progress && progress_reported < steps) {
      progress({epoch_, steps, steps, loss_total / static_cast<double>(steps - skipped)});
    }
  } else {
    loss_total = loss_sum.item<double>();
    correct_total = correct.item<int64_t>();
  }

  EpochResult result;
  result.epoch = epoch_;
  result.steps = steps;
  // Mean over the steps that trained (NaN when none did: every step was skipped).
  result.loss =
      steps > skipped ? loss_total / static_cast<double>(world * (steps - skipped)) : std::nan("");
  result.skipped_steps = skipped;
  result.train_acc = static_cast<double>(correct_total) / static_cast<double>(n * world);
  result.seconds = elapsed();
  ++epoch_;
  try {
    if (with_test && !test_.empty()) {
      result.has_test = true;
      result.test = evaluate(test_, nullptr, cancel);
    }
    if (!val_.empty()) {
      result.has_val = true;
      result.val = evaluate(val_, &result.val_loss, cancel);
    }
  } catch (const Cancelled&) {
    // The epoch has trained: it becomes an epoch interrupted after its last step, which a resume
    // finishes by evaluating it (its figures would be lost if it counted as done).
    --epoch_;
    partial_ = {epoch_, steps, loss_total, correct_total, skipped, result.seconds};
    throw;
  }
  return result;
}

std::pair<metrics::Metrics, double> Trainer::evaluate_val(const std::atomic<bool>* cancel) {
  if (val_.empty()) throw std::logic_error("no validation data has been set");
  configure_threads(config_.threads);
  double loss = 0;
  auto m = evaluate(val_, &loss, cancel);
  return {std::move(m), loss};
}

metrics::Metrics Trainer::evaluate_test(const std::atomic<bool>* cancel) {
  if (test_.empty()) throw std::logic_error("no test data has been set");
  configure_threads(config_.threads);
  return evaluate(test_, nullptr, cancel);
}

void Trainer::device_step(const torch::Tensor& indices) {
  auto batch = train_.gather(indices, transform_, &augment_);
  std::optional<SlicedForward> sliced;
  const auto logits = train_forward(batch.images, sliced);
  auto loss = loss_->forward(logits.to(torch::kFloat32), batch.labels);
  flat_->zero_grad();
  // Backward also for a non-finite loss: its gradients are never applied (`take` below).
  train_backward(scaler_ ? scaler_->scale(loss) : loss, sliced);

  torch::NoGradGuard no_grad;
  auto& s = sums_;
  const auto value = loss.detach().to(torch::kFloat64);
  const auto bad = value.isfinite().logical_not();
  torch::Tensor counted;  // this step trains and counts: a finite loss, no earlier halt
  if (config_.on_nan == "stop") {
    // The first bad step halts the epoch: it and every later step change no weight, and the
    // host throws at its next read (read_device_sums) naming that step.
    const auto first_bad = bad.logical_and(s.halted.logical_not());
    s.bad_step.copy_(torch::where(first_bad, s.step, s.bad_step));
    s.bad_value.copy_(torch::where(first_bad, value, s.bad_value));
    s.halted.logical_or_(bad);
    counted = s.halted.logical_not();
  } else {
    s.skipped.add_(bad.to(torch::kInt64));
    counted = bad.logical_not();
  }
  auto take = counted;
  if (scaler_) {
    // fp16: an overflowing gradient skips the update and shrinks the scale, as in the host loop.
    take = take.logical_and(scaler_->unscale_on_device({flat_->gradients()}).eq(0));
    scaler_->update_where(counted);
  }
  // On the device, no read: a skipped step's gradients (non-finite) are never applied anyway.
  if (config_.clip_grad_norm > 0) flat_->clip_grad_norm(config_.clip_grad_norm);
  flat_->step(take.to(torch::kFloat32), step_rates_.index_select(0, s.step.view({1})));
  const auto dropped = counted.logical_not();
  s.loss_sum.add_(value.masked_fill(dropped, 0));
  s.correct.add_(logits.argmax(1).eq(batch.labels).sum().masked_fill(dropped, 0));
  s.step.add_(1);
}

void Trainer::graph_step(const torch::Tensor& indices) {
  if (!graph_indices_.defined() || graph_indices_.size(0) != indices.size(0)) {
    reset_graph();  // a new batch size
    graph_indices_ = torch::empty_like(indices);
  }
  graph_indices_.copy_(indices);
  if (graph_->captured()) {
    graph_->replay();
  } else if (graph_warmups_ < kGraphWarmups) {
    device_step(graph_indices_);
    ++graph_warmups_;
  } else {
    try {
      graph_->capture([this] { device_step(graph_indices_); });  // records; runs nothing
    } catch (const std::exception& e) {
      // No fallback: a capture that fails midway can leave the allocator's capture state and
      // anything made during it unusable, so going on uncaptured in this process is not safe.
      // Running out of memory stays an OutOfMemory (a smaller batch is the way on).
      if (is_out_of_memory(e)) {
        throw OutOfMemory("out of memory at batch size " + std::to_string(config_.batch_size) +
                          " while capturing the train step as a CUDA graph: " + first_line(e) +
                          "; train with a smaller batch size or --cuda-graph off");
      }
      throw std::runtime_error("the train step could not be captured as a CUDA graph (" +
                               first_line(e) + "): train with --cuda-graph off");
    }
    graph_->replay();
  }
}

std::tuple<double, int64_t, int64_t> Trainer::read_device_sums(int64_t steps) {
  const auto& s = sums_;
  const auto f64 = torch::kFloat64;
  const auto host = torch::stack({s.loss_sum, s.correct.to(f64), s.skipped.to(f64),
                                  s.halted.to(f64), s.bad_step.to(f64), s.bad_value})
                        .cpu();
  const auto* h = host.data_ptr<double>();
  if (h[3] != 0) {
    throw NonFiniteLoss(non_finite_message(h[5], epoch_, static_cast<int64_t>(h[4]), steps));
  }
  return {h[0], static_cast<int64_t>(h[1]), static_cast<int64_t>(h[2])};
}

torch::Tensor Trainer::train_forward(const torch::Tensor& images,
                                     std::optional<SlicedForward>& sliced) {
  const int64_t n = images.size(0);
  if (const int64_t slices = slice_training_ ? slice_count(device_, n) : 1; slices > 1) {
    sliced.emplace(n, slices, [&](int64_t begin, int64_t end) {
      AutocastScope autocast(amp_, device_);
      return model_->forward(laid_out(images.slice(0, begin, end)));
    });
    return sliced->logits();
  }
  AutocastScope autocast(amp_, device_);
  return model_->forward(laid_out(images));
}

void Trainer::train_backward(const torch::Tensor& scaled, std::optional<SlicedForward>& sliced) {
  if (sliced) {
    sliced->backward(scaled, trainable_);
  } else {
    scaled.backward();
  }
}

torch::Tensor Trainer::laid_out(torch::Tensor images) const {
  return channels_last_ && images.dim() == 4 ? images.contiguous(torch::MemoryFormat::ChannelsLast)
                                             : std::move(images);
}

bool Trainer::infers_on_one_thread(int64_t count) const {
  return device_.is_cpu() &&
         count * config_.in_channels * transform_.side * transform_.side <= kSmallInput;
}

torch::Tensor Trainer::infer(const torch::Tensor& images) {
  const int64_t n = images.size(0);
  const int64_t slices = slice_count(device_, n);
  if (slices == 1) {
    // A batch of a few small images (one 28 x 28 image: 216 us on two threads, 150 us on one)
    // runs on this thread alone; larger work keeps the intra-op threads.
    std::optional<SingleThreadScope> one_thread;
    std::optional<DirectConvolutionScope> direct;
    if (infers_on_one_thread(n)) {
      one_thread.emplace();
      direct.emplace();
    }
    AutocastScope autocast(amp_, device_);
    return model_->forward(laid_out(images));
  }
  std::vector<torch::Tensor> parts(slices);
  for_each_slice(n, slices, [&](int64_t i, int64_t begin, int64_t end) {
    // Grad mode and autocast are thread-local: the pool's threads have their own.
    torch::NoGradGuard no_grad;
    AutocastScope autocast(amp_, device_);
    parts[i] = model_->forward(laid_out(images.slice(0, begin, end)));
  });
  return torch::cat(parts);
}

void Trainer::for_batch_shares(
    int64_t batches, int64_t shares,
    const std::function<void(int64_t, int64_t, int64_t, const Forward&)>& each) {
  if (shares == 1) {
    each(0, 0, batches, [&](const torch::Tensor& x) { return infer(x); });
    return;
  }
  for_each_slice(batches, shares, [&](int64_t i, int64_t first, int64_t last) {
    // Grad mode and autocast are thread-local: the pool's threads have their own.
    torch::NoGradGuard no_grad;
    AutocastScope autocast(amp_, device_);
    each(i, first, last, [&](const torch::Tensor& x) { return model_->forward(laid_out(x)); });
  });
}

metrics::Metrics Trainer::evaluate(const data::DeviceDataset& dataset, double* loss_mean,
                                   const std::atomic<bool>* cancel) {
  if (loss_mean != nullptr && !loss_) throw std::logic_error("no training data has been set");
  check_normalisation_known("evaluate");
  torch::NoGradGuard no_grad;
  model_->eval();
  // Distributed: each rank evaluates its contiguous share; the confusion matrices are summed.
  const int64_t world = collective_ ? collective_->world_size() : 1;
  const int64_t rank = collective_ ? collective_->rank() : 0;
  const int64_t from = dataset.size() * rank / world;
  const int64_t to = dataset.size() * (rank + 1) / world;
  const int64_t batch_size = config_.eval_batch_size;
  const int64_t batches = (to - from + batch_size - 1) / batch_size;
  struct Sums {
    torch::Tensor confusion, ranks, loss;
  };
  const auto zero_sums = [&] {
    const auto i64 = torch::TensorOptions().dtype(torch::kInt64).device(device_);
    return Sums{torch::zeros({config_.num_classes, config_.num_classes}, i64),
                torch::zeros({config_.num_classes}, i64),  // for top-k accuracy
                // float64 so that summing thousands of batch losses loses nothing
                torch::zeros({1}, i64.dtype(torch::kFloat64))};
  };
  // Batches [first, last) into `sums`; `forward` is the network's logits for a batch's inputs.
  const auto add_batches = [&](int64_t first, int64_t last, Sums& sums, const auto& forward) {
    for (int64_t b = first; b < last; ++b) {
      if (!collective_ && cancel != nullptr && cancel->load()) throw Cancelled();
      const int64_t begin = from + b * batch_size;
      auto batch = dataset.slice(begin, std::min(to, begin + batch_size), transform_);
      auto logits = forward(batch.images);
      sums.confusion +=
          metrics::confusion_matrix(batch.labels, logits.argmax(1), config_.num_classes);
      sums.ranks += metrics::rank_counts(logits, batch.labels);
      if (loss_mean != nullptr) {
        // the loss is a batch mean: weigh it by the batch's images
        sums.loss += loss_->forward(logits.to(torch::kFloat32), batch.labels).to(torch::kFloat64) *
                     static_cast<double>(batch.labels.size(0));
      }
    }
  };
  // Per share: the batches are the ones one loop makes, so the figures are the same whatever the
  // threads (the loss up to the order of its float64 sum).
  std::vector<Sums> parts;
  try {
    const int64_t shares = batch_share_count(device_, batches);
    parts.resize(shares);
    for_batch_shares(batches, shares,
                     [&](int64_t i, int64_t first, int64_t last, const Forward& forward) {
                       parts[i] = zero_sums();
                       add_batches(first, last, parts[i], forward);
                     });
  } catch (const std::exception& e) {
    train_mode();
    if (!is_out_of_memory(e)) throw;
    release_cached_memory(device_);
    throw OutOfMemory("out of memory evaluating at batch size " +
                      std::to_string(config_.eval_batch_size) + ": " + first_line(e) +
                      "; evaluate with a smaller batch size");
  }
  auto [confusion, ranks, loss_sum] = parts[0];
  for (size_t i = 1; i < parts.size(); ++i) {
    confusion += parts[i].confusion;
    ranks += parts[i].ranks;
    loss_sum += parts[i].loss;
  }
  train_mode();
  if (collective_) collective_->sum({confusion, ranks, loss_sum});
  if (loss_mean != nullptr) {
    *loss_mean =
        loss_sum.item<double>() / static_cast<double>(std::max<int64_t>(1, dataset.size()));
  }
  return metrics::compute_metrics(confusion, ranks);
}

torch::Tensor Trainer::predict(const torch::Tensor& images) {
  const bool grey_stack = images.dim() == 3 && config_.in_channels == 1;
  if ((!grey_stack && (images.dim() != 4 || images.size(1) != config_.in_channels)) ||
      images.scalar_type() != torch::kUInt8 || images.size(0) == 0) {
    throw std::invalid_argument("predict: images must be a non-empty [N, " +
                                std::to_string(config_.in_channels) + ", H, W] uint8 tensor");
  }
  check_normalisation_known("predict");
  return evaluate_batches(
      images.size(0),
      [&](int64_t begin, int64_t end) {
        return data::to_model_input(images.slice(0, begin, end).to(device_), transform_);
      },
      /*softmax=*/true);
}

torch::Tensor Trainer::logits(const torch::Tensor& inputs) {
  if (inputs.dim() != 4 || inputs.scalar_type() != torch::kFloat32 || inputs.size(0) == 0 ||
      inputs.size(1) != config_.in_channels || inputs.size(2) != transform_.side ||
      inputs.size(3) != transform_.side) {
    const auto side = std::to_string(transform_.side);
    throw std::invalid_argument("logits: inputs must be a non-empty [N, " +
                                std::to_string(config_.in_channels) + ", " + side + ", " + side +
                                "] float32 tensor");
  }
  return evaluate_batches(
      inputs.size(0),
      [&](int64_t begin, int64_t end) { return inputs.slice(0, begin, end).to(device_); },
      /*softmax=*/false);
}

torch::Tensor Trainer::evaluate_batches(int64_t count,
                                        const std::function<torch::Tensor(int64_t, int64_t)>& input,
                                        bool softmax) {
  configure_threads(config_.threads);
  torch::NoGradGuard no_grad;
  model_->eval();
  const int64_t batch_size = config_.eval_batch_size;
  const int64_t batches = (count + batch_size - 1) / batch_size;
  std::vector<torch::Tensor> out(batches);
  for_batch_shares(
      batches, batch_share_count(device_, batches),
      [&](int64_t, int64_t first, int64_t last, const Forward& forward) {
        for (int64_t b = first; b < last; ++b) {
          const int64_t begin = b * batch_size;
          auto logits =
              forward(input(begin, std::min(count, begin + batch_size))).to(torch::kFloat32);
          out[b] = (softmax ? torch::softmax(logits, /*dim=*/1) : logits).to(torch::kCPU);
        }
      });
  train_mode();
  return out.size() == 1 ? out[0] : torch::cat(out);  // one batch: no copy
}

NamedTensors Trainer::state_dict() const {
  NamedTensors state;
  for (const auto& item : model_->named_parameters(/*recurse=*/true)) {
    // contiguous: callers write the raw bytes in NCHW order, whatever the training layout.
    state.emplace_back(
        item.key(), item.value().detach().to(torch::kCPU).clone(torch::MemoryFormat::Contiguous));
  }
  for (const auto& item : model_->named_buffers(/*recurse=*/true)) {
    state.emplace_back(
        item.key(), item.value().detach().to(torch::kCPU).clone(torch::MemoryFormat::Contiguous));
  }
  return state;
}

void Trainer::load_state_dict(const NamedTensors& state) {
  std::map<std::string, torch::Tensor> targets;
  for (const auto& item : model_->named_parameters(true)) targets[item.key()] = item.value();
  for (const auto& item : model_->named_buffers(true)) targets[item.key()] = item.value();
  TensorSpecs expected;
  for (const auto& [name, t] : targets) expected[name] = {t.sizes().vec(), t.scalar_type()};

  const std::string where = "checkpoint does not match model '" + config_.model + "'";
  const auto given = match_tensors(expected, state, where);
  require_all(expected, given, where);
  require_finite(state, "checkpoint weights are unusable");
  // Everything checked: only now copy, so a bad file never leaves a half-loaded model.
  torch::NoGradGuard no_grad;
  for (auto& [name, target] : targets) target.copy_(given.at(name));
}

NamedTensors Trainer::train_state() const {
  if (flat_) flat_->store();  // the flat optimizer's moments into optimizer_'s saved format
  auto state = optimizer_state(*optimizer_, *model_);
  state.emplace_back(rng_->name(), rng_->state().clone());
  return state;
}

void Trainer::load_train_state(const NamedTensors& state) {
  torch::Tensor rng;
  for (const auto& [name, t] : state) {
    if (name == rng_->name()) {
      rng = t;
    } else if (name != "rng.cpu" && name != "rng.cuda" && !is_optimizer_entry(name)) {
      throw std::invalid_argument("training state: unexpected tensor '" + name + "'");
    }
    // The other device's stream (a run moved between CPU and GPU) does not apply: the seeded
    // stream stays.
  }
  const auto before = rng_->state().clone();
  if (rng.defined()) rng_->set_state(rng);
  try {
    load_optimizer_state(*optimizer_, *model_, state);
    if (flat_) flat_->load();
  } catch (...) {
    rng_->set_state(before);  // all or nothing
    throw;
  }
}

}  // namespace torchfocal::train
