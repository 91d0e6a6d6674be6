#include "binding/trainer_wrap.h"

#include <cmath>
#include <utility>

#include "binding/convert.h"
#include "binding/workers/task_worker.h"
#include "src/export/onnx_graph.h"

namespace torchfocal::binding {
namespace {

struct Nothing {};
Napi::Value Undefined(Napi::Env env, Nothing&) { return env.Undefined(); }

// View of a JS image stack as a uint8 tensor; the JS array must outlive it (see TaskWorker).
torch::Tensor ImagesTensor(const ImageView& v) {
  return torch::from_blob(v.data, {v.count, v.channels, v.height, v.width}, torch::kUInt8);
}

}  // namespace

Napi::Function TrainerWrap::Init(Napi::Env env) {
  return DefineClass(env, "NativeTrainer",
                     {
                         InstanceMethod<&TrainerWrap::Init>("init"),
                         InstanceMethod<&TrainerWrap::SetData>("setData"),
                         InstanceMethod<&TrainerWrap::TrainEpoch>("trainEpoch"),
                         InstanceMethod<&TrainerWrap::Evaluate>("evaluate"),
                         InstanceMethod<&TrainerWrap::Predict>("predict"),
                         InstanceMethod<&TrainerWrap::Logits>("logits"),
                         InstanceMethod<&TrainerWrap::ExportGraph>("exportGraph"),
                         InstanceMethod<&TrainerWrap::StateDict>("stateDict"),
                         InstanceMethod<&TrainerWrap::LoadStateDict>("loadStateDict"),
                         InstanceMethod<&TrainerWrap::LoadWeights>("loadWeights"),
                         InstanceMethod<&TrainerWrap::TrainState>("trainState"),
                         InstanceMethod<&TrainerWrap::LoadTrainState>("loadTrainState"),
                         InstanceMethod<&TrainerWrap::SetBatchSizes>("setBatchSizes"),
                         InstanceMethod<&TrainerWrap::ClassCounts>("classCounts"),
                         InstanceMethod<&TrainerWrap::SetEpochsDone>("setEpochsDone"),
                         InstanceMethod<&TrainerWrap::SetPartialEpoch>("setPartialEpoch"),
                         InstanceMethod<&TrainerWrap::Info>("info"),
                         InstanceMethod<&TrainerWrap::Cancel>("cancel"),
                         InstanceMethod<&TrainerWrap::Dispose>("dispose"),
                     });
}

TrainerWrap::TrainerWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TrainerWrap>(info) {
  if (info.Length() < 1 || !info[0].IsObject()) {
    throw Napi::TypeError::New(info.Env(), "NativeTrainer: expected an options object");
  }
  config_ = ToTrainConfig(info[0].As<Napi::Object>());
}

std::shared_ptr<train::Trainer> TrainerWrap::Ready(const Napi::Env& env, const char* op) const {
  if (disposed_) throw Napi::Error::New(env, std::string(op) + ": the trainer has been disposed");
  if (busy_) {
    throw Napi::Error::New(
        env, std::string(op) + ": the trainer is busy with another call (await it first)");
  }
  if (!trainer_) throw Napi::Error::New(env, std::string(op) + ": call init() first");
  return trainer_;
}

std::shared_ptr<train::Trainer> TrainerWrap::Claim(const Napi::Env& env, const char* op) {
  auto trainer = Ready(env, op);
  busy_ = true;
  return trainer;
}

std::function<void()> TrainerWrap::Release() {
  return [this] { busy_ = false; };  // the worker holds a reference to this object meanwhile
}

Napi::Value TrainerWrap::Init(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  if (disposed_ || busy_ || trainer_) {
    throw Napi::Error::New(env, "init: the trainer is already initialised, busy or disposed");
  }
  busy_ = true;
  auto config = config_;
  auto slot = std::make_shared<std::shared_ptr<train::Trainer>>();
  return TaskWorker<Nothing>::Start(
      env, "init", Value(), {},
      [config, slot] {
        *slot = std::make_shared<train::Trainer>(config);
        return Nothing{};
      },
      [this, slot](Napi::Env e, Nothing&) {
        trainer_ = *slot;
        return e.Undefined();
      },
      Release());
}

Napi::Value TrainerWrap::SetData(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  if (info.Length() < 4 || !info[0].IsString()) {
    throw Napi::TypeError::New(env, "setData(split, images, labels, shape)");
  }
  const std::string split = info[0].As<Napi::String>();
  if (split != "train" && split != "test" && split != "val") {
    throw Napi::RangeError::New(env, "setData: split must be 'train', 'test' or 'val'");
  }
  auto view = GetImages(env, info[1], info[3]);
  if (!info[2].IsTypedArray() ||
      info[2].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
    throw Napi::TypeError::New(env, "setData: labels must be an Int32Array");
  }
  auto labels = info[2].As<Napi::Int32Array>();
  if (static_cast<int64_t>(labels.ElementLength()) != view.count) {
    throw Napi::RangeError::New(env, "setData: " + std::to_string(labels.ElementLength()) +
                                         " labels for " + std::to_string(view.count) + " images");
  }
  auto trainer = Claim(env, "setData");
  int32_t* label_data = labels.Data();
  return TaskWorker<Nothing>::Start(
      env, "setData", Value(), {info[1], info[2]},
      [trainer, split, view, label_data] {
        auto images = ImagesTensor(view);
        auto y = torch::from_blob(label_data, {view.count}, torch::kInt32);
        if (split == "train") {
          trainer->set_train_data(images, y);
        } else if (split == "val") {
          trainer->set_val_data(images, y);
        } else {
          trainer->set_test_data(images, y);
        }
        return Nothing{};
      },
      Undefined, Release());
}

Napi::Value TrainerWrap::TrainEpoch(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  Napi::ThreadSafeFunction progress;
  const bool has_progress = info.Length() > 0 && info[0].IsFunction();
  if (info.Length() > 0 && !info[0].IsFunction() && !info[0].IsUndefined()) {
    throw Napi::TypeError::New(env, "trainEpoch: onProgress must be a function");
  }
  if (info.Length() > 1 && !info[1].IsBoolean() && !info[1].IsUndefined()) {
    throw Napi::TypeError::New(env, "trainEpoch: evaluate must be a boolean");
  }
  const bool with_test = info.Length() < 2 || info[1].IsUndefined() || info[1].As<Napi::Boolean>();
  auto trainer = Claim(env, "trainEpoch");
  cancel_ = false;
  if (has_progress) {
    progress = Napi::ThreadSafeFunction::New(env, info[0].As<Napi::Function>(), "progress", 0, 1);
  }
  return TaskWorker<train::EpochResult>::Start(
      env, "trainEpoch", Value(), {},
      [trainer, progress, has_progress, with_test, this]() mutable {
        train::ProgressFn report;
        if (has_progress) {
          report = [&progress](const train::Progress& p) {
            auto* copy = new train::Progress(p);
            auto status = progress.NonBlockingCall(
                copy, [](Napi::Env e, Napi::Function fn, train::Progress* q) {
                  std::unique_ptr<train::Progress> owned(q);
                  if (e == nullptr || fn.IsEmpty()) return;  // the queue is being finalised
                  try {
                    auto o = Napi::Object::New(e);
                    o.Set("epoch", static_cast<double>(owned->epoch));
                    o.Set("step", static_cast<double>(owned->step));
                    o.Set("steps", static_cast<double>(owned->steps));
                    o.Set("loss", owned->loss);
                    fn.Call({o});
                  } catch (const Napi::Error&) {
                    // A throwing onProgress, or an environment shutting down: progress is
                    // advisory, the epoch goes on.
                  }
                });
            if (status != napi_ok) delete copy;  // queue closed: drop this report
          };
        }
        struct ReleaseOnExit {
          Napi::ThreadSafeFunction& fn;
          bool active;
          ~ReleaseOnExit() {
            if (active) fn.Release();
          }
        } release{progress, has_progress};
        return trainer->train_epoch(report, &cancel_, with_test);
      },
      [](Napi::Env e, train::EpochResult& r) -> Napi::Value { return ToJs(e, r); }, Release());
}

Napi::Value TrainerWrap::Evaluate(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  // evaluate() or evaluate('test'): the test set; evaluate('val'): the validation set, with its
  // loss
  const bool val =
      info.Length() > 0 && info[0].IsString() && info[0].As<Napi::String>().Utf8Value() == "val";
  if (info.Length() > 0 && !info[0].IsUndefined() && !val &&
      !(info[0].IsString() && info[0].As<Napi::String>().Utf8Value() == "test")) {
    throw Napi::RangeError::New(env, "evaluate: split must be 'test' or 'val'");
  }
  auto trainer = Claim(env, "evaluate");
  cancel_ = false;
  using Result = std::pair<metrics::Metrics, double>;
  return TaskWorker<Result>::Start(
      env, "evaluate", Value(), {},
      [trainer, val, this]() -> Result {
        if (val) return trainer->evaluate_val(&cancel_);
        return {trainer->evaluate_test(&cancel_), std::nan("")};
      },
      [val](Napi::Env e, Result& r) -> Napi::Value {
        auto out = ToJs(e, r.first);
        if (val) out.Set("loss", r.second);
        return out;
      },
      Release());
}

Napi::Value TrainerWrap::Predict(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  if (info.Length() < 2) throw Napi::TypeError::New(env, "predict(images, shape)");
  auto view = GetImages(env, info[0], info[1]);
  auto trainer = Claim(env, "predict");
  using Worker = TaskWorker<torch::Tensor>;
  Worker::Run run = [trainer, view] { return trainer->predict(ImagesTensor(view)).contiguous(); };
  Worker::Convert convert = [](Napi::Env e, torch::Tensor& probs) -> Napi::Value {
    auto out = Napi::Float32Array::New(e, probs.numel());
    std::memcpy(out.Data(), probs.data_ptr<float>(), probs.numel() * sizeof(float));
    return out;
  };
  // A few small images (serving one at a time) take well under a millisecond: run them at once.
  // One image that the engine infers on one thread runs on the JS thread itself: no OpenMP
  // team of the JS thread's own.
  if (view.count * view.channels * view.height * view.width <= train::Trainer::kSmallInput) {
    const bool here = view.count == 1 && trainer->infers_on_one_thread(1);
    auto settled = Worker::TryNow(env, "predict", run, convert, here);
    if (settled) {
      Release()();
      return *settled;
    }
  }
  return Worker::Start(env, "predict", Value(), {info[0]}, run, convert, Release());
}

// logits(inputs: Float32Array, count, channels, side): the network's output for inputs taken as
// they are.
Napi::Value TrainerWrap::Logits(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  if (info.Length() < 4 || !info[0].IsTypedArray() ||
      info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
    throw Napi::TypeError::New(env, "logits(inputs: Float32Array, count, channels, side)");
  }
  auto inputs = info[0].As<Napi::Float32Array>();
  int64_t shape[4];
  for (int i = 0; i < 3; ++i) {
    if (!info[i + 1].IsNumber()) throw Napi::TypeError::New(env, "logits: sizes must be numbers");
    const double v = info[i + 1].As<Napi::Number>().DoubleValue();
    if (!(v >= 1 && v <= (1 << 30)) || v != std::floor(v)) {
      throw Napi::RangeError::New(env, "logits: sizes must be positive integers");
    }
    shape[i] = static_cast<int64_t>(v);
  }
  shape[3] = shape[2];
  if (static_cast<double>(shape[0]) * shape[1] * shape[2] * shape[3] !=
      static_cast<double>(inputs.ElementLength())) {
    throw Napi::RangeError::New(env, "logits: " + std::to_string(inputs.ElementLength()) +
                                         " values are not count x channels x side x side");
  }
  auto trainer = Claim(env, "logits");
  float* data = inputs.Data();
  return TaskWorker<torch::Tensor>::Start(
      env, "logits", Value(), {info[0]},
      [trainer, data, shape] {
        return trainer->logits(torch::from_blob(data, {shape[0], shape[1], shape[2], shape[3]}))
            .contiguous();
      },
      [](Napi::Env e, torch::Tensor& logits) -> Napi::Value {
        auto out = Napi::Float32Array::New(e, logits.numel());
        std::memcpy(out.Data(), logits.data_ptr<float>(), logits.numel() * sizeof(float));
        return out;
      },
      Release());
}

// exportGraph(): the network as ONNX operators (src/export/onnx_graph.h), in JS form (convert.h).
Napi::Value TrainerWrap::ExportGraph(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto trainer = Claim(env, "exportGraph");
  return TaskWorker<exporter::OnnxGraph>::Start(
      env, "exportGraph", Value(), {},
      [trainer] { return exporter::onnx_graph(trainer->model(), trainer->input_size()); },
      [](Napi::Env e, exporter::OnnxGraph& graph) -> Napi::Value { return ToJs(e, graph); },
      Release());
}

Napi::Value TrainerWrap::StateDict(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto trainer = Claim(env, "stateDict");
  return TaskWorker<train::NamedTensors>::Start(
      env, "stateDict", Value(), {}, [trainer] { return trainer->state_dict(); },
      [](Napi::Env e, train::NamedTensors& state) -> Napi::Value { return ToJs(e, state); },
      Release());
}

Napi::Value TrainerWrap::LoadStateDict(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto state = ToNamedTensors(env, info.Length() < 1 ? env.Undefined() : info[0], "loadStateDict");
  auto trainer = Claim(env, "loadStateDict");
  return TaskWorker<Nothing>::Start(
      env, "loadStateDict", Value(), {},
      [trainer, state] {
        trainer->load_state_dict(*state);
        return Nothing{};
      },
      Undefined, Release());
}

// loadWeights(tensors, partial): resolves with {loaded: names, reinitialised: [{name,
// fileShape, modelShape}]} (src/train/init_weights.h).
Napi::Value TrainerWrap::LoadWeights(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto state = ToNamedTensors(env, info.Length() < 1 ? env.Undefined() : info[0], "loadWeights");
  const bool partial = info.Length() > 1 && info[1].ToBoolean().Value();
  auto trainer = Claim(env, "loadWeights");
  return TaskWorker<train::InitReport>::Start(
      env, "loadWeights", Value(), {},
      [trainer, state, partial] { return trainer->load_weights(*state, partial); },
      [](Napi::Env e, train::InitReport& report) -> Napi::Value {
        const auto shape = [&e](const std::vector<int64_t>& sizes) {
          auto out = Napi::Array::New(e, sizes.size());
          for (size_t i = 0; i < sizes.size(); ++i) out.Set(i, static_cast<double>(sizes[i]));
          return out;
        };
        auto out = Napi::Object::New(e);
        auto loaded = Napi::Array::New(e, report.loaded.size());
        for (size_t i = 0; i < report.loaded.size(); ++i) loaded.Set(i, report.loaded[i]);
        auto reinitialised = Napi::Array::New(e, report.reinitialised.size());
        for (size_t i = 0; i < report.reinitialised.size(); ++i) {
          const auto& m = report.reinitialised[i];
          auto entry = Napi::Object::New(e);
          entry.Set("name", m.name);
          entry.Set("fileShape", shape(m.file_shape));
          entry.Set("modelShape", shape(m.model_shape));
          reinitialised.Set(i, entry);
        }
        out.Set("loaded", loaded);
        out.Set("reinitialised", reinitialised);
        return out;
      },
      Release());
}

Napi::Value TrainerWrap::TrainState(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto trainer = Claim(env, "trainState");
  return TaskWorker<train::NamedTensors>::Start(
      env, "trainState", Value(), {}, [trainer] { return trainer->train_state(); },
      [](Napi::Env e, train::NamedTensors& state) -> Napi::Value { return ToJs(e, state); },
      Release());
}

Napi::Value TrainerWrap::LoadTrainState(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto state = ToNamedTensors(env, info.Length() < 1 ? env.Undefined() : info[0], "loadTrainState");
  auto trainer = Claim(env, "loadTrainState");
  return TaskWorker<Nothing>::Start(
      env, "loadTrainState", Value(), {},
      [trainer, state] {
        trainer->load_train_state(*state);
        return Nothing{};
      },
      Undefined, Release());
}

Napi::Value TrainerWrap::SetBatchSizes(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) {
    throw Napi::TypeError::New(env, "setBatchSizes: expected {batchSize, evalBatchSize}");
  }
  auto o = info[0].As<Napi::Object>();
  auto trainer = Ready(env, "setBatchSizes");
  const auto& c = trainer->config();
  const int64_t limit = int64_t{1} << 31;
  const int64_t train = GetInt(o, "batchSize", c.batch_size, 1, limit);
  const int64_t eval = GetInt(o, "evalBatchSize", c.eval_batch_size, 1, limit);
  try {
    trainer->set_batch_sizes(train, eval);
  } catch (const std::exception& e) {
    throw Napi::RangeError::New(env, "setBatchSizes: " + Describe(e));
  }
  return env.Undefined();
}

