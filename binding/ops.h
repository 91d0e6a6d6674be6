// Free functions over the engine's ops (ops.focalLoss in the TS API).
#pragma once

#include <napi.h>

namespace torchfocal::binding {

// focalLoss(options) -> Promise<{ loss: Float32Array|Float64Array, grad: same }>
Napi::Value FocalLoss(const Napi::CallbackInfo& info);

// benchFocalOp({ rows, classes, threads?, repeats? }) -> Promise<{ rows, classes, threads,
// fused, crossEntropy, composed }>: median seconds per forward + backward of each.
Napi::Value BenchFocalOp(const Napi::CallbackInfo& info);

}  // namespace torchfocal::binding
