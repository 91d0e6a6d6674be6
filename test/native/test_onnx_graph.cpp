// The ONNX graph of a network: weights under their state_dict names, hyper-parameters read from the
// modules' options, evaluation semantics, and a clear refusal of what it cannot express. (Whether
// the graph computes what the network computes is checked against onnxruntime in
// test/export.test.ts, for every zoo network.)
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "models/batch_norm.h"
#include "models/registry.h"
#include "src/export/onnx_graph.h"

namespace {

namespace nn = torch::nn;
using torchfocal::exporter::onnx_graph;
using torchfocal::exporter::OnnxAttribute;
using torchfocal::exporter::OnnxGraph;
using torchfocal::exporter::OnnxNode;

std::vector<std::string> op_types(const OnnxGraph& g) {
  std::vector<std::string> out;
  for (const auto& n : g.nodes) out.push_back(n.op_type);
  return out;
}

const OnnxAttribute& attribute(const OnnxNode& n, const std::string& name) {
  for (const auto& a : n.attributes) {
    if (a.name == name) return a;
  }
  throw std::runtime_error(n.op_type + " has no attribute " + name);
}

std::vector<int64_t> ints(const OnnxNode& n, const std::string& name) {
  const auto& a = attribute(n, name);
  EXPECT_EQ(a.type, OnnxAttribute::Type::kInts) << name;
  return a.ints;
}

int64_t int_value(const OnnxNode& n, const std::string& name) {
  const auto& a = attribute(n, name);
  EXPECT_EQ(a.type, OnnxAttribute::Type::kInt) << name;
  return a.ints.at(0);
}

std::string invalid_argument_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "(no std::invalid_argument)";
}

TEST(OnnxGraph, EveryZooNetworkKeepsItsWeightsUnderTheirStateDictNames) {
  for (const auto& info : torchfocal::models::model_infos()) {
    SCOPED_TRACE(info.name);
    const int64_t divisor = info.name == "vgg" || info.name == "resnet" ? 16 : 1;
    auto model = torchfocal::models::make_model(info.name, {/*num_classes=*/3, divisor});
    const auto g = onnx_graph(model, info.input_size);
    EXPECT_EQ(g.channels, 1);
    EXPECT_EQ(g.input_size, info.input_size);
    EXPECT_EQ(g.num_classes, 3);
    ASSERT_FALSE(g.nodes.empty());
    EXPECT_EQ(g.nodes.back().outputs, std::vector<std::string>{g.output});
    // The float initializers are exactly the parameters and buffers that are operands (not
    // num_batches_tracked), same names, same values; the int64 ones are operator arguments.
    std::map<std::string, torch::Tensor> weights;
    for (const auto& [name, t] : g.initializers) {
      EXPECT_TRUE(t.is_contiguous()) << name;
      if (t.scalar_type() == torch::kInt64) continue;
      EXPECT_EQ(t.scalar_type(), torch::kFloat32) << name;
      EXPECT_TRUE(weights.emplace(name, t).second) << name << " twice";
    }
    size_t operands = 0;
    const auto expect_copied = [&](const std::string& name, const torch::Tensor& t) {
      if (name.find("num_batches_tracked") != std::string::npos) return;
      ++operands;
      ASSERT_EQ(weights.count(name), 1u) << name;
      EXPECT_TRUE(torch::equal(weights[name], t)) << name;
    };
    for (const auto& p : model->named_parameters()) expect_copied(p.key(), p.value());
    for (const auto& b : model->named_buffers()) expect_copied(b.key(), b.value());
    EXPECT_EQ(weights.size(), operands);
  }
}

