// JS <-> C++ conversion and error translation for the addon. No maths here.
#pragma once

#include <napi.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "src/export/onnx_graph.h"
#include "src/metrics/metrics.h"
#include "src/train/trainer.h"

namespace torchfocal::binding {

// Readers for one options object: each names the option and what was expected when it is wrong,
// and throws Napi::TypeError / Napi::RangeError (never aborts).
std::string GetString(const Napi::Object& o, const char* key, const std::string& fallback);
double GetNumber(const Napi::Object& o, const char* key, double fallback);
bool GetBool(const Napi::Object& o, const char* key, bool fallback);
int64_t GetInt(const Napi::Object& o, const char* key, int64_t fallback, int64_t min, int64_t max);
std::vector<double> GetNumbers(const Napi::Object& o, const char* key);

// The options object of `new NativeTrainer(options)` as a TrainConfig (validated shape only;
// the engine validates meaning).
train::TrainConfig ToTrainConfig(const Napi::Object& o);

// A [N, C, H, W] uint8 image stack viewed without copying. The caller keeps the JS array alive
// (Napi::Reference) while the view is in use.
struct ImageView {
  uint8_t* data;
  int64_t count, channels, height, width;
};
// `shape` is the JS object {count, channels, height, width}.
ImageView GetImages(const Napi::Env& env, const Napi::Value& images, const Napi::Value& shape);

// Named tensors as [{name, dtype: 'F32' | 'I64' | 'U8', shape, data}], and back ('F64', 'F16' and
// 'BF16' are read too). Reading copies each tensor (entries may be views into one file buffer)
// after checking that its bytes match its shape; throws Napi::TypeError / RangeError naming `op`
// and the tensor.
Napi::Array ToJs(const Napi::Env& env, const train::NamedTensors& tensors);
std::shared_ptr<train::NamedTensors> ToNamedTensors(const Napi::Env& env, const Napi::Value& value,
                                                    const char* op);

// {nodes: [{opType, name, inputs, outputs, attributes: [{name, type: 'int' | 'ints' | 'float',
// value}]}], initializers (named tensors as above), input, output, channels, inputSize,
// numClasses, opset}.
Napi::Object ToJs(const Napi::Env& env, const exporter::OnnxGraph& graph);

Napi::Object ToJs(const Napi::Env& env, const metrics::Metrics& m);
Napi::Object ToJs(const Napi::Env& env, const train::EpochResult& r);

// The message of an exception caught at the boundary, without LibTorch's C++ backtrace.
std::string Describe(const std::exception& e);

// Runs an N-API method's `body` on the JS thread so that no C++ exception escapes into N-API
// (where one that is not a Napi::Error aborts the process: "terminate called ..."): a JS error
// passes through; any other exception becomes Error("<op>: <message>").
template <typename Body>
Napi::Value Guarded(const Napi::Env& env, const char* op, Body&& body) {
  try {
    return body();
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::bad_alloc&) {
    throw Napi::Error::New(env, std::string(op) + ": out of memory");
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, std::string(op) + ": " + Describe(e));
  } catch (...) {
    throw Napi::Error::New(env, std::string(op) + ": unknown native error");
  }
}

// The JS error code of the engine's exceptions that callers handle by kind, else nullptr:
// ERR_TORCHFOCAL_OUT_OF_MEMORY, ERR_TORCHFOCAL_NON_FINITE_LOSS, ERR_TORCHFOCAL_CANCELLED.
const char* ErrorCode(const std::exception& e);

}  // namespace torchfocal::binding
