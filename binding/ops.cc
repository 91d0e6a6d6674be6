#include "binding/ops.h"

#include <cmath>
#include <cstring>

#include "bench/native/focal_op_bench.h"
#include "binding/convert.h"
#include "binding/workers/task_worker.h"
#include "src/ops/value_and_grad.h"
#include "src/train/runtime.h"

namespace torchfocal::binding {
namespace {

// The largest class count an empty batch may claim: with rows the data bounds it (C <= values),
// without rows nothing does, and a scalar alpha is expanded to C values.
constexpr double kMaxEmptyClasses = double(1 << 24);

// The element count of `shape`, checked against the typed array's before anything is allocated:
// a shape may claim far more than the data holds (a zero dimension makes the count 0).
double Elements(const std::vector<int64_t>& shape) {
  double n = 1;
  for (int64_t d : shape) n *= static_cast<double>(d);
  return n;
}

// A JS typed array copied into a tensor of `shape` (copied: the worker must not race JS).
torch::Tensor CopyTyped(const Napi::Env& env, const Napi::Value& v, const char* name,
                        const std::vector<int64_t>& shape) {
  if (!v.IsTypedArray())
    throw Napi::TypeError::New(env, std::string("focalLoss: ") + name + " must be a typed array");
  auto arr = v.As<Napi::TypedArray>();
  torch::ScalarType type;
  switch (arr.TypedArrayType()) {
    case napi_float32_array:
      type = torch::kFloat32;
      break;
    case napi_float64_array:
      type = torch::kFloat64;
      break;
    case napi_int32_array:
      type = torch::kInt32;
      break;
    case napi_bigint64_array:
      type = torch::kInt64;
      break;
    default:
      throw Napi::TypeError::New(
          env, std::string("focalLoss: ") + name +
                   " must be a Float32Array, Float64Array, Int32Array or BigInt64Array");
  }
  const double needed = Elements(shape);
  if (needed != static_cast<double>(arr.ElementLength())) {
    throw Napi::RangeError::New(
        env, std::string("focalLoss: ") + name + " has " + std::to_string(arr.ElementLength()) +
                 " values, its shape needs " + std::to_string(static_cast<uint64_t>(needed)));
  }
  auto t = torch::empty(shape, torch::TensorOptions().dtype(type));
  auto* src = static_cast<uint8_t*>(arr.ArrayBuffer().Data()) + arr.ByteOffset();
  if (t.nbytes()) std::memcpy(t.data_ptr(), src, t.nbytes());
  return t;
}

Napi::Value ToTyped(Napi::Env env, const torch::Tensor& t) {
  auto c = t.cpu().contiguous();
  if (c.scalar_type() == torch::kFloat64) {
    auto out = Napi::Float64Array::New(env, c.numel());
    std::memcpy(out.Data(), c.data_ptr(), c.nbytes());
    return out;
  }
  auto f = c.to(torch::kFloat32);
  auto out = Napi::Float32Array::New(env, f.numel());
  std::memcpy(out.Data(), f.data_ptr(), f.nbytes());
  return out;
}

struct Result {
  torch::Tensor loss, grad;
};

}  // namespace

Napi::Value FocalLoss(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  return Guarded(env, "focalLoss", [&]() -> Napi::Value {
    if (info.Length() < 1 || !info[0].IsObject()) {
      throw Napi::TypeError::New(env, "focalLoss: expected an options object");
    }
    auto o = info[0].As<Napi::Object>();
    std::vector<int64_t> shape;
    for (double d : GetNumbers(o, "shape")) {
      if (!(d >= 0) || d != std::floor(d) || d > 9007199254740991.0) {
        throw Napi::RangeError::New(env, "focalLoss: shape must hold integers >= 0");
      }
      shape.push_back(static_cast<int64_t>(d));
    }
    if (shape.empty()) throw Napi::TypeError::New(env, "focalLoss: shape is required");
    ops::FocalOptions options;
    try {
      options.mode = ops::parse_mode(GetString(o, "mode", "softmax"));
      options.reduction = ops::parse_reduction(GetString(o, "reduction", "mean"));
    } catch (const Napi::Error&) {
      throw;
    } catch (const std::exception& e) {
      throw Napi::RangeError::New(env, std::string("focalLoss: ") + e.what());
    }
    if (options.mode == ops::FocalMode::kSoftmax && !GetBool(o, "withLogits", true)) {
      options.mode = ops::FocalMode::kProbs;
    }
    const bool sigmoid = options.mode == ops::FocalMode::kSigmoid;
    if (!sigmoid) {
      if (shape.size() != 2)
        throw Napi::RangeError::New(env, "focalLoss: shape must be [N, C] in softmax mode");
      if (shape[1] < 1 || (shape[0] == 0 && static_cast<double>(shape[1]) > kMaxEmptyClasses)) {
        throw Napi::RangeError::New(
            env, "focalLoss: C (shape[1]) must be >= 1, and at most 2^24 when N is 0, got " +
                     std::to_string(shape[1]));
      }
    }
    options.gamma = GetNumber(o, "gamma", options.gamma);
    if (options.gamma < 0)
      throw Napi::RangeError::New(env, "focalLoss: gamma must be a finite number >= 0");
    options.ignore_index = GetInt(o, "ignoreIndex", options.ignore_index, INT32_MIN, INT32_MAX);
    options.label_smoothing = GetNumber(o, "labelSmoothing", 0);
    const std::string device = GetString(o, "device", "cpu");
    auto alpha = GetNumbers(o, "alpha");
    if (!sigmoid) {
      for (double a : alpha) {
        if (a < 0)
          throw Napi::RangeError::New(env, "focalLoss: alpha must hold numbers >= 0, got " +
                                               Napi::Number::New(env, a).ToString().Utf8Value());
      }
      if (alpha.size() > 1 && static_cast<int64_t>(alpha.size()) != shape[1]) {
        throw Napi::RangeError::New(env,
                                    "focalLoss: alpha has " + std::to_string(alpha.size()) +
                                        " values, expected 1 or C = " + std::to_string(shape[1]));
      }
    } else if (alpha.size() > 1) {
      throw Napi::RangeError::New(env, "focalLoss: alpha must be one number in sigmoid mode");
    }
    auto input = CopyTyped(env, o.Get("input"), "input", shape);
    if (!input.is_floating_point())
      throw Napi::TypeError::New(env, "focalLoss: input must be a Float32Array or Float64Array");
    std::vector<int64_t> target_shape = sigmoid ? shape : std::vector<int64_t>{shape[0]};
    auto target = CopyTyped(env, o.Get("target"), "target", target_shape);
    target = sigmoid ? target.to(input.scalar_type()) : target.to(torch::kInt64);
    if (sigmoid) {
      if (!alpha.empty()) options.sigmoid_alpha = alpha[0];
    } else if (!alpha.empty()) {
      options.alpha = torch::tensor(alpha, torch::kFloat64).to(input.scalar_type());
      if (alpha.size() == 1) options.alpha = options.alpha.expand({shape[1]}).contiguous();
    }
    return TaskWorker<Result>::Start(
        env, "focalLoss", Napi::Object::New(env), {},
        [input, target, options, device]() mutable {
          // Copied to the device here, on the engine thread: resolving "cuda" may initialise it.
          const auto where = train::resolve_device(device);
          if (options.alpha.defined()) options.alpha = options.alpha.to(where);
          auto [loss, grad] =
              ops::focal_loss_value_and_grad(input.to(where), target.to(where), options);
          return Result{loss, grad};
        },
        [](Napi::Env e, Result& r) -> Napi::Value {
          auto out = Napi::Object::New(e);
          out.Set("loss", ToTyped(e, r.loss));
          out.Set("grad", ToTyped(e, r.grad));
          return out;
        },
        nullptr);
  });
}

Napi::Value BenchFocalOp(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  return Guarded(env, "benchFocalOp", [&]() -> Napi::Value {
    if (info.Length() < 1 || !info[0].IsObject()) {
      throw Napi::TypeError::New(env, "benchFocalOp: expected an options object");
    }
    auto o = info[0].As<Napi::Object>();
    const int64_t rows = GetInt(o, "rows", 0, 1, INT32_MAX);
    const int64_t classes = GetInt(o, "classes", 0, 2, INT32_MAX);
    const int threads = static_cast<int>(GetInt(o, "threads", 0, 0, 4096));
    const int repeats = static_cast<int>(GetInt(o, "repeats", 7, 1, 1000));
    const std::string device = GetString(o, "device", "cpu");
    return TaskWorker<bench::FocalOpTiming>::Start(
        env, "benchFocalOp", Napi::Object::New(env), {},
        [=] {
          train::configure_threads(threads);
          return bench::time_focal_op(rows, classes, repeats, 0.02, train::resolve_device(device));
        },
        [](Napi::Env e, bench::FocalOpTiming& t) -> Napi::Value {
          auto out = Napi::Object::New(e);
          out.Set("rows", static_cast<double>(t.rows));
          out.Set("classes", static_cast<double>(t.classes));
          out.Set("threads", t.threads);
          out.Set("fused", t.fused);
          out.Set("crossEntropy", t.cross_entropy);
          out.Set("composed", t.composed);
          return out;
        },
        nullptr);
  });
}

}  // namespace torchfocal::binding