TEST(OnnxGraph, HyperParametersComeFromTheModulesOptions) {
  nn::Sequential model(
      nn::Conv2d(nn::Conv2dOptions(/*in=*/2, /*out=*/4, /*kernel_size=*/{3, 5})
                     .stride({2, 1})
                     .padding({1, 2})
                     .dilation({1, 2})
                     .groups(2)
                     .bias(false)),
      nn::Conv2d(nn::Conv2dOptions(4, 4, 1).padding(torch::kValid)),
      nn::MaxPool2d(nn::MaxPool2dOptions(3).stride(2).padding(1).ceil_mode(true)),
      nn::AvgPool2d(nn::AvgPool2dOptions(2).stride(1).padding(1).count_include_pad(false)),
      nn::AdaptiveAvgPool2d(nn::AdaptiveAvgPool2dOptions({1, 1})), nn::Flatten(), nn::Linear(4, 3));
  const auto g = onnx_graph(model, /*input_size=*/16);
  EXPECT_EQ(g.channels, 2);  // 1 input channel per group, 2 groups
  EXPECT_EQ(g.num_classes, 3);
  ASSERT_EQ(op_types(g), (std::vector<std::string>{"Conv", "Conv", "MaxPool", "AveragePool",
                                                   "GlobalAveragePool", "Flatten", "Gemm"}));
  const auto& conv = g.nodes[0];
  EXPECT_EQ(conv.name, "0");
  EXPECT_EQ(conv.inputs, (std::vector<std::string>{g.input, "0.weight"}));  // no bias
  EXPECT_EQ(ints(conv, "kernel_shape"), (std::vector<int64_t>{3, 5}));
  EXPECT_EQ(ints(conv, "strides"), (std::vector<int64_t>{2, 1}));
  EXPECT_EQ(ints(conv, "pads"), (std::vector<int64_t>{1, 2, 1, 2}));
  EXPECT_EQ(ints(conv, "dilations"), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(int_value(conv, "group"), 2);
  EXPECT_EQ(g.nodes[1].inputs, (std::vector<std::string>{conv.outputs[0], "1.weight", "1.bias"}));
  EXPECT_EQ(ints(g.nodes[1], "pads"), (std::vector<int64_t>{0, 0, 0, 0}));  // "valid"
  const auto& max_pool = g.nodes[2];
  EXPECT_EQ(ints(max_pool, "kernel_shape"), (std::vector<int64_t>{3, 3}));
  EXPECT_EQ(ints(max_pool, "strides"), (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(ints(max_pool, "pads"), (std::vector<int64_t>{1, 1, 1, 1}));
  EXPECT_EQ(int_value(max_pool, "ceil_mode"), 1);
  const auto& avg_pool = g.nodes[3];
  EXPECT_EQ(ints(avg_pool, "kernel_shape"), (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(ints(avg_pool, "strides"), (std::vector<int64_t>{1, 1}));
  EXPECT_EQ(int_value(avg_pool, "count_include_pad"), 0);
  EXPECT_EQ(int_value(avg_pool, "ceil_mode"), 0);
  EXPECT_EQ(int_value(g.nodes[5], "axis"), 1);
  EXPECT_EQ(int_value(g.nodes[6], "transB"), 1);
  EXPECT_EQ(g.nodes[6].outputs, std::vector<std::string>{"logits"});
}

TEST(OnnxGraph, EvaluationSemanticsAndTheModelsModeKept) {
  nn::Sequential model(nn::Conv2d(nn::Conv2dOptions(3, 4, 3)), torchfocal::models::BatchNorm2d(4),
                       nn::ReLU(), nn::Dropout(0.5), nn::Identity(), nn::Flatten(),
                       nn::Linear(4 * 6 * 6, 2), nn::Sigmoid());
  for (const bool training : {true, false}) {
    model->train(training);
    const auto g = onnx_graph(model, /*input_size=*/8);
    EXPECT_EQ(model->is_training(), training);
    // dropout and identity leave no node
    EXPECT_EQ(op_types(g), (std::vector<std::string>{"Conv", "BatchNormalization", "Relu",
                                                     "Flatten", "Gemm", "Sigmoid"}));
    EXPECT_EQ(g.channels, 3);
    const auto& bn = g.nodes[1];
    EXPECT_EQ(bn.inputs, (std::vector<std::string>{g.nodes[0].outputs[0], "1.weight", "1.bias",
                                                   "1.running_mean", "1.running_var"}));
    const auto& eps = attribute(bn, "epsilon");
    EXPECT_EQ(eps.type, OnnxAttribute::Type::kFloat);
    EXPECT_EQ(eps.f, torchfocal::models::BatchNorm2dImpl::kEps);
    EXPECT_EQ(g.nodes[3].inputs, g.nodes[2].outputs);  // straight past dropout and identity
  }
}

TEST(OnnxGraph, WhatItCannotExpressIsRefusedByName) {
  const auto refusal = [](nn::Sequential model, int64_t side = 8) {
    return invalid_argument_of([&] { onnx_graph(model, side); });
  };
  auto unknown = refusal(nn::Sequential(nn::Conv2d(nn::Conv2dOptions(1, 2, 3)), nn::Tanh()));
  EXPECT_NE(unknown.find("module '1'"), std::string::npos) << unknown;
  EXPECT_NE(unknown.find("Tanh"), std::string::npos) << unknown;
  auto same = refusal(nn::Sequential(nn::Conv2d(nn::Conv2dOptions(1, 2, 3).padding(torch::kSame))));
  EXPECT_NE(same.find("0: padding 'same'"), std::string::npos) << same;
  auto reflect = refusal(nn::Sequential(
      nn::Conv2d(nn::Conv2dOptions(1, 2, 3).padding(1).padding_mode(torch::kReflect))));
  EXPECT_NE(reflect.find("padding mode kReflect"), std::string::npos) << reflect;
  auto adaptive = refusal(nn::Sequential(nn::Conv2d(nn::Conv2dOptions(1, 2, 3)),
                                         nn::AdaptiveAvgPool2d(nn::AdaptiveAvgPool2dOptions(2))));
  EXPECT_NE(adaptive.find("1x1 only"), std::string::npos) << adaptive;
  auto flatten = refusal(nn::Sequential(nn::Conv2d(nn::Conv2dOptions(1, 2, 3)),
                                        nn::Flatten(nn::FlattenOptions().end_dim(2))));
  EXPECT_NE(flatten.find("keeps trailing dimensions"), std::string::npos) << flatten;
  // an input the network cannot take fails at export, not in the runtime that loads the file
  EXPECT_THROW(onnx_graph(nn::Sequential(nn::Conv2d(nn::Conv2dOptions(1, 2, 5))), 3), c10::Error);
}

}  // namespace
