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

}  // namespace torchfocal::binding
