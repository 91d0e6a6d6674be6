// The one thread that runs LibTorch work for the whole addon.
#pragma once

#include <functional>

namespace torchfocal::binding {

// Runs `job` on the engine thread and blocks the caller until it has finished; an exception
// thrown by `job` is rethrown here. Jobs run one at a time, in the order they were posted.
//
// Why one thread: libgomp keeps a separate worker pool for every thread that opens a parallel
// region. Work spread over libuv's pool threads (and the JS thread) made one pool each; with
// more pool threads than cores libgomp stops spinning between regions and parks its workers on
// futexes, which cost a LeNet epoch 70,000 sleeps and wake-ups and 20-30% of its time.
void RunOnEngineThread(const std::function<void()>& job);

// Runs `job` as above only when the engine thread is idle (nothing running or queued) and returns
// true; returns false, having run nothing, when it is busy. For work of a fraction of a
// millisecond (one image's prediction), where the hops through libuv's pool cost a third as much
// again: the JS thread waits for the job itself, never for someone else's.
bool RunOnIdleEngineThread(const std::function<void()>& job);

// Runs `job` on the calling thread when the engine thread is idle, holding it idle until `job`
// returns (jobs posted meanwhile wait), and returns true; false, having run nothing, when it is
// busy. For one image's CPU prediction: the two thread hand-offs of RunOnIdleEngineThread (wake
// the engine thread, wake the caller) were a third of the call's time. Only for work that opens
// no OpenMP parallel region (single-threaded kernels): libgomp would give the calling thread a
// worker pool of its own.
bool RunHereWhileEngineIdle(const std::function<void()>& job);

}  // namespace torchfocal::binding
