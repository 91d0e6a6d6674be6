#include "src/export/onnx_graph.h"

#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <unordered_set>
#include <utility>
#include <vector>

#include "models/batch_norm.h"
#include "models/googlenet.h"
#include "models/resnet.h"
#include "models/resnet32.h"
#include "models/sigmoid_avg_pool.h"
#include "models/torchvision_resnet.h"
#include "src/common/torch_compat.h"

namespace torchfocal::exporter {
namespace {

namespace nn = torch::nn;
using Type = OnnxAttribute::Type;

OnnxAttribute ints(std::string name, std::vector<int64_t> values) {
  return {std::move(name), Type::kInts, std::move(values)};
}
OnnxAttribute int_attribute(std::string name, int64_t value) {
  return {std::move(name), Type::kInt, {value}};
}
OnnxAttribute float_attribute(std::string name, double value) {
  return {std::move(name), Type::kFloat, {}, value};
}

std::vector<int64_t> pair(const torch::ExpandingArray<2>& a) { return {(*a)[0], (*a)[1]}; }
// ONNX pads: the begin of each spatial axis, then the end of each.
std::vector<int64_t> symmetric_pads(const torch::ExpandingArray<2>& a) {
  return {(*a)[0], (*a)[1], (*a)[0], (*a)[1]};
}

// ONNX pads of a convolution's padding option: numbers, or "valid" (none). "same" is refused: no
// zoo network uses it, and its uneven split would need testing of its own.
struct ConvPads {
  const std::string& path;
  std::vector<int64_t> operator()(const torch::ExpandingArray<2>& padding) const {
    return symmetric_pads(padding);
  }
  std::vector<int64_t> operator()(torch::enumtype::kValid) const { return {0, 0, 0, 0}; }
  std::vector<int64_t> operator()(torch::enumtype::kSame) const {
    throw std::invalid_argument("ONNX export: " + path + ": padding 'same' is not exported");
  }
};

// Builds the graph while walking the network. Every emit returns the name of the value the
// module's output is; `path` is the module's name in the state_dict ("1.0.conv1"), so weights keep
// their PyTorch names.
class Builder {
 public:
  explicit Builder(OnnxGraph& graph) : graph_(graph) {
    names_.insert(graph.input);
    names_.insert(graph.output);
  }

  // Any module of the zoo: the one place that maps a module type to its operators. A block type
  // added to the zoo needs its own case here (and an emit for it), or it is refused by name.
  std::string emit(const nn::Module& module, const std::string& path, const std::string& x) {
    if (auto* m = dynamic_cast<const nn::SequentialImpl*>(&module)) return sequential(*m, path, x);
    if (auto* m = dynamic_cast<const nn::Conv2dImpl*>(&module)) return conv(*m, path, x);
    if (auto* m = dynamic_cast<const nn::LinearImpl*>(&module)) return linear(*m, path, x);
    if (auto* m = dynamic_cast<const models::BatchNorm2dImpl*>(&module)) {
      return batch_norm(*m, path, x);
    }
    if (dynamic_cast<const nn::ReLUImpl*>(&module)) return node("Relu", path, {x});
    if (dynamic_cast<const nn::SigmoidImpl*>(&module)) return node("Sigmoid", path, {x});
    if (auto* m = dynamic_cast<const nn::MaxPool2dImpl*>(&module)) return max_pool(*m, path, x);
    if (auto* m = dynamic_cast<const nn::AvgPool2dImpl*>(&module)) return avg_pool(*m, path, x);
    if (auto* m = dynamic_cast<const nn::AdaptiveAvgPool2dImpl*>(&module)) {
      return global_avg_pool(*m, path, x);
    }
    if (auto* m = dynamic_cast<const nn::FlattenImpl*>(&module)) return flatten(*m, path, x);
    // identities in evaluation mode
    if (dynamic_cast<const nn::DropoutImpl*>(&module)) return x;
    if (dynamic_cast<const nn::IdentityImpl*>(&module)) return x;
    if (dynamic_cast<const models::SigmoidAvgPool2x2Impl*>(&module)) {
      return sigmoid_avg_pool(path, x);
    }
    if (auto* m = dynamic_cast<const models::ResidualImpl*>(&module)) return residual(*m, path, x);
    if (auto* m = dynamic_cast<const models::InceptionImpl*>(&module)) {
      return inception(*m, path, x);
    }
    if (auto* m = dynamic_cast<const models::BasicBlockAImpl*>(&module)) {
      return basic_block_a(*m, path, x);
    }
    if (auto* m = dynamic_cast<const models::BasicBlockImpl*>(&module)) {
      return torchvision_block(*m, path, x);
    }
    if (auto* m = dynamic_cast<const models::BottleneckImpl*>(&module)) {
      return torchvision_block(*m, path, x);
    }
    throw std::invalid_argument("ONNX export: module '" + path + "' is a " + module.name() +
                                ", which the exporter does not know (src/export/onnx_graph.cpp)");
  }

