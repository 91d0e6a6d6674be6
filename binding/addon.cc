// The addon's entry: registers NativeTrainer and the free functions.
#include <napi.h>

#include <algorithm>
#include <vector>

#include "binding/convert.h"
#include "binding/ops.h"
#include "binding/trainer_wrap.h"
#include "models/registry.h"
#include "src/data/augment.h"
#include "src/losses/loss.h"
#include "src/train/lr_schedule.h"
#include "src/train/runtime.h"

namespace torchfocal::binding {
namespace {

Napi::Value RuntimeInfo(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto r = train::runtime_info();
  auto devices = Napi::Array::New(env, r.devices.size());
  for (size_t i = 0; i < r.devices.size(); ++i) {
    auto d = Napi::Object::New(env);
    d.Set("name", r.devices[i].name);
    d.Set("totalMemory", static_cast<double>(r.devices[i].total_memory));
    d.Set("capability", r.devices[i].capability);
    devices.Set(i, d);
  }
  auto out = Napi::Object::New(env);
  out.Set("torchVersion", r.torch_version);
  out.Set("torchDir", r.torch_dir);
  out.Set("cudaBuilt", r.cuda_built);
  out.Set("cudaVersion", r.cuda_version);
  out.Set("cudaAvailable", r.cuda_available);
  out.Set("cudaDevices", r.cuda_devices);
  out.Set("devices", devices);
  out.Set("cudnnBuilt", r.cudnn_built);
  out.Set("cudnnVersion", static_cast<double>(r.cudnn_version));
  out.Set("ncclBuilt", r.nccl_built);
  out.Set("glooBuilt", r.gloo_built);
  out.Set("onednn", r.onednn);
  out.Set("onednnConvolutions", r.onednn_convolutions);
  out.Set("cpuCapability", r.cpu_capability);
  out.Set("threads", r.threads);
  out.Set("blasLibrary", r.blas_library);
  out.Set("blasThreads", r.blas_threads);
  out.Set("cxxCompiler", r.cxx_compiler);
  out.Set("cudaCompiler", r.cuda_compiler);
  return out;
}

Napi::Value ModelInfos(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  const auto& infos = models::model_infos();
  auto out = Napi::Array::New(env, infos.size());
  for (size_t i = 0; i < infos.size(); ++i) {
    auto o = Napi::Object::New(env);
    o.Set("name", infos[i].name);
    o.Set("inputSize", static_cast<double>(infos[i].input_size));
    o.Set("description", infos[i].description);
    out.Set(i, o);
  }
  return out;
}

Napi::Value LossInfos(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  const auto& infos = losses::loss_infos();
  auto out = Napi::Array::New(env, infos.size());
  for (size_t i = 0; i < infos.size(); ++i) {
    auto o = Napi::Object::New(env);
    o.Set("name", infos[i].name);
    o.Set("summary", infos[i].summary);
    o.Set("takesWeights", infos[i].takes_weights);
    out.Set(i, o);
  }
  return out;
}

// learningRates({ schedule, lr, steps }) -> Float64Array: every step's rate of a schedule that
// spans `steps` steps, as the trainer applies them (TrainConfig::lr_schedule).
Napi::Value LearningRates(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) {
    throw Napi::TypeError::New(env, "learningRates: expected { schedule, lr, steps }");
  }
  const auto o = info[0].As<Napi::Object>();
  const auto name = GetString(o, "schedule", "constant");
  const double lr = GetNumber(o, "lr", 0.001);
  const int64_t steps = GetInt(o, "steps", 1, 1, int64_t{1} << 26);
  std::vector<double> rates;
  try {
    rates = train::epoch_learning_rates(train::parse_lr_schedule(name), lr, 0, steps, steps);
  } catch (const std::exception& e) {
    throw Napi::RangeError::New(env, std::string("learningRates: ") + e.what());
  }
  auto out = Napi::Float64Array::New(env, rates.size());
  std::copy(rates.begin(), rates.end(), out.Data());
  return out;
}

// augmentSpec(spec) -> the spec checked and in canonical order ("crop:4,flip"), or a RangeError
// naming the bad part: the CLI checks --augment before it loads any data.
Napi::Value AugmentSpec(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) {
    throw Napi::TypeError::New(env, "augmentSpec: expected a string");
  }
  try {
    return Napi::String::New(
        env, data::to_string(data::parse_augment(info[0].As<Napi::String>().Utf8Value())));
  } catch (const std::exception& e) {
    throw Napi::RangeError::New(env, e.what());
  }
}

}  // namespace

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  train::configure_blas();
  exports.Set("NativeTrainer", TrainerWrap::Init(env));
  exports.Set("runtimeInfo", Napi::Function::New<RuntimeInfo>(env, "runtimeInfo"));
  exports.Set("modelInfos", Napi::Function::New<ModelInfos>(env, "modelInfos"));
  exports.Set("focalLoss", Napi::Function::New<FocalLoss>(env, "focalLoss"));
  exports.Set("benchFocalOp", Napi::Function::New<BenchFocalOp>(env, "benchFocalOp"));
  exports.Set("lossInfos", Napi::Function::New<LossInfos>(env, "lossInfos"));
  exports.Set("learningRates", Napi::Function::New<LearningRates>(env, "learningRates"));
  exports.Set("augmentSpec", Napi::Function::New<AugmentSpec>(env, "augmentSpec"));
  return exports;
}

}  // namespace torchfocal::binding

// NODE_API_MODULE pastes the function name into an identifier: it needs an unqualified name.
static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) {
  return torchfocal::binding::Init(env, exports);
}

NODE_API_MODULE(torchfocal, InitAddon)