Napi::Value TrainerWrap::ClassCounts(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto trainer = Ready(env, "classCounts");
  try {
    auto counts = trainer->train_class_counts();
    auto out = Napi::Array::New(env, counts.size());
    for (size_t i = 0; i < counts.size(); ++i) out.Set(i, static_cast<double>(counts[i]));
    return out;
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, "classCounts: " + Describe(e));
  }
}

Napi::Value TrainerWrap::SetEpochsDone(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber())
    throw Napi::TypeError::New(env, "setEpochsDone: expected a number");
  auto trainer = Ready(env, "setEpochsDone");
  double n = info[0].As<Napi::Number>().DoubleValue();
  if (!(n >= 0) || n != static_cast<double>(static_cast<int64_t>(n))) {
    throw Napi::RangeError::New(env, "setEpochsDone: expected an integer >= 0");
  }
  trainer->set_epochs_done(static_cast<int64_t>(n));
  return env.Undefined();
}

Napi::Value TrainerWrap::Info(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto out = Napi::Object::New(env);
  out.Set("initialised", trainer_ != nullptr);
  out.Set("busy", busy_);
  out.Set("disposed", disposed_);
  if (trainer_) {
    out.Set("device", trainer_->device().str());
    out.Set("inputSize", static_cast<double>(trainer_->input_size()));
    out.Set("channels", static_cast<double>(trainer_->in_channels()));
    const auto& transform = trainer_->transform();
    if (!transform.mean.empty()) {
      auto mean = Napi::Array::New(env), std = Napi::Array::New(env);
      for (uint32_t c = 0; c < transform.mean.size(); ++c) {
        mean.Set(c, transform.mean[c]);
        std.Set(c, transform.std[c]);
      }
      out.Set("mean", mean);
      out.Set("std", std);
    }
    out.Set("epochsDone", static_cast<double>(trainer_->epochs_done()));
    const auto& p = trainer_->partial_epoch();
    if (p.epoch >= 0) {
      auto partial = Napi::Object::New(env);
      partial.Set("epoch", static_cast<double>(p.epoch));
      partial.Set("step", static_cast<double>(p.step));
      partial.Set("lossSum", p.loss_sum);
      partial.Set("correct", static_cast<double>(p.correct));
      partial.Set("skipped", static_cast<double>(p.skipped));
      partial.Set("seconds", p.seconds);
      out.Set("partialEpoch", partial);
    }
  }
  return out;
}