 private:
  std::string sequential(const nn::SequentialImpl& seq, const std::string& path, std::string x) {
    for (const auto& child : seq.named_children()) {
      x = emit(*child.value(), join(path, child.key()), x);
    }
    return x;
  }

  std::string conv(const nn::Conv2dImpl& conv, const std::string& path, const std::string& x) {
    const auto& o = conv.options;
    if (torch::enumtype::get_enum_name(o.padding_mode()) != "kZeros") {
      throw std::invalid_argument("ONNX export: " + path + ": padding mode " +
                                  torch::enumtype::get_enum_name(o.padding_mode()) +
                                  " is not exported (zeros only)");
    }
    std::vector<std::string> inputs = {x, weight(path, "weight", conv.weight)};
    if (o.bias()) inputs.push_back(weight(path, "bias", conv.bias));
    return node("Conv", path, inputs,
                {ints("kernel_shape", pair(o.kernel_size())), ints("strides", pair(o.stride())),
                 ints("pads", compat::visit_option(ConvPads{path}, o.padding())),
                 ints("dilations", pair(o.dilation())), int_attribute("group", o.groups())});
  }

  std::string linear(const nn::LinearImpl& linear, const std::string& path, const std::string& x) {
    // y = x W^T + b
    std::vector<std::string> inputs = {x, weight(path, "weight", linear.weight)};
    if (linear.options.bias()) inputs.push_back(weight(path, "bias", linear.bias));
    return node("Gemm", path, inputs, {int_attribute("transB", 1)});
  }

  std::string batch_norm(const models::BatchNorm2dImpl& bn, const std::string& path,
                         const std::string& x) {
    return node("BatchNormalization", path,
                {x, weight(path, "weight", bn.weight), weight(path, "bias", bn.bias),
                 weight(path, "running_mean", bn.running_mean),
                 weight(path, "running_var", bn.running_var)},
                {float_attribute("epsilon", models::BatchNorm2dImpl::kEps)});
  }

  std::string max_pool(const nn::MaxPool2dImpl& pool, const std::string& path,
                       const std::string& x) {
    const auto& o = pool.options;
    return node("MaxPool", path, {x},
                {ints("kernel_shape", pair(o.kernel_size())), ints("strides", pair(o.stride())),
                 ints("pads", symmetric_pads(o.padding())), ints("dilations", pair(o.dilation())),
                 int_attribute("ceil_mode", o.ceil_mode())});
  }

  std::string avg_pool(const nn::AvgPool2dImpl& pool, const std::string& path,
                       const std::string& x) {
    const auto& o = pool.options;
    if (o.divisor_override().has_value()) {
      throw std::invalid_argument("ONNX export: " + path + ": divisor_override is not exported");
    }
    return node(
        "AveragePool", path, {x},
        {ints("kernel_shape", pair(o.kernel_size())), ints("strides", pair(o.stride())),
         ints("pads", symmetric_pads(o.padding())), int_attribute("ceil_mode", o.ceil_mode()),
         int_attribute("count_include_pad", o.count_include_pad())});
  }

  std::string global_avg_pool(const nn::AdaptiveAvgPool2dImpl& pool, const std::string& path,
                              const std::string& x) {
    const auto& size = *pool.options.output_size();
    if (size[0] != 1 || size[1] != 1) {
      throw std::invalid_argument("ONNX export: " + path +
                                  ": adaptive average pooling is exported to 1x1 only");
    }
    return node("GlobalAveragePool", path, {x});
  }

