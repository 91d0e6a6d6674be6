#include "binding/convert.h"

#include <cmath>
#include <cstring>
#include <limits>

namespace torchfocal::binding {

namespace {
std::string Quote(const char* key) { return std::string("option '") + key + "'"; }
}  // namespace

std::string GetString(const Napi::Object& o, const char* key, const std::string& fallback) {
  auto v = o.Get(key);
  if (v.IsUndefined()) return fallback;
  if (!v.IsString()) throw Napi::TypeError::New(o.Env(), Quote(key) + " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

double GetNumber(const Napi::Object& o, const char* key, double fallback) {
  auto v = o.Get(key);
  if (v.IsUndefined()) return fallback;
  if (!v.IsNumber()) throw Napi::TypeError::New(o.Env(), Quote(key) + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d)) throw Napi::RangeError::New(o.Env(), Quote(key) + " must be finite");
  return d;
}

bool GetBool(const Napi::Object& o, const char* key, bool fallback) {
  auto v = o.Get(key);
  if (v.IsUndefined()) return fallback;
  if (!v.IsBoolean()) throw Napi::TypeError::New(o.Env(), Quote(key) + " must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

int64_t GetInt(const Napi::Object& o, const char* key, int64_t fallback, int64_t min, int64_t max) {
  auto v = o.Get(key);
  if (v.IsUndefined()) return fallback;
  double d = GetNumber(o, key, 0);
  if (d != std::floor(d) || d < static_cast<double>(min) || d > static_cast<double>(max)) {
    throw Napi::RangeError::New(o.Env(), Quote(key) + " must be an integer in [" +
                                             std::to_string(min) + ", " + std::to_string(max) +
                                             "]");
  }
  return static_cast<int64_t>(d);
}

std::vector<double> GetNumbers(const Napi::Object& o, const char* key) {
  auto v = o.Get(key);
  if (v.IsUndefined()) return {};
  if (v.IsNumber()) return {GetNumber(o, key, 0)};
  if (!v.IsArray())
    throw Napi::TypeError::New(o.Env(), Quote(key) + " must be a number or an array of numbers");
  auto arr = v.As<Napi::Array>();
  std::vector<double> out;
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    auto item = arr.Get(i);
    if (!item.IsNumber() || !std::isfinite(item.As<Napi::Number>().DoubleValue())) {
      throw Napi::TypeError::New(
          o.Env(), Quote(key) + "[" + std::to_string(i) + "] must be a finite number");
    }
    out.push_back(item.As<Napi::Number>().DoubleValue());
  }
  return out;
}

train::TrainConfig ToTrainConfig(const Napi::Object& o) {
  constexpr int64_t kMaxInt = int64_t{1} << 40;
  train::TrainConfig c;
  c.model = GetString(o, "model", c.model);
  c.num_classes = GetInt(o, "numClasses", c.num_classes, 2, 1 << 20);
  c.width_divisor = GetInt(o, "widthDivisor", c.width_divisor, 1, 64);
  c.in_channels = GetInt(o, "channels", c.in_channels, 1, 3);
  c.input_size = GetInt(o, "inputSize", c.input_size, 0, 4096);
  c.normalize = GetString(o, "normalize", c.normalize);
  c.normalize_mean = GetNumbers(o, "normalizeMean");
  c.normalize_std = GetNumbers(o, "normalizeStd");
  c.augment = GetString(o, "augment", c.augment);
  c.freeze_backbone = GetBool(o, "freezeBackbone", c.freeze_backbone);
  c.batch_size = GetInt(o, "batchSize", c.batch_size, 1, 1 << 20);
  c.optimizer = GetString(o, "optimizer", c.optimizer);
  c.lr = GetNumber(o, "lr", c.lr);
  c.momentum = GetNumber(o, "momentum", c.momentum);
  c.nesterov = GetBool(o, "nesterov", c.nesterov);
  if (!o.Get("weightDecay").IsUndefined()) c.weight_decay = GetNumber(o, "weightDecay", 0);
  c.clip_grad_norm = GetNumber(o, "clipGradNorm", c.clip_grad_norm);
  c.warmup_epochs = GetInt(o, "warmupEpochs", c.warmup_epochs, 0, kMaxInt);
  c.lr_schedule = GetString(o, "lrSchedule", c.lr_schedule);
  c.schedule_epochs = GetInt(o, "scheduleEpochs", c.schedule_epochs, 0, kMaxInt);
  c.loss.name = GetString(o, "loss", c.loss.name);
  c.loss.alpha = GetNumbers(o, "alpha");
  c.loss.alpha_auto = GetString(o, "alphaMode", "") == "auto";
  c.loss.alpha_normalize = GetString(o, "alphaNormalize", c.loss.alpha_normalize);
  c.loss.gamma = GetNumber(o, "gamma", c.loss.gamma);
  c.loss.label_smoothing = GetNumber(o, "labelSmoothing", c.loss.label_smoothing);
  c.loss.beta = GetNumber(o, "beta", c.loss.beta);
  c.loss.tau = GetNumber(o, "tau", c.loss.tau);
  c.loss.drw_epoch = GetInt(o, "drwEpoch", c.loss.drw_epoch, -1, kMaxInt);
  c.seed = static_cast<uint64_t>(GetInt(o, "seed", 0, 0, kMaxInt));
  c.threads = static_cast<int>(GetInt(o, "threads", 0, 0, 1024));
  c.device = GetString(o, "device", c.device);
  c.progress_every = GetInt(o, "progressEvery", c.progress_every, 1, kMaxInt);
  c.eval_batch_size = GetInt(o, "evalBatchSize", c.eval_batch_size, 1, 1 << 20);
  c.sampler = GetString(o, "sampler", c.sampler);
  c.memory_format = GetString(o, "memoryFormat", c.memory_format);
  c.amp = GetString(o, "amp", c.amp);
  c.cuda_graph = GetString(o, "cudaGraph", c.cuda_graph);
  c.on_nan = GetString(o, "onNan", c.on_nan);
  c.sync_bn = GetBool(o, "syncBn", c.sync_bn);
  auto d = o.Get("distributed");
  if (!d.IsUndefined() && !d.IsNull()) {
    if (!d.IsObject()) {
      throw Napi::TypeError::New(o.Env(),
                                 "distributed: expected {worldSize, rank, masterAddr, masterPort}");
    }
    auto dist = d.As<Napi::Object>();
    c.distributed.world_size = GetInt(dist, "worldSize", 1, 1, 1 << 16);
    c.distributed.rank = GetInt(dist, "rank", 0, 0, (1 << 16) - 1);
    c.distributed.master_addr = GetString(dist, "masterAddr", c.distributed.master_addr);
    c.distributed.master_port = static_cast<int>(GetInt(dist, "masterPort", 0, 1, 65535));
    c.distributed.timeout_s = GetNumber(dist, "timeoutSeconds", c.distributed.timeout_s);
    c.distributed.bucket_bytes =
        GetInt(dist, "bucketBytes", c.distributed.bucket_bytes, 1, int64_t{1} << 40);
    c.distributed.run_description = GetString(dist, "runDescription", "");
  }
  return c;
}

ImageView GetImages(const Napi::Env& env, const Napi::Value& images, const Napi::Value& shape) {
  if (!images.IsTypedArray() ||
      images.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    throw Napi::TypeError::New(env, "images must be a Uint8Array");
  }
  if (!shape.IsObject()) {
    throw Napi::TypeError::New(
        env, "the image shape must be an object {count, channels, height, width}");
  }
  auto dim = [&](const char* name) {
    const auto v = shape.As<Napi::Object>().Get(name);
    if (!v.IsNumber()) throw Napi::TypeError::New(env, std::string(name) + " must be a number");
    double d = v.As<Napi::Number>().DoubleValue();
    if (!(d >= 1) || d != std::floor(d) || d > (1 << 30)) {
      throw Napi::RangeError::New(env, std::string(name) + " must be a positive integer");
    }
    return static_cast<int64_t>(d);
  };
  auto arr = images.As<Napi::Uint8Array>();
  ImageView view{arr.Data(), dim("count"), dim("channels"), dim("height"), dim("width")};
  const double expected =
      static_cast<double>(view.count) * view.channels * view.height * view.width;
  if (expected != static_cast<double>(arr.ElementLength())) {
    throw Napi::RangeError::New(env, "images has " + std::to_string(arr.ElementLength()) +
                                         " bytes but count × channels × height × width = " +
                                         std::to_string(static_cast<int64_t>(expected)));
  }
  return view;
}

namespace {

struct DtypeName {
  const char* name;
  torch::ScalarType type;
};
constexpr DtypeName kDtypes[] = {
    {"F32", torch::kFloat32},
    {"I64", torch::kInt64},
    {"U8", torch::kUInt8},
    // read only by loadWeights, which converts them to the model's dtype
    {"F64", torch::kFloat64},
    {"F16", torch::kFloat16},
    {"BF16", torch::kBFloat16}};

}  // namespace

Napi::Array ToJs(const Napi::Env& env, const train::NamedTensors& tensors) {
  auto out = Napi::Array::New(env, tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& [name, t] = tensors[i];
    const char* dtype = nullptr;
    for (const auto& d : kDtypes) {
      if (d.type == t.scalar_type()) dtype = d.name;
    }
    if (dtype == nullptr) {
      throw Napi::Error::New(env, "tensor '" + name + "' has dtype " +
                                      c10::toString(t.scalar_type()) + ", which has no JS form");
    }
    auto entry = Napi::Object::New(env);
    entry.Set("name", name);
    entry.Set("dtype", dtype);
    auto shape = Napi::Array::New(env, t.dim());
    for (int64_t d = 0; d < t.dim(); ++d) shape.Set(d, static_cast<double>(t.size(d)));
    entry.Set("shape", shape);
    auto dense = t.contiguous();
    auto bytes = Napi::ArrayBuffer::New(env, dense.nbytes());
    std::memcpy(bytes.Data(), dense.data_ptr(), dense.nbytes());
    entry.Set("data", bytes);
    out.Set(i, entry);
  }
  return out;
}

Napi::Object ToJs(const Napi::Env& env, const exporter::OnnxGraph& graph) {
  const auto strings = [&env](const std::vector<std::string>& values) {
    auto out = Napi::Array::New(env, values.size());
    for (size_t i = 0; i < values.size(); ++i) out.Set(i, values[i]);
    return out;
  };
  auto nodes = Napi::Array::New(env, graph.nodes.size());
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    const auto& n = graph.nodes[i];
    auto attributes = Napi::Array::New(env, n.attributes.size());
    for (size_t k = 0; k < n.attributes.size(); ++k) {
      const auto& a = n.attributes[k];
      auto attribute = Napi::Object::New(env);
      attribute.Set("name", a.name);
      using Type = exporter::OnnxAttribute::Type;
      if (a.type == Type::kFloat) {
        attribute.Set("type", "float");
        attribute.Set("value", a.f);
      } else if (a.type == Type::kInt) {
        attribute.Set("type", "int");
        attribute.Set("value", static_cast<double>(a.ints.at(0)));
      } else {
        attribute.Set("type", "ints");
        auto values = Napi::Array::New(env, a.ints.size());
        for (size_t j = 0; j < a.ints.size(); ++j) values.Set(j, static_cast<double>(a.ints[j]));
        attribute.Set("value", values);
      }
      attributes.Set(k, attribute);
    }
    auto node = Napi::Object::New(env);
    node.Set("opType", n.op_type);
    node.Set("name", n.name);
    node.Set("inputs", strings(n.inputs));
    node.Set("outputs", strings(n.outputs));
    node.Set("attributes", attributes);
    nodes.Set(i, node);
  }
  auto out = Napi::Object::New(env);
  out.Set("nodes", nodes);
  out.Set("initializers", ToJs(env, graph.initializers));
  out.Set("input", graph.input);
  out.Set("output", graph.output);
  out.Set("channels", static_cast<double>(graph.channels));
  out.Set("inputSize", static_cast<double>(graph.input_size));
  out.Set("numClasses", static_cast<double>(graph.num_classes));
  out.Set("opset", static_cast<double>(exporter::kOnnxOpset));
  return out;
}

std::shared_ptr<train::NamedTensors> ToNamedTensors(const Napi::Env& env, const Napi::Value& value,
                                                    const char* op) {
  const std::string where(op);
  if (!value.IsArray()) {
    throw Napi::TypeError::New(env, where + ": expected an array of {name, dtype, shape, data}");
  }
  auto entries = value.As<Napi::Array>();
  auto tensors = std::make_shared<train::NamedTensors>();
  for (uint32_t i = 0; i < entries.Length(); ++i) {
    Napi::Value item = entries.Get(i);
    if (!item.IsObject()) {
      throw Napi::TypeError::New(env, where + ": entry " + std::to_string(i) + " is not an object");
    }
    auto entry = item.As<Napi::Object>();
    const std::string name = GetString(entry, "name", "");
    const std::string dtype = GetString(entry, "dtype", "");
    const DtypeName* type = nullptr;
    for (const auto& d : kDtypes) {
      if (dtype == d.name) type = &d;
    }
    if (type == nullptr) {
      throw Napi::TypeError::New(
          env, where + ": tensor '" + name + "' has unsupported dtype '" + dtype + "'");
    }
    std::vector<int64_t> shape;
    double elements = 1;
    for (double d : GetNumbers(entry, "shape")) {
      if (!(d >= 0) || d != std::floor(d) || d > 9007199254740991.0) {
        throw Napi::RangeError::New(env, where + ": tensor '" + name + "' has an invalid shape");
      }
      shape.push_back(static_cast<int64_t>(d));
      elements *= d;
    }
    auto data = entry.Get("data");
    if (!data.IsTypedArray() && !data.IsArrayBuffer()) {
      throw Napi::TypeError::New(env, where + ": tensor '" + name + "' data must be a typed array");
    }
    const uint8_t* src;
    size_t length;
    if (data.IsTypedArray()) {
      auto view = data.As<Napi::TypedArray>();
      src = static_cast<const uint8_t*>(view.ArrayBuffer().Data()) + view.ByteOffset();
      length = view.ByteLength();
    } else {
      auto buffer = data.As<Napi::ArrayBuffer>();
      src = static_cast<const uint8_t*>(buffer.Data());
      length = buffer.ByteLength();
    }
    // Compared before allocating: a shape may claim far more than the data holds.
    const double needed = elements * static_cast<double>(c10::elementSize(type->type));
    if (needed != static_cast<double>(length)) {
      throw Napi::RangeError::New(env, where + ": tensor '" + name + "' holds " +
                                           std::to_string(length) + " bytes, its shape needs " +
                                           std::to_string(static_cast<uint64_t>(needed)));
    }
    torch::Tensor t;
    try {  // on the JS thread: a LibTorch error here must become a JS one, never escape
      t = torch::empty(shape, torch::TensorOptions().dtype(type->type));
    } catch (const std::exception& e) {
      throw Napi::RangeError::New(env, where + ": tensor '" + name + "': " + Describe(e));
    }
    if (length) std::memcpy(t.data_ptr(), src, length);
    tensors->emplace_back(name, t);
  }
  return tensors;
}

Napi::Object ToJs(const Napi::Env& env, const metrics::Metrics& m) {
  auto out = Napi::Object::New(env);
  out.Set("total", static_cast<double>(m.total));
  out.Set("accuracy", m.accuracy);
  out.Set("balancedAccuracy", m.balanced_accuracy);
  out.Set("macroF1", m.macro_f1);
  auto per_class = Napi::Array::New(env, m.per_class.size());
  for (size_t i = 0; i < m.per_class.size(); ++i) {
    const auto& k = m.per_class[i];
    auto row = Napi::Object::New(env);
    row.Set("class", static_cast<double>(i));
    row.Set("support", static_cast<double>(k.support));
    row.Set("predicted", static_cast<double>(k.predicted));
    row.Set("recall", k.recall);
    row.Set("precision", k.precision);
    row.Set("f1", k.f1);
    per_class.Set(i, row);
  }
  out.Set("perClass", per_class);
  auto confusion = Napi::Array::New(env, m.confusion.size());
  for (size_t i = 0; i < m.confusion.size(); ++i) {
    auto row = Napi::Array::New(env, m.confusion[i].size());
    for (size_t j = 0; j < m.confusion[i].size(); ++j)
      row.Set(j, static_cast<double>(m.confusion[i][j]));
    confusion.Set(i, row);
  }
  out.Set("confusion", confusion);
  auto top_k = Napi::Array::New(env, m.top_k_accuracy.size());
  for (size_t k = 0; k < m.top_k_accuracy.size(); ++k) top_k.Set(k, m.top_k_accuracy[k]);
  out.Set("topKAccuracy", top_k);
  return out;
}

Napi::Object ToJs(const Napi::Env& env, const train::EpochResult& r) {
  auto out = Napi::Object::New(env);
  out.Set("epoch", static_cast<double>(r.epoch));
  out.Set("steps", static_cast<double>(r.steps));
  out.Set("loss", r.loss);
  out.Set("trainAcc", r.train_acc);
  out.Set("seconds", r.seconds);
  out.Set("skippedSteps", static_cast<double>(r.skipped_steps));
  if (r.has_test) out.Set("test", ToJs(env, r.test));
  if (r.has_val) {
    auto val = ToJs(env, r.val);
    val.Set("loss", r.val_loss);
    out.Set("val", val);
  }
  return out;
}

const char* ErrorCode(const std::exception& e) {
  if (dynamic_cast<const train::OutOfMemory*>(&e)) return "ERR_TORCHFOCAL_OUT_OF_MEMORY";
  if (dynamic_cast<const train::NonFiniteLoss*>(&e)) return "ERR_TORCHFOCAL_NON_FINITE_LOSS";
  if (dynamic_cast<const train::Cancelled*>(&e)) return "ERR_TORCHFOCAL_CANCELLED";
  return nullptr;
}

std::string Describe(const std::exception& e) {
  if (auto* c10 = dynamic_cast<const c10::Error*>(&e)) return c10->what_without_backtrace();
  return e.what();
}

}  // namespace torchfocal::binding
