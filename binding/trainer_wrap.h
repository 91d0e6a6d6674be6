// NativeTrainer: the JS handle of one train::Trainer.
#pragma once

#include <napi.h>

#include <atomic>
#include <memory>

#include "src/train/trainer.h"

namespace torchfocal::binding {

class TrainerWrap : public Napi::ObjectWrap<TrainerWrap> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit TrainerWrap(const Napi::CallbackInfo& info);

 private:
  Napi::Value Init(const Napi::CallbackInfo& info);
  Napi::Value SetData(const Napi::CallbackInfo& info);
  Napi::Value TrainEpoch(const Napi::CallbackInfo& info);
  Napi::Value Evaluate(const Napi::CallbackInfo& info);
  Napi::Value Predict(const Napi::CallbackInfo& info);
  Napi::Value Logits(const Napi::CallbackInfo& info);
  Napi::Value ExportGraph(const Napi::CallbackInfo& info);
  Napi::Value StateDict(const Napi::CallbackInfo& info);
  Napi::Value LoadStateDict(const Napi::CallbackInfo& info);
  Napi::Value LoadWeights(const Napi::CallbackInfo& info);
  Napi::Value TrainState(const Napi::CallbackInfo& info);
  Napi::Value LoadTrainState(const Napi::CallbackInfo& info);
  Napi::Value SetBatchSizes(const Napi::CallbackInfo& info);
  Napi::Value ClassCounts(const Napi::CallbackInfo& info);
  Napi::Value SetEpochsDone(const Napi::CallbackInfo& info);
  Napi::Value SetPartialEpoch(const Napi::CallbackInfo& info);
  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value Cancel(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);

  // Checks that the trainer is built, not disposed and idle (throws a JS Error otherwise).
  std::shared_ptr<train::Trainer> Ready(const Napi::Env& env, const char* op) const;
  // Ready, then marks the trainer busy until the function from Release() runs.
  std::shared_ptr<train::Trainer> Claim(const Napi::Env& env, const char* op);
  std::function<void()> Release();

  train::TrainConfig config_;
  std::shared_ptr<train::Trainer> trainer_;
  bool busy_ = false;
  bool disposed_ = false;
  std::atomic<bool> cancel_{false};
};

}  // namespace torchfocal::binding