  std::string flatten(const nn::FlattenImpl& flatten, const std::string& path,
                      const std::string& x) {
    const auto& o = flatten.options;
    if (o.end_dim() != -1) {
      throw std::invalid_argument("ONNX export: " + path +
                                  ": a Flatten that keeps trailing dimensions is not exported");
    }
    return node("Flatten", path, {x}, {int_attribute("axis", o.start_dim())});
  }

  // models/sigmoid_avg_pool.h: sigmoid, then 2x2 average pooling of stride 2 (floor).
  std::string sigmoid_avg_pool(const std::string& path, const std::string& x) {
    const auto s = node("Sigmoid", path + "/sigmoid", {x});
    return node("AveragePool", path, {s}, {ints("kernel_shape", {2, 2}), ints("strides", {2, 2})});
  }

  // models/resnet.cpp, ResidualImpl::forward.
  std::string residual(const models::ResidualImpl& block, const std::string& path, std::string x) {
    auto y =
        relu(path + "/relu1", child(block, path, *block.bn1, child(block, path, *block.conv1, x)));
    y = child(block, path, *block.bn2, child(block, path, *block.conv2, y));
    if (block.conv3) {
      if (block.shortcut_stride > 1) x = subsample(path + "/shortcut", x, block.shortcut_stride);
      x = child(block, path, *block.conv3, x);
    }
    return relu(path + "/relu2", node("Add", path + "/add", {y, x}));
  }

  // models/googlenet.cpp, InceptionImpl::forward.
  std::string inception(const models::InceptionImpl& b, const std::string& path,
                        const std::string& x) {
    const auto p1 = relu(path + "/relu1", child(b, path, *b.p1_1, x));
    const auto p2 =
        relu(path + "/relu2_2",
             child(b, path, *b.p2_2, relu(path + "/relu2_1", child(b, path, *b.p2_1, x))));
    const auto p3 =
        relu(path + "/relu3_2",
             child(b, path, *b.p3_2, relu(path + "/relu3_1", child(b, path, *b.p3_1, x))));
    const auto p4 = relu(path + "/relu4", child(b, path, *b.p4_2, child(b, path, *b.p4_1, x)));
    return node("Concat", path, {p1, p2, p3, p4}, {int_attribute("axis", 1)});
  }

  // models/resnet32.cpp, BasicBlockAImpl::forward.
  std::string basic_block_a(const models::BasicBlockAImpl& b, const std::string& path,
                            std::string x) {
    auto y = relu(path + "/relu1", child(b, path, *b.bn1, child(b, path, *b.conv1, x)));
    y = child(b, path, *b.bn2, child(b, path, *b.conv2, y));
    if (b.stride != 1 || b.pad_channels != 0) {
      if (b.stride != 1) x = subsample(path + "/shortcut", x, b.stride);
      if (b.pad_channels != 0) {
        // zero channels on both sides of dim 1: pads are the begins of N, C, H, W, then the ends
        const auto c = b.pad_channels;
        x = node("Pad", path + "/shortcut_pad",
                 {x, constant(path + ".shortcut_pad.pads", {0, c, 0, 0, 0, c, 0, 0})});
      }
    }
    return relu(path + "/relu2", node("Add", path + "/add", {y, x}));
  }

  // models/torchvision_resnet.cpp, BasicBlockImpl::forward and BottleneckImpl::forward.
  template <typename Block>
  std::string torchvision_block(const Block& b, const std::string& path, std::string x) {
    auto y = relu(path + "/relu1", child(b, path, *b.bn1, child(b, path, *b.conv1, x)));
    y = child(b, path, *b.bn2, child(b, path, *b.conv2, y));
    if constexpr (std::is_same_v<Block, models::BottleneckImpl>) {
      y = child(b, path, *b.bn3, child(b, path, *b.conv3, relu(path + "/relu2", y)));
    }
    if (b.downsample) {
      if (b.stride > 1) x = subsample(path + "/shortcut", x, b.stride);
      x = child(b, path, *b.downsample, x);
    }
    return relu(path + "/relu_out", node("Add", path + "/add", {y, x}));
  }

  // x[:, :, ::step, ::step]
  std::string subsample(const std::string& name, const std::string& x, int64_t step) {
    const std::string p = dotted(name);
    const int64_t end = std::numeric_limits<int64_t>::max();  // "to the end", as ONNX says it
    return node("Slice", name,
                {x, constant(p + ".starts", {0, 0}), constant(p + ".ends", {end, end}),
                 constant(p + ".axes", {2, 3}), constant(p + ".steps", {step, step})});
  }

