#include "models/registry.h"

#include <functional>
#include <stdexcept>
#include <string>

#include "models/alexnet.h"
#include "models/googlenet.h"
#include "models/lenet.h"
#include "models/mlp.h"
#include "models/resnet.h"
#include "models/resnet32.h"
#include "models/torchvision_resnet.h"
#include "models/vgg.h"

namespace torchfocal::models {

namespace {

using Builder = std::function<torch::nn::Sequential(const ModelOptions&)>;

struct Entry {
  ModelInfo info;
  Builder build;
};

// The one table of the zoo; model_infos() and make_model() both read it, so they cannot drift.
const std::vector<Entry>& entries() {
  static const std::vector<Entry> table = {
      {{"mlp", 28, "multilayer perceptron, one hidden layer of 256 (d2l 4.3)"}, make_mlp},
      {{"lenet", 28, "LeNet-5 with sigmoids and average pooling (d2l 6.6)"}, make_lenet},
      {{"alexnet", 224, "AlexNet (d2l 7.1)"}, make_alexnet},
      {{"vgg", 224, "VGG-11, widths divided by width_divisor (d2l 7.2)"}, make_vgg},
      {{"googlenet", 96, "GoogLeNet with Inception blocks (d2l 7.4)"}, make_googlenet},
      {{"resnet", 96, "ResNet-18, widths divided by width_divisor (d2l 7.6)"}, make_resnet},
      {{"resnet32", 32, "ResNet-32 of the CIFAR long-tail papers (option-A shortcuts)"},
       make_resnet32},
      {{"resnet18", 224,
        "ResNet-18 in torchvision's layout and state_dict names (torchvision.models)"},
       make_resnet18},
      {{"resnet34", 224,
        "ResNet-34 in torchvision's layout and state_dict names (torchvision.models)"},
       make_resnet34},
      {{"resnet50", 224,
        "ResNet-50 (v1.5 bottlenecks) in torchvision's layout and state_dict names "
        "(torchvision.models)"},
       make_resnet50},
  };
  return table;
}

const Entry& find_entry(const std::string& name) {
  for (const auto& entry : entries()) {
    if (entry.info.name == name) return entry;
  }
  std::string known;
  for (const auto& entry : entries()) {
    known += (known.empty() ? "" : ", ") + entry.info.name;
  }
  throw std::invalid_argument("unknown model '" + name + "' (known: " + known + ")");
}

// Checks shared by every network; vgg and the ResNets also check that width_divisor divides their
// widths.
void validate(const std::string& name, const ModelOptions& options) {
  if (options.num_classes < 2) {
    throw std::invalid_argument("model '" + name + "': num_classes must be at least 2, got " +
                                std::to_string(options.num_classes));
  }
  if (options.width_divisor < 1) {
    throw std::invalid_argument("model '" + name + "': width_divisor must be at least 1, got " +
                                std::to_string(options.width_divisor));
  }
  if (options.in_channels < 1) {
    throw std::invalid_argument("model '" + name + "': in_channels must be at least 1, got " +
                                std::to_string(options.in_channels));
  }
  if (options.input_size < 0) {
    throw std::invalid_argument("model '" + name + "': input_size must be positive, got " +
                                std::to_string(options.input_size));
  }
}

}  // namespace

const std::vector<ModelInfo>& model_infos() {
  static const std::vector<ModelInfo> infos = [] {
    std::vector<ModelInfo> out;
    for (const auto& entry : entries()) out.push_back(entry.info);
    return out;
  }();
  return infos;
}

const ModelInfo& model_info(const std::string& name) { return find_entry(name).info; }

torch::nn::Sequential make_model(const std::string& name, const ModelOptions& options) {
  const auto& entry = find_entry(name);
  validate(name, options);
  ModelOptions resolved = options;
  if (resolved.input_size == 0) resolved.input_size = entry.info.input_size;
  try {
    return entry.build(resolved);
  } catch (const std::invalid_argument& e) {
    // name the model, as validate() does
    throw std::invalid_argument("model '" + name + "': " + e.what());
  }
}

}  // namespace torchfocal::models
