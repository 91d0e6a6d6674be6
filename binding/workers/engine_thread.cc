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

  void Run(const std::function<void()>& job) {
    std::packaged_task<void()> task(job);
    auto done = task.get_future();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      queue_.push_back(std::move(task));
    }
    ready_.notify_one();
    done.get();  // rethrows the job's exception
  }

 private:
  void Loop() {
    for (;;) {
      std::packaged_task<void()> task;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        ready_.wait(lock, [this] { return !queue_.empty(); });
        task = std::move(queue_.front());
        queue_.pop_front();
      }
      task();
    }
  }

  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::packaged_task<void()>> queue_;
  std::thread thread_;
};

}  // namespace

void RunOnEngineThread(const std::function<void()>& job) {
  // Never destroyed: the detached thread may still wait on it while the process exits.
  static EngineThread* engine = new EngineThread();
  engine->Run(job);
}

}  // namespace torchfocal::binding