  std::string relu(const std::string& name, const std::string& x) {
    return node("Relu", name, {x});
  }

  // A child module of a block, emitted under the name the block registered it with.
  std::string child(const nn::Module& block, const std::string& path, const nn::Module& module,
                    const std::string& x) {
    for (const auto& c : block.named_children()) {
      if (c.value().get() == &module) return emit(module, join(path, c.key()), x);
    }
    throw std::logic_error("ONNX export: " + path + " has no registered child " + module.name());
  }

  // One node whose single output is named after the node.
  std::string node(const std::string& op, const std::string& name, std::vector<std::string> inputs,
                   std::vector<OnnxAttribute> attributes = {}) {
    const std::string out = fresh(name);
    graph_.nodes.push_back({op, name, std::move(inputs), {out}, std::move(attributes)});
    return out;
  }

  std::string weight(const std::string& path, const std::string& name, const torch::Tensor& t) {
    const auto full = join(path, name);
    graph_.initializers.emplace_back(fresh(full),
                                     t.detach().to(torch::kCPU, torch::kFloat32).contiguous());
    return full;
  }

  std::string constant(const std::string& name, const std::vector<int64_t>& values) {
    graph_.initializers.emplace_back(fresh(name), torch::tensor(values, torch::kInt64));
    return name;
  }

  std::string fresh(const std::string& name) {
    if (!names_.insert(name).second) {
      throw std::logic_error("ONNX export: the value name '" + name + "' is used twice");
    }
    return name;
  }

  static std::string join(const std::string& path, const std::string& name) {
    return path.empty() ? name : path + "." + name;
  }
  // "1.0/shortcut" -> "1.0.shortcut": the constants of a node read like its weights
  static std::string dotted(std::string name) {
    for (auto& ch : name) {
      if (ch == '/') ch = '.';
    }
    return name;
  }

  OnnxGraph& graph_;
  std::unordered_set<std::string> names_;
};

// The input channels the first layer's weights take: a convolution's, or for a network that
// starts by flattening (the MLP), the first linear layer's features over the input's pixels.
int64_t input_channels(const torch::nn::Sequential& model, int64_t input_size) {
  for (const auto& module : model->modules(/*include_self=*/false)) {
    if (auto* conv = module->as<nn::Conv2d>()) {
      return conv->weight.size(1) * conv->options.groups();
    }
    if (auto* linear = module->as<nn::Linear>()) {
      const int64_t pixels = input_size * input_size;
      const int64_t features = linear->options.in_features();
      if (features % pixels != 0) {
        throw std::invalid_argument("ONNX export: the first layer takes " +
                                    std::to_string(features) + " features, not a whole number of " +
                                    std::to_string(input_size) + "x" + std::to_string(input_size) +
                                    " channels");
      }
      return features / pixels;
    }
  }
  throw std::invalid_argument("ONNX export: the network has no convolution or linear layer");
}

}  // namespace

OnnxGraph onnx_graph(const torch::nn::Sequential& model, int64_t input_size) {
  if (input_size < 1) throw std::invalid_argument("ONNX export: input_size must be positive");
  OnnxGraph graph;
  graph.input_size = input_size;
  graph.channels = input_channels(model, input_size);
  {
    // One image through the network gives the number of classes, and proves that the input shape
    // is one the network takes.
    torch::NoGradGuard no_grad;
    auto& net = *model.ptr();
    const bool training = net.is_training();
    net.eval();
    try {
      const auto options = net.parameters().front().options();
      const auto out =
          net.forward(torch::zeros({1, graph.channels, input_size, input_size}, options));
      graph.num_classes = out.size(1);
    } catch (...) {
      net.train(training);
      throw;
    }
    net.train(training);
  }
  Builder builder(graph);
  const auto last = builder.emit(*model, "", graph.input);
  if (last == graph.input) throw std::invalid_argument("ONNX export: the network has no operator");
  // The last value is the graph's output, under the output's name.
  for (auto& node : graph.nodes) {
    for (auto& name : node.outputs) {
      if (name == last) name = graph.output;
    }
  }
  return graph;
}

}  // namespace torchfocal::exporter
