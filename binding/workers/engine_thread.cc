#include "binding/workers/engine_thread.h"

#include <condition_variable>
#include <deque>
#include <exception>
#include <future>
#include <mutex>
#include <thread>

namespace torchfocal::binding {
namespace {

class EngineThread {
 public:
  EngineThread() : thread_([this] { Loop(); }) { thread_.detach(); }

  // Runs `job` on the calling thread while the engine thread is idle and held so (jobs posted
  // meanwhile wait); false, having run nothing, when it is busy.
  bool RunHere(const std::function<void()>& job) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (running_ || !queue_.empty()) return false;
      running_ = true;
    }
    struct Release {
      EngineThread* engine;
      ~Release() {
        {
          std::lock_guard<std::mutex> lock(engine->mutex_);
          engine->running_ = false;
        }
        engine->ready_.notify_one();  // a job posted meanwhile
      }
    } release{this};
    job();
    return true;
  }

  // Queues `job` (if idle, or `only_if_idle` is false) and waits for it; false: not queued.
  bool Run(const std::function<void()>& job, bool only_if_idle = false) {
    std::packaged_task<void()> task(job);
    auto done = task.get_future();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (only_if_idle && (running_ || !queue_.empty())) return false;
      queue_.push_back(std::move(task));
    }
    ready_.notify_one();
    done.get();  // rethrows the job's exception
    return true;
  }

 private:
  void Loop() {
    for (;;) {
      std::packaged_task<void()> task;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        // Not while a job runs on its caller's thread (RunHere).
        ready_.wait(lock, [this] { return !queue_.empty() && !running_; });
        task = std::move(queue_.front());
        queue_.pop_front();
        running_ = true;
      }
      task();
      std::lock_guard<std::mutex> lock(mutex_);
      running_ = false;
    }
  }

  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::packaged_task<void()>> queue_;
  bool running_ = false;
  std::thread thread_;
};

EngineThread& Engine() {
  // Never destroyed: the detached thread may still wait on it while the process exits.
  static EngineThread* engine = new EngineThread();
  return *engine;
}

}  // namespace

void RunOnEngineThread(const std::function<void()>& job) { Engine().Run(job); }

bool RunOnIdleEngineThread(const std::function<void()>& job) {
  return Engine().Run(job, /*only_if_idle=*/true);
}

bool RunHereWhileEngineIdle(const std::function<void()>& job) { return Engine().RunHere(job); }

}  // namespace torchfocal::binding
