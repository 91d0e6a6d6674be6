// One long native operation off the JS thread, settled as a Promise.
#pragma once

#include <napi.h>

#include <functional>
#include <optional>
#include <string>
#include <utility>

#include "binding/convert.h"
#include "binding/workers/engine_thread.h"

namespace torchfocal::binding {

// Runs `run` on the engine thread (a libuv worker waits for it); `convert` turns its result into JS
// on the JS thread. Holds references to its owner and to any JS values whose memory `run` reads, so
// neither is collected while it runs. Every exception becomes a rejection "<op>: <message>",
// with a `code` where callers act on the kind (ErrorCode in convert.h).
template <typename Result>
class TaskWorker final : public Napi::AsyncWorker {
 public:
  using Run = std::function<Result()>;
  using Convert = std::function<Napi::Value(Napi::Env, Result&)>;
  using Done = std::function<void()>;

  static Napi::Promise Start(Napi::Env env, std::string op, Napi::Object owner,
                             std::vector<Napi::Value> keep_alive, Run run, Convert convert,
                             Done done) {
    auto* worker = new TaskWorker(env, std::move(op), owner, std::move(keep_alive), std::move(run),
                                  std::move(convert), std::move(done));
    auto promise = worker->deferred_.Promise();
    worker->Queue();  // libuv owns the worker now and deletes it after OnOK/OnError
    return promise;
  }

  // The same task run at once, the JS thread waiting, when the engine thread is idle (engine
  // thread.h says for what); its promise comes back settled. Empty, having run nothing, when the
  // engine thread is busy: Start it then. `here`: run on the JS thread itself, the engine thread
  // held idle (RunHereWhileEngineIdle: single-threaded CPU work only).
  static std::optional<Napi::Promise> TryNow(Napi::Env env, const std::string& op, const Run& run,
                                             const Convert& convert, bool here = false) {
    auto deferred = Napi::Promise::Deferred::New(env);
    try {
      Result result{};
      const auto job = [&] { result = run(); };
      if (!(here ? RunHereWhileEngineIdle(job) : RunOnIdleEngineThread(job))) return std::nullopt;
      deferred.Resolve(convert(env, result));
    } catch (const Napi::Error& e) {
      deferred.Reject(e.Value());
    } catch (const std::exception& e) {
      auto error = Napi::Error::New(env, op + ": " + Describe(e));
      if (const char* code = ErrorCode(e)) error.Set("code", Napi::String::New(env, code));
      deferred.Reject(error.Value());
    } catch (...) {
      deferred.Reject(Napi::Error::New(env, op + ": unknown native error").Value());
    }
    return deferred.Promise();
  }

 protected:
  void Execute() override {
    try {
      RunOnEngineThread([this] { result_ = run_(); });
    } catch (const std::exception& e) {
      code_ = ErrorCode(e);
      SetError(op_ + ": " + Describe(e));
    } catch (...) {
      SetError(op_ + ": unknown native error");
    }
  }

  // Settling can fail when the environment is being torn down (a worker thread terminated
  // while its task ran): then nobody can observe the promise, and the failure is dropped
  // rather than thrown out of a callback, where it would abort the process.
  void OnOK() override {
    Finish();
    try {
      Napi::HandleScope scope(Env());
      try {
        deferred_.Resolve(convert_(Env(), result_));
      } catch (const Napi::Error& e) {
        deferred_.Reject(e.Value());
      } catch (const std::exception& e) {  // a LibTorch call while converting: never escapes
        deferred_.Reject(Napi::Error::New(Env(), op_ + ": " + Describe(e)).Value());
      }
    } catch (const Napi::Error&) {
    }
  }

  void OnError(const Napi::Error& e) override {
    Finish();
    try {
      Napi::HandleScope scope(Env());
      if (code_ != nullptr) e.Set("code", Napi::String::New(Env(), code_));
      deferred_.Reject(e.Value());
    } catch (const Napi::Error&) {
    }
  }

 private:
  TaskWorker(Napi::Env env, std::string op, Napi::Object owner, std::vector<Napi::Value> keep_alive,
             Run run, Convert convert, Done done)
      : Napi::AsyncWorker(env, "torchfocal"),
        deferred_(Napi::Promise::Deferred::New(env)),
        op_(std::move(op)),
        owner_(Napi::Persistent(owner)),
        run_(std::move(run)),
        convert_(std::move(convert)),
        done_(std::move(done)) {
    for (auto& v : keep_alive) kept_.push_back(Napi::Persistent(v));
  }

  void Finish() {
    if (done_) done_();
  }

  Napi::Promise::Deferred deferred_;
  std::string op_;
  Napi::ObjectReference owner_;
  std::vector<Napi::Reference<Napi::Value>> kept_;
  Run run_;
  Convert convert_;
  Done done_;
  Result result_{};
  const char* code_ = nullptr;
};

}  // namespace torchfocal::binding