Napi::Value TrainerWrap::SetPartialEpoch(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) {
    throw Napi::TypeError::New(env, "setPartialEpoch: expected an object");
  }
  auto trainer = Ready(env, "setPartialEpoch");
  auto o = info[0].As<Napi::Object>();
  train::PartialEpoch p;
  p.epoch = GetInt(o, "epoch", -1, 0, INT32_MAX);
  p.step = GetInt(o, "step", 0, 0, INT32_MAX);
  p.loss_sum = GetNumber(o, "lossSum", 0);
  p.correct = GetInt(o, "correct", 0, 0, INT64_C(1) << 52);
  p.skipped = GetInt(o, "skipped", 0, 0, INT32_MAX);
  p.seconds = GetNumber(o, "seconds", 0);
  try {
    trainer->set_partial_epoch(p);
  } catch (const std::exception& e) {
    throw Napi::RangeError::New(env, std::string("setPartialEpoch: ") + e.what());
  }
  return env.Undefined();
}

Napi::Value TrainerWrap::Cancel(const Napi::CallbackInfo& info) {
  cancel_ = true;  // polled by the engine between two steps and between evaluation batches
  return info.Env().Undefined();
}

Napi::Value TrainerWrap::Dispose(const Napi::CallbackInfo& info) {
  if (busy_) {
    throw Napi::Error::New(info.Env(), "dispose: the trainer is busy (cancel and await it first)");
  }
  disposed_ = true;
  trainer_.reset();  // frees the model, the optimizer and the device data now, not at GC
  return info.Env().Undefined();
}

}  // namespace torchfocal::binding
