// A zoo network as a graph of ONNX operators: what an ONNX file holds, in plain C++ (the encoding
// into protobuf is ts/export/onnx.ts). LibTorch's C++ API has no exporter, so the graph comes from
// walking the built network module by module, each module's hyper-parameters read from its
// options and its weights copied as they are. The graph computes the network in evaluation mode
// (batch norm with its running statistics, dropout removed), from its input to its logits.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

namespace torchfocal::exporter {

// One ONNX operator opset this graph is written for (the operators' versions it assumes).
constexpr int64_t kOnnxOpset = 13;

struct OnnxAttribute {
  enum class Type { kInt, kInts, kFloat };
  std::string name;
  Type type;
  std::vector<int64_t> ints;  // kInt: one value
  double f = 0;               // kFloat
};

struct OnnxNode {
  std::string op_type;  // an operator of the default domain, as of kOnnxOpset
  std::string name;     // the module it comes from (its path), for a reader of the file
  std::vector<std::string> inputs, outputs;
  std::vector<OnnxAttribute> attributes;
};

struct OnnxGraph {
  std::vector<OnnxNode> nodes;
  // Weights and constants by name (the weights keep their state_dict names): contiguous CPU
  // tensors, float32 (NCHW for convolutions) or int64 (operator arguments such as Slice's).
  std::vector<std::pair<std::string, torch::Tensor>> initializers;
  std::string input = "input";    // float32 [N, channels, input_size, input_size], N free
  std::string output = "logits";  // float32 [N, num_classes]
  int64_t channels = 0;
  int64_t input_size = 0;
  int64_t num_classes = 0;
};

// The graph of `model` (a zoo network, models::make_model) for square inputs of `input_size`.
// The input's channel count is what the first layer's weights take. Throws std::invalid_argument
// naming a module the exporter does not know (so a new block type is never exported wrongly) or
// an option it cannot express (a padding mode other than zeros, a Flatten that keeps a dimension).
OnnxGraph onnx_graph(const torch::nn::Sequential& model, int64_t input_size);

}  // namespace torchfocal::exporter
