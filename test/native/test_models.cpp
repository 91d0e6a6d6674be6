// The network zoo against PyTorch: the reference numbers and names below come from
// bench/d2l_models.py under PyTorch 1.13.1 (Debian's python3-torch), i.e. from the
// Dive-into-Deep-Learning definitions themselves, and for resnet18/34/50 from torchvision's
// (test/fixtures/torchvision_resnet.py, python3-torchvision 0.14).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "models/registry.h"
#include "models/resnet.h"
#include "models/resnet32.h"
#include "models/torchvision_resnet.h"
#include "test/fixtures/torchvision_resnet_reference.h"

namespace {

using torchfocal::models::make_model;
using torchfocal::models::model_info;
using torchfocal::models::model_infos;
using torchfocal::models::ModelOptions;

using NamedShape = std::pair<std::string, std::vector<int64_t>>;

constexpr const char* kKnown =
    "known: mlp, lenet, alexnet, vgg, googlenet, resnet, resnet32, resnet18, resnet34, resnet50";

struct Reference {
  std::string name;
  int64_t input_size;
  int64_t parameters_10;    // trainable parameters with 10 classes (and width_divisor 1)
  int64_t parameters_3;     // ... with 3 classes
  int64_t in_channels = 1;  // of the reference networks: d2l's are grey, torchvision's RGB
};

// `d2l_models.py` and `d2l_models.py --num-classes 3`, numParameters; for resnet18/34/50
// `torchvision_resnet.py describe` and `describe --num-classes 3`.
const std::vector<Reference> kReferences = {
    {"mlp", 28, 203530, 201731},
    {"lenet", 28, 61706, 61111},
    {"alexnet", 224, 46764746, 46736067},
    {"vgg", 224, 128806154, 128777475},
    {"googlenet", 96, 5977530, 5970355},
    {"resnet", 96, 11178378, 11174787},
    {"resnet32", 32, 463866, 463411},
    {"resnet18", 224, 11181642, 11178051, /*in_channels=*/3},
    {"resnet34", 224, 21289802, 21286211, /*in_channels=*/3},
    {"resnet50", 224, 23528522, 23514179, /*in_channels=*/3},
};

// `d2l_models.py --width-divisor 8 vgg`: the narrow VGG the forward test runs.
constexpr int64_t kVggDivisor8Parameters = 29815850;

// `d2l_models.py`, params: state_dict names and shapes in state_dict order, buffers included.
// mlp: 4 entries, 203530 parameters
const std::vector<NamedShape> kMlpState = {
    {"1.weight", {256, 784}},
    {"1.bias", {256}},
    {"3.weight", {10, 256}},
    {"3.bias", {10}},
};
// lenet: 10 entries, 61706 parameters
const std::vector<NamedShape> kLenetState = {
    {"0.weight", {6, 1, 5, 5}}, {"0.bias", {6}},   {"3.weight", {16, 6, 5, 5}}, {"3.bias", {16}},
    {"7.weight", {120, 400}},   {"7.bias", {120}}, {"9.weight", {84, 120}},     {"9.bias", {84}},
    {"11.weight", {10, 84}},    {"11.bias", {10}},
};
// alexnet: 16 entries, 46764746 parameters
const std::vector<NamedShape> kAlexnetState = {
    {"0.weight", {96, 1, 11, 11}},   {"0.bias", {96}},
    {"3.weight", {256, 96, 5, 5}},   {"3.bias", {256}},
    {"6.weight", {384, 256, 3, 3}},  {"6.bias", {384}},
    {"8.weight", {384, 384, 3, 3}},  {"8.bias", {384}},
    {"10.weight", {256, 384, 3, 3}}, {"10.bias", {256}},
    {"14.weight", {4096, 6400}},     {"14.bias", {4096}},
    {"17.weight", {4096, 4096}},     {"17.bias", {4096}},
    {"20.weight", {10, 4096}},       {"20.bias", {10}},
};
// vgg: 22 entries, 128806154 parameters
const std::vector<NamedShape> kVggState = {
    {"0.0.weight", {64, 1, 3, 3}},    {"0.0.bias", {64}},
    {"1.0.weight", {128, 64, 3, 3}},  {"1.0.bias", {128}},
    {"2.0.weight", {256, 128, 3, 3}}, {"2.0.bias", {256}},
    {"2.2.weight", {256, 256, 3, 3}}, {"2.2.bias", {256}},
    {"3.0.weight", {512, 256, 3, 3}}, {"3.0.bias", {512}},
    {"3.2.weight", {512, 512, 3, 3}}, {"3.2.bias", {512}},
    {"4.0.weight", {512, 512, 3, 3}}, {"4.0.bias", {512}},
    {"4.2.weight", {512, 512, 3, 3}}, {"4.2.bias", {512}},
    {"6.weight", {4096, 25088}},      {"6.bias", {4096}},
    {"9.weight", {4096, 4096}},       {"9.bias", {4096}},
    {"12.weight", {10, 4096}},        {"12.bias", {10}},
};
// resnet: 127 entries, 11178378 parameters
const std::vector<NamedShape> kResnetState = {
    {"0.0.weight", {64, 1, 7, 7}},
    {"0.0.bias", {64}},
    {"0.1.weight", {64}},
    {"0.1.bias", {64}},
    {"0.1.running_mean", {64}},
    {"0.1.running_var", {64}},
    {"0.1.num_batches_tracked", {}},
    {"1.0.conv1.weight", {64, 64, 3, 3}},
    {"1.0.conv1.bias", {64}},
    {"1.0.conv2.weight", {64, 64, 3, 3}},
    {"1.0.conv2.bias", {64}},
    {"1.0.bn1.weight", {64}},
    {"1.0.bn1.bias", {64}},
    {"1.0.bn1.running_mean", {64}},
    {"1.0.bn1.running_var", {64}},
    {"1.0.bn1.num_batches_tracked", {}},
    {"1.0.bn2.weight", {64}},
    {"1.0.bn2.bias", {64}},
    {"1.0.bn2.running_mean", {64}},
    {"1.0.bn2.running_var", {64}},
    {"1.0.bn2.num_batches_tracked", {}},
    {"1.1.conv1.weight", {64, 64, 3, 3}},
    {"1.1.conv1.bias", {64}},
    {"1.1.conv2.weight", {64, 64, 3, 3}},
    {"1.1.conv2.bias", {64}},
    {"1.1.bn1.weight", {64}},
    {"1.1.bn1.bias", {64}},
    {"1.1.bn1.running_mean", {64}},
    {"1.1.bn1.running_var", {64}},
    {"1.1.bn1.num_batches_tracked", {}},
    {"1.1.bn2.weight", {64}},
    {"1.1.bn2.bias", {64}},
    {"1.1.bn2.running_mean", {64}},
    {"1.1.bn2.running_var", {64}},
    {"1.1.bn2.num_batches_tracked", {}},
    {"2.0.conv1.weight", {128, 64, 3, 3}},
    {"2.0.conv1.bias", {128}},
    {"2.0.conv2.weight", {128, 128, 3, 3}},
    {"2.0.conv2.bias", {128}},
    {"2.0.conv3.weight", {128, 64, 1, 1}},
    {"2.0.conv3.bias", {128}},
    {"2.0.bn1.weight", {128}},
    {"2.0.bn1.bias", {128}},
    {"2.0.bn1.running_mean", {128}},
    {"2.0.bn1.running_var", {128}},
    {"2.0.bn1.num_batches_tracked", {}},
    {"2.0.bn2.weight", {128}},
    {"2.0.bn2.bias", {128}},
    {"2.0.bn2.running_mean", {128}},
    {"2.0.bn2.running_var", {128}},
    {"2.0.bn2.num_batches_tracked", {}},
    {"2.1.conv1.weight", {128, 128, 3, 3}},
    {"2.1.conv1.bias", {128}},
    {"2.1.conv2.weight", {128, 128, 3, 3}},
    {"2.1.conv2.bias", {128}},
    {"2.1.bn1.weight", {128}},
    {"2.1.bn1.bias", {128}},
    {"2.1.bn1.running_mean", {128}},
    {"2.1.bn1.running_var", {128}},
    {"2.1.bn1.num_batches_tracked", {}},
    {"2.1.bn2.weight", {128}},
    {"2.1.bn2.bias", {128}},
    {"2.1.bn2.running_mean", {128}},
    {"2.1.bn2.running_var", {128}},
    {"2.1.bn2.num_batches_tracked", {}},
    {"3.0.conv1.weight", {256, 128, 3, 3}},
    {"3.0.conv1.bias", {256}},
    {"3.0.conv2.weight", {256, 256, 3, 3}},
    {"3.0.conv2.bias", {256}},
    {"3.0.conv3.weight", {256, 128, 1, 1}},
    {"3.0.conv3.bias", {256}},
    {"3.0.bn1.weight", {256}},
    {"3.0.bn1.bias", {256}},
    {"3.0.bn1.running_mean", {256}},
    {"3.0.bn1.running_var", {256}},
    {"3.0.bn1.num_batches_tracked", {}},
    {"3.0.bn2.weight", {256}},
    {"3.0.bn2.bias", {256}},
    {"3.0.bn2.running_mean", {256}},
    {"3.0.bn2.running_var", {256}},
    {"3.0.bn2.num_batches_tracked", {}},
    {"3.1.conv1.weight", {256, 256, 3, 3}},
    {"3.1.conv1.bias", {256}},
    {"3.1.conv2.weight", {256, 256, 3, 3}},
    {"3.1.conv2.bias", {256}},
    {"3.1.bn1.weight", {256}},
    {"3.1.bn1.bias", {256}},
    {"3.1.bn1.running_mean", {256}},
    {"3.1.bn1.running_var", {256}},
    {"3.1.bn1.num_batches_tracked", {}},
    {"3.1.bn2.weight", {256}},
    {"3.1.bn2.bias", {256}},
    {"3.1.bn2.running_mean", {256}},
    {"3.1.bn2.running_var", {256}},
    {"3.1.bn2.num_batches_tracked", {}},
    {"4.0.conv1.weight", {512, 256, 3, 3}},
    {"4.0.conv1.bias", {512}},
    {"4.0.conv2.weight", {512, 512, 3, 3}},
    {"4.0.conv2.bias", {512}},
    {"4.0.conv3.weight", {512, 256, 1, 1}},
    {"4.0.conv3.bias", {512}},
    {"4.0.bn1.weight", {512}},
    {"4.0.bn1.bias", {512}},
    {"4.0.bn1.running_mean", {512}},
    {"4.0.bn1.running_var", {512}},
    {"4.0.bn1.num_batches_tracked", {}},
    {"4.0.bn2.weight", {512}},
    {"4.0.bn2.bias", {512}},
    {"4.0.bn2.running_mean", {512}},
    {"4.0.bn2.running_var", {512}},
    {"4.0.bn2.num_batches_tracked", {}},
    {"4.1.conv1.weight", {512, 512, 3, 3}},
    {"4.1.conv1.bias", {512}},
    {"4.1.conv2.weight", {512, 512, 3, 3}},
    {"4.1.conv2.bias", {512}},
    {"4.1.bn1.weight", {512}},
    {"4.1.bn1.bias", {512}},
    {"4.1.bn1.running_mean", {512}},
    {"4.1.bn1.running_var", {512}},
    {"4.1.bn1.num_batches_tracked", {}},
    {"4.1.bn2.weight", {512}},
    {"4.1.bn2.bias", {512}},
    {"4.1.bn2.running_mean", {512}},
    {"4.1.bn2.running_var", {512}},
    {"4.1.bn2.num_batches_tracked", {}},
    {"7.weight", {10, 512}},
    {"7.bias", {10}},
};

// resnet32: 188 entries, 463866 parameters
const std::vector<NamedShape> kResnet32State = {
    {"conv1.weight", {16, 1, 3, 3}},
    {"bn1.weight", {16}},
    {"bn1.bias", {16}},
    {"bn1.running_mean", {16}},
    {"bn1.running_var", {16}},
    {"bn1.num_batches_tracked", {}},
    {"layer1.0.conv1.weight", {16, 16, 3, 3}},
    {"layer1.0.bn1.weight", {16}},
    {"layer1.0.bn1.bias", {16}},
    {"layer1.0.bn1.running_mean", {16}},
    {"layer1.0.bn1.running_var", {16}},
    {"layer1.0.bn1.num_batches_tracked", {}},
    {"layer1.0.conv2.weight", {16, 16, 3, 3}},
    {"layer1.0.bn2.weight", {16}},
    {"layer1.0.bn2.bias", {16}},
    {"layer1.0.bn2.running_mean", {16}},
    {"layer1.0.bn2.running_var", {16}},
    {"layer1.0.bn2.num_batches_tracked", {}},
    {"layer1.1.conv1.weight", {16, 16, 3, 3}},
    {"layer1.1.bn1.weight", {16}},
    {"layer1.1.bn1.bias", {16}},
    {"layer1.1.bn1.running_mean", {16}},
    {"layer1.1.bn1.running_var", {16}},
    {"layer1.1.bn1.num_batches_tracked", {}},
    {"layer1.1.conv2.weight", {16, 16, 3, 3}},
    {"layer1.1.bn2.weight", {16}},
    {"layer1.1.bn2.bias", {16}},
    {"layer1.1.bn2.running_mean", {16}},
    {"layer1.1.bn2.running_var", {16}},
    {"layer1.1.bn2.num_batches_tracked", {}},
    {"layer1.2.conv1.weight", {16, 16, 3, 3}},
    {"layer1.2.bn1.weight", {16}},
    {"layer1.2.bn1.bias", {16}},
    {"layer1.2.bn1.running_mean", {16}},
    {"layer1.2.bn1.running_var", {16}},
    {"layer1.2.bn1.num_batches_tracked", {}},
    {"layer1.2.conv2.weight", {16, 16, 3, 3}},
    {"layer1.2.bn2.weight", {16}},
    {"layer1.2.bn2.bias", {16}},
    {"layer1.2.bn2.running_mean", {16}},
    {"layer1.2.bn2.running_var", {16}},
    {"layer1.2.bn2.num_batches_tracked", {}},
    {"layer1.3.conv1.weight", {16, 16, 3, 3}},
    {"layer1.3.bn1.weight", {16}},
    {"layer1.3.bn1.bias", {16}},
    {"layer1.3.bn1.running_mean", {16}},
    {"layer1.3.bn1.running_var", {16}},
    {"layer1.3.bn1.num_batches_tracked", {}},
    {"layer1.3.conv2.weight", {16, 16, 3, 3}},
    {"layer1.3.bn2.weight", {16}},
    {"layer1.3.bn2.bias", {16}},
    {"layer1.3.bn2.running_mean", {16}},
    {"layer1.3.bn2.running_var", {16}},
    {"layer1.3.bn2.num_batches_tracked", {}},
    {"layer1.4.conv1.weight", {16, 16, 3, 3}},
    {"layer1.4.bn1.weight", {16}},
    {"layer1.4.bn1.bias", {16}},
    {"layer1.4.bn1.running_mean", {16}},
    {"layer1.4.bn1.running_var", {16}},
    {"layer1.4.bn1.num_batches_tracked", {}},
    {"layer1.4.conv2.weight", {16, 16, 3, 3}},
    {"layer1.4.bn2.weight", {16}},
    {"layer1.4.bn2.bias", {16}},
    {"layer1.4.bn2.running_mean", {16}},
    {"layer1.4.bn2.running_var", {16}},
    {"layer1.4.bn2.num_batches_tracked", {}},
    {"layer2.0.conv1.weight", {32, 16, 3, 3}},
    {"layer2.0.bn1.weight", {32}},
    {"layer2.0.bn1.bias", {32}},
    {"layer2.0.bn1.running_mean", {32}},
    {"layer2.0.bn1.running_var", {32}},
    {"layer2.0.bn1.num_batches_tracked", {}},
    {"layer2.0.conv2.weight", {32, 32, 3, 3}},
    {"layer2.0.bn2.weight", {32}},
    {"layer2.0.bn2.bias", {32}},
    {"layer2.0.bn2.running_mean", {32}},
    {"layer2.0.bn2.running_var", {32}},
    {"layer2.0.bn2.num_batches_tracked", {}},
    {"layer2.1.conv1.weight", {32, 32, 3, 3}},
    {"layer2.1.bn1.weight", {32}},
    {"layer2.1.bn1.bias", {32}},
    {"layer2.1.bn1.running_mean", {32}},
    {"layer2.1.bn1.running_var", {32}},
    {"layer2.1.bn1.num_batches_tracked", {}},
    {"layer2.1.conv2.weight", {32, 32, 3, 3}},
    {"layer2.1.bn2.weight", {32}},
    {"layer2.1.bn2.bias", {32}},
    {"layer2.1.bn2.running_mean", {32}},
    {"layer2.1.bn2.running_var", {32}},
    {"layer2.1.bn2.num_batches_tracked", {}},
    {"layer2.2.conv1.weight", {32, 32, 3, 3}},
    {"layer2.2.bn1.weight", {32}},
    {"layer2.2.bn1.bias", {32}},
    {"layer2.2.bn1.running_mean", {32}},
    {"layer2.2.bn1.running_var", {32}},
    {"layer2.2.bn1.num_batches_tracked", {}},
    {"layer2.2.conv2.weight", {32, 32, 3, 3}},
    {"layer2.2.bn2.weight", {32}},
    {"layer2.2.bn2.bias", {32}},
    {"layer2.2.bn2.running_mean", {32}},
    {"layer2.2.bn2.running_var", {32}},
    {"layer2.2.bn2.num_batches_tracked", {}},
    {"layer2.3.conv1.weight", {32, 32, 3, 3}},
    {"layer2.3.bn1.weight", {32}},
    {"layer2.3.bn1.bias", {32}},
    {"layer2.3.bn1.running_mean", {32}},
    {"layer2.3.bn1.running_var", {32}},
    {"layer2.3.bn1.num_batches_tracked", {}},
    {"layer2.3.conv2.weight", {32, 32, 3, 3}},
    {"layer2.3.bn2.weight", {32}},
    {"layer2.3.bn2.bias", {32}},
    {"layer2.3.bn2.running_mean", {32}},
    {"layer2.3.bn2.running_var", {32}},
    {"layer2.3.bn2.num_batches_tracked", {}},
    {"layer2.4.conv1.weight", {32, 32, 3, 3}},
    {"layer2.4.bn1.weight", {32}},
    {"layer2.4.bn1.bias", {32}},
    {"layer2.4.bn1.running_mean", {32}},
    {"layer2.4.bn1.running_var", {32}},
    {"layer2.4.bn1.num_batches_tracked", {}},
    {"layer2.4.conv2.weight", {32, 32, 3, 3}},
    {"layer2.4.bn2.weight", {32}},
    {"layer2.4.bn2.bias", {32}},
    {"layer2.4.bn2.running_mean", {32}},
    {"layer2.4.bn2.running_var", {32}},
    {"layer2.4.bn2.num_batches_tracked", {}},
    {"layer3.0.conv1.weight", {64, 32, 3, 3}},
    {"layer3.0.bn1.weight", {64}},
    {"layer3.0.bn1.bias", {64}},
    {"layer3.0.bn1.running_mean", {64}},
    {"layer3.0.bn1.running_var", {64}},
    {"layer3.0.bn1.num_batches_tracked", {}},
    {"layer3.0.conv2.weight", {64, 64, 3, 3}},
    {"layer3.0.bn2.weight", {64}},
    {"layer3.0.bn2.bias", {64}},
    {"layer3.0.bn2.running_mean", {64}},
    {"layer3.0.bn2.running_var", {64}},
    {"layer3.0.bn2.num_batches_tracked", {}},
    {"layer3.1.conv1.weight", {64, 64, 3, 3}},
    {"layer3.1.bn1.weight", {64}},
    {"layer3.1.bn1.bias", {64}},
    {"layer3.1.bn1.running_mean", {64}},
    {"layer3.1.bn1.running_var", {64}},
    {"layer3.1.bn1.num_batches_tracked", {}},
    {"layer3.1.conv2.weight", {64, 64, 3, 3}},
    {"layer3.1.bn2.weight", {64}},
    {"layer3.1.bn2.bias", {64}},
    {"layer3.1.bn2.running_mean", {64}},
    {"layer3.1.bn2.running_var", {64}},
    {"layer3.1.bn2.num_batches_tracked", {}},
    {"layer3.2.conv1.weight", {64, 64, 3, 3}},
    {"layer3.2.bn1.weight", {64}},
    {"layer3.2.bn1.bias", {64}},
    {"layer3.2.bn1.running_mean", {64}},
    {"layer3.2.bn1.running_var", {64}},
    {"layer3.2.bn1.num_batches_tracked", {}},
    {"layer3.2.conv2.weight", {64, 64, 3, 3}},
    {"layer3.2.bn2.weight", {64}},
    {"layer3.2.bn2.bias", {64}},
    {"layer3.2.bn2.running_mean", {64}},
    {"layer3.2.bn2.running_var", {64}},
    {"layer3.2.bn2.num_batches_tracked", {}},
    {"layer3.3.conv1.weight", {64, 64, 3, 3}},
    {"layer3.3.bn1.weight", {64}},
    {"layer3.3.bn1.bias", {64}},
    {"layer3.3.bn1.running_mean", {64}},
    {"layer3.3.bn1.running_var", {64}},
    {"layer3.3.bn1.num_batches_tracked", {}},
    {"layer3.3.conv2.weight", {64, 64, 3, 3}},
    {"layer3.3.bn2.weight", {64}},
    {"layer3.3.bn2.bias", {64}},
    {"layer3.3.bn2.running_mean", {64}},
    {"layer3.3.bn2.running_var", {64}},
    {"layer3.3.bn2.num_batches_tracked", {}},
    {"layer3.4.conv1.weight", {64, 64, 3, 3}},
    {"layer3.4.bn1.weight", {64}},
    {"layer3.4.bn1.bias", {64}},
    {"layer3.4.bn1.running_mean", {64}},
    {"layer3.4.bn1.running_var", {64}},
    {"layer3.4.bn1.num_batches_tracked", {}},
    {"layer3.4.conv2.weight", {64, 64, 3, 3}},
    {"layer3.4.bn2.weight", {64}},
    {"layer3.4.bn2.bias", {64}},
    {"layer3.4.bn2.running_mean", {64}},
    {"layer3.4.bn2.running_var", {64}},
    {"layer3.4.bn2.num_batches_tracked", {}},
    {"linear.weight", {10, 64}},
    {"linear.bias", {10}},
};
// googlenet: 116 entries, 5977530 parameters
const std::vector<NamedShape> kGooglenetState = {
    {"0.0.weight", {64, 1, 7, 7}},
    {"0.0.bias", {64}},
    {"1.0.weight", {64, 64, 1, 1}},
    {"1.0.bias", {64}},
    {"1.2.weight", {192, 64, 3, 3}},
    {"1.2.bias", {192}},
    {"2.0.p1_1.weight", {64, 192, 1, 1}},
    {"2.0.p1_1.bias", {64}},
    {"2.0.p2_1.weight", {96, 192, 1, 1}},
    {"2.0.p2_1.bias", {96}},
    {"2.0.p2_2.weight", {128, 96, 3, 3}},
    {"2.0.p2_2.bias", {128}},
    {"2.0.p3_1.weight", {16, 192, 1, 1}},
    {"2.0.p3_1.bias", {16}},
    {"2.0.p3_2.weight", {32, 16, 5, 5}},
    {"2.0.p3_2.bias", {32}},
    {"2.0.p4_2.weight", {32, 192, 1, 1}},
    {"2.0.p4_2.bias", {32}},
    {"2.1.p1_1.weight", {128, 256, 1, 1}},
    {"2.1.p1_1.bias", {128}},
    {"2.1.p2_1.weight", {128, 256, 1, 1}},
    {"2.1.p2_1.bias", {128}},
    {"2.1.p2_2.weight", {192, 128, 3, 3}},
    {"2.1.p2_2.bias", {192}},
    {"2.1.p3_1.weight", {32, 256, 1, 1}},
    {"2.1.p3_1.bias", {32}},
    {"2.1.p3_2.weight", {96, 32, 5, 5}},
    {"2.1.p3_2.bias", {96}},
    {"2.1.p4_2.weight", {64, 256, 1, 1}},
    {"2.1.p4_2.bias", {64}},
    {"3.0.p1_1.weight", {192, 480, 1, 1}},
    {"3.0.p1_1.bias", {192}},
    {"3.0.p2_1.weight", {96, 480, 1, 1}},
    {"3.0.p2_1.bias", {96}},
    {"3.0.p2_2.weight", {208, 96, 3, 3}},
    {"3.0.p2_2.bias", {208}},
    {"3.0.p3_1.weight", {16, 480, 1, 1}},
    {"3.0.p3_1.bias", {16}},
    {"3.0.p3_2.weight", {48, 16, 5, 5}},
    {"3.0.p3_2.bias", {48}},
    {"3.0.p4_2.weight", {64, 480, 1, 1}},
    {"3.0.p4_2.bias", {64}},
    {"3.1.p1_1.weight", {160, 512, 1, 1}},
    {"3.1.p1_1.bias", {160}},
    {"3.1.p2_1.weight", {112, 512, 1, 1}},
    {"3.1.p2_1.bias", {112}},
    {"3.1.p2_2.weight", {224, 112, 3, 3}},
    {"3.1.p2_2.bias", {224}},
    {"3.1.p3_1.weight", {24, 512, 1, 1}},
    {"3.1.p3_1.bias", {24}},
    {"3.1.p3_2.weight", {64, 24, 5, 5}},
    {"3.1.p3_2.bias", {64}},
    {"3.1.p4_2.weight", {64, 512, 1, 1}},
    {"3.1.p4_2.bias", {64}},
    {"3.2.p1_1.weight", {128, 512, 1, 1}},
    {"3.2.p1_1.bias", {128}},
    {"3.2.p2_1.weight", {128, 512, 1, 1}},
    {"3.2.p2_1.bias", {128}},
    {"3.2.p2_2.weight", {256, 128, 3, 3}},
    {"3.2.p2_2.bias", {256}},
    {"3.2.p3_1.weight", {24, 512, 1, 1}},
    {"3.2.p3_1.bias", {24}},
    {"3.2.p3_2.weight", {64, 24, 5, 5}},
    {"3.2.p3_2.bias", {64}},
    {"3.2.p4_2.weight", {64, 512, 1, 1}},
    {"3.2.p4_2.bias", {64}},
    {"3.3.p1_1.weight", {112, 512, 1, 1}},
    {"3.3.p1_1.bias", {112}},
    {"3.3.p2_1.weight", {144, 512, 1, 1}},
    {"3.3.p2_1.bias", {144}},
    {"3.3.p2_2.weight", {288, 144, 3, 3}},
    {"3.3.p2_2.bias", {288}},
    {"3.3.p3_1.weight", {32, 512, 1, 1}},
    {"3.3.p3_1.bias", {32}},
    {"3.3.p3_2.weight", {64, 32, 5, 5}},
    {"3.3.p3_2.bias", {64}},
    {"3.3.p4_2.weight", {64, 512, 1, 1}},
    {"3.3.p4_2.bias", {64}},
    {"3.4.p1_1.weight", {256, 528, 1, 1}},
    {"3.4.p1_1.bias", {256}},
    {"3.4.p2_1.weight", {160, 528, 1, 1}},
    {"3.4.p2_1.bias", {160}},
    {"3.4.p2_2.weight", {320, 160, 3, 3}},
    {"3.4.p2_2.bias", {320}},
    {"3.4.p3_1.weight", {32, 528, 1, 1}},
    {"3.4.p3_1.bias", {32}},
    {"3.4.p3_2.weight", {128, 32, 5, 5}},
    {"3.4.p3_2.bias", {128}},
    {"3.4.p4_2.weight", {128, 528, 1, 1}},
    {"3.4.p4_2.bias", {128}},
    {"4.0.p1_1.weight", {256, 832, 1, 1}},
    {"4.0.p1_1.bias", {256}},
    {"4.0.p2_1.weight", {160, 832, 1, 1}},
    {"4.0.p2_1.bias", {160}},
    {"4.0.p2_2.weight", {320, 160, 3, 3}},
    {"4.0.p2_2.bias", {320}},
    {"4.0.p3_1.weight", {32, 832, 1, 1}},
    {"4.0.p3_1.bias", {32}},
    {"4.0.p3_2.weight", {128, 32, 5, 5}},
    {"4.0.p3_2.bias", {128}},
    {"4.0.p4_2.weight", {128, 832, 1, 1}},
    {"4.0.p4_2.bias", {128}},
    {"4.1.p1_1.weight", {384, 832, 1, 1}},
    {"4.1.p1_1.bias", {384}},
    {"4.1.p2_1.weight", {192, 832, 1, 1}},
    {"4.1.p2_1.bias", {192}},
    {"4.1.p2_2.weight", {384, 192, 3, 3}},
    {"4.1.p2_2.bias", {384}},
    {"4.1.p3_1.weight", {48, 832, 1, 1}},
    {"4.1.p3_1.bias", {48}},
    {"4.1.p3_2.weight", {128, 48, 5, 5}},
    {"4.1.p3_2.bias", {128}},
    {"4.1.p4_2.weight", {128, 832, 1, 1}},
    {"4.1.p4_2.bias", {128}},
    {"5.weight", {10, 1024}},
    {"5.bias", {10}},
};

const std::vector<NamedShape>& reference_state(const std::string& name) {
  if (name == "mlp") return kMlpState;
  if (name == "lenet") return kLenetState;
  if (name == "alexnet") return kAlexnetState;
  if (name == "vgg") return kVggState;
  if (name == "googlenet") return kGooglenetState;
  if (name == "resnet32") return kResnet32State;
  if (name == "resnet18") return torchfocal::fixtures::kResnet18State;
  if (name == "resnet34") return torchfocal::fixtures::kResnet34State;
  if (name == "resnet50") return torchfocal::fixtures::kResnet50State;
  if (name == "resnet") return kResnetState;
  throw std::invalid_argument("no reference state_dict for " + name);
}

int64_t count_trainable(const torch::nn::Module& net) {
  int64_t n = 0;
  for (const auto& p : net.parameters()) {
    if (p.requires_grad()) n += p.numel();
  }
  return n;
}

std::vector<NamedShape> named_shapes(const torch::OrderedDict<std::string, torch::Tensor>& dict) {
  std::vector<NamedShape> out;
  for (const auto& item : dict) out.emplace_back(item.key(), item.value().sizes().vec());
  return out;
}

bool is_buffer_name(const std::string& name) {
  for (const char* suffix : {".running_mean", ".running_var", ".num_batches_tracked"}) {
    const std::string s(suffix);
    if (name.size() > s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0) {
      return true;
    }
  }
  return false;
}

class ZooModel : public ::testing::TestWithParam<Reference> {};

TEST_P(ZooModel, InfoGivesTheInputSize) {
  EXPECT_EQ(model_info(GetParam().name).name, GetParam().name);
  EXPECT_EQ(model_info(GetParam().name).input_size, GetParam().input_size);
  EXPECT_FALSE(model_info(GetParam().name).description.empty());
}

TEST_P(ZooModel, ParameterCountEqualsPyTorch) {
  const auto& ref = GetParam();
  EXPECT_EQ(count_trainable(*make_model(ref.name, {10, 1, ref.in_channels})), ref.parameters_10);
  EXPECT_EQ(count_trainable(*make_model(ref.name, {/*num_classes=*/3, 1, ref.in_channels})),
            ref.parameters_3);
}

TEST_P(ZooModel, NamesAndShapesEqualPyTorchStateDict) {
  const auto& ref = reference_state(GetParam().name);
  auto net = make_model(GetParam().name, {10, 1, GetParam().in_channels});
  // PyTorch's state_dict interleaves each module's parameters and buffers; LibTorch lists
  // them separately, each in registration order: compare both orders against the reference.
  std::vector<NamedShape> ref_params, ref_buffers;
  for (const auto& entry : ref) {
    (is_buffer_name(entry.first) ? ref_buffers : ref_params).push_back(entry);
  }
  EXPECT_EQ(named_shapes(net->named_parameters()), ref_params);
  EXPECT_EQ(named_shapes(net->named_buffers()), ref_buffers);
}

TEST_P(ZooModel, ForwardGivesOneRowOfLogitsPerImage) {
  const auto& ref = GetParam();
  torch::NoGradGuard no_grad;
  torch::manual_seed(0);
  constexpr int64_t kClasses = 3;  // not the default 10, so num_classes must reach the head
  // narrow VGG: the full one costs seconds per image on two cores
  const int64_t divisor = ref.name == "vgg" ? 8 : 1;
  auto net = make_model(ref.name, {kClasses, divisor, ref.in_channels});
  net->eval();
  auto y = net->forward(torch::rand({2, ref.in_channels, ref.input_size, ref.input_size}));
  EXPECT_EQ(y.sizes().vec(), (std::vector<int64_t>{2, kClasses}));
  EXPECT_TRUE(torch::isfinite(y).all().item<bool>());
}

TEST_P(ZooModel, TakesRgbImagesAtAnotherInputSize) {
  const auto& ref = GetParam();
  torch::NoGradGuard no_grad;
  torch::manual_seed(0);
  const int64_t divisor = ref.name == "vgg" ? 8 : 1;
  // a side the fixed-size heads (mlp, lenet, alexnet, vgg) must be sized for
  const int64_t side = ref.input_size + 32;
  auto net = make_model(ref.name, {3, divisor, /*in_channels=*/3, /*input_size=*/side});
  net->eval();
  // the first weight takes the 3 channels: a conv's dim 1, or the mlp's flattened image
  const auto first = net->parameters().front();
  EXPECT_EQ(first.size(1), ref.name == "mlp" ? 3 * side * side : 3) << ref.name;
  auto y = net->forward(torch::rand({2, 3, side, side}));
  EXPECT_EQ(y.sizes().vec(), (std::vector<int64_t>{2, 3}));
  EXPECT_TRUE(torch::isfinite(y).all().item<bool>());
}

INSTANTIATE_TEST_SUITE_P(PyTorchReference, ZooModel, ::testing::ValuesIn(kReferences),
                         [](const auto& info) { return info.param.name; });

TEST(ModelRegistry, ListsTheNetworksInAStableOrder) {
  ASSERT_EQ(model_infos().size(), kReferences.size());
  for (size_t i = 0; i < kReferences.size(); ++i) {
    EXPECT_EQ(model_infos()[i].name, kReferences[i].name);
  }
}

TEST(ModelRegistry, UnknownNameThrowsNamingTheKnownModels) {
  for (const auto& call :
       {+[] { model_info("resnet101"); }, +[] { make_model("resnet101", {}); }}) {
    try {
      call();
      ADD_FAILURE() << "no exception";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("unknown model 'resnet101'"), std::string::npos);
      EXPECT_NE(std::string(e.what()).find(kKnown), std::string::npos) << e.what();
    }
  }
}

TEST(ModelRegistry, AnInputSizeTooSmallForTheLayersIsAnError) {
  for (const char* name : {"lenet", "alexnet", "vgg"}) {
    try {
      make_model(name, {10, 1, 1, /*input_size=*/4});
      ADD_FAILURE() << name << " accepted a 4-pixel input";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("input size too small"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(make_model("lenet", {10, 1, /*in_channels=*/0}), std::invalid_argument);
}

TEST(ModelRegistry, BadOptionsThrow) {
  EXPECT_THROW(make_model("lenet", {/*num_classes=*/1}), std::invalid_argument);
  EXPECT_THROW(make_model("mlp", {/*num_classes=*/0}), std::invalid_argument);
  EXPECT_THROW(make_model("resnet", {/*num_classes=*/-3}), std::invalid_argument);
  EXPECT_THROW(make_model("mlp", {10, /*width_divisor=*/0}), std::invalid_argument);
  EXPECT_THROW(make_model("vgg", {10, /*width_divisor=*/-2}), std::invalid_argument);
  // 3 does not divide 64; 128 would leave no channels at all
  for (int64_t divisor : {3, 128}) {
    try {
      make_model("vgg", {10, divisor});
      ADD_FAILURE() << "width_divisor " << divisor << " accepted";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("width_divisor"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("vgg"), std::string::npos) << e.what();
    }
  }
  // other networks have no widths to divide: the option is ignored there
  EXPECT_EQ(count_trainable(*make_model("lenet", {10, /*width_divisor=*/4})), 61706);
}

TEST(ModelRegistry, VggWidthDivisorNarrowsTheConvolutions) {
  auto net = make_model("vgg", {10, /*width_divisor=*/8});
  EXPECT_EQ(count_trainable(*net), kVggDivisor8Parameters);
  EXPECT_EQ(net->named_parameters()["0.0.weight"].sizes().vec(),
            (std::vector<int64_t>{64 / 8, 1, 3, 3}));
  EXPECT_EQ(net->named_parameters()["6.weight"].sizes().vec(),
            (std::vector<int64_t>{4096, 512 / 8 * 7 * 7}));
}

TEST(ModelRegistry, NestedBlocksSurviveADeepCopy) {
  // nested blocks are a Sequential subclass; clone() must hand back that subclass
  auto net = make_model("vgg", {10, /*width_divisor=*/8});
  auto copy = std::dynamic_pointer_cast<torch::nn::SequentialImpl>(net->clone());
  ASSERT_TRUE(copy);
  EXPECT_EQ(named_shapes(copy->named_parameters()), named_shapes(net->named_parameters()));
  EXPECT_TRUE(
      torch::equal(copy->named_parameters()["4.2.weight"], net->named_parameters()["4.2.weight"]));
}

TEST(ResNet, StridedShortcutIsTheStridedOneByOneConvolution) {
  // The shortcut subsamples, then convolves at stride 1 (a oneDNN 3.7 guard, models/resnet.cpp):
  // it must equal PyTorch's strided 1x1 convolution in value and in both gradients, in float64
  // and channels-last, on odd and even sides.
  torch::manual_seed(7);
  for (const int64_t side : {7, 12}) {
    torchfocal::models::Residual block(/*input_channels=*/4, /*num_channels=*/8,
                                       /*use_1x1conv=*/true, /*strides=*/2);
    block->to(torch::kFloat64);
    auto x = torch::randn({3, 4, side, side}, torch::kFloat64)
                 .contiguous(torch::MemoryFormat::ChannelsLast)
                 .requires_grad_();
    auto main_path = [&](const torch::Tensor& input) {
      return block->bn2(block->conv2(torch::relu(block->bn1(block->conv1(input)))));
    };
    auto ours = block->forward(x);
    auto upstream = torch::randn_like(ours);
    auto grads = torch::autograd::grad({ours}, {x, block->conv3->weight}, {upstream});
    auto reference = torch::relu(
        main_path(x) + torch::conv2d(x, block->conv3->weight, block->conv3->bias, /*stride=*/2));
    auto ref_grads = torch::autograd::grad({reference}, {x, block->conv3->weight}, {upstream});
    ASSERT_EQ(ours.sizes(), reference.sizes());
    EXPECT_TRUE(torch::allclose(ours, reference, 1e-12, 1e-12)) << "side " << side;
    EXPECT_TRUE(torch::allclose(grads[0], ref_grads[0], 1e-12, 1e-12)) << "side " << side;
    EXPECT_TRUE(torch::allclose(grads[1], ref_grads[1], 1e-12, 1e-12)) << "side " << side;
  }
}

TEST(ResNet32, OptionAShortcutSubsamplesAndPadsChannelsWithZeros) {
  // With both convolutions' weights zero and batch norm's shift zero, a block is its shortcut:
  // x[:, :, ::2, ::2] with planes/4 zero channels on each side, through a ReLU.
  torch::manual_seed(3);
  torchfocal::models::BasicBlockA block(/*in_planes=*/8, /*planes=*/16, /*stride=*/2);
  torch::NoGradGuard no_grad;
  block->conv1->weight.zero_();
  block->conv2->weight.zero_();
  block->eval();
  const auto x = torch::randn({2, 8, 9, 9});
  const auto sub = x.index({torch::indexing::Slice(), torch::indexing::Slice(),
                            torch::indexing::Slice(0, c10::nullopt, 2),
                            torch::indexing::Slice(0, c10::nullopt, 2)});
  const auto zeros = torch::zeros({2, 4, 5, 5});
  const auto expected = torch::relu(torch::cat({zeros, sub, zeros}, /*dim=*/1));
  EXPECT_TRUE(torch::equal(block->forward(x), expected));
  // the identity shortcut where nothing changes
  torchfocal::models::BasicBlockA same(/*in_planes=*/16, /*planes=*/16, /*stride=*/1);
  same->conv1->weight.zero_();
  same->conv2->weight.zero_();
  same->eval();
  const auto y = torch::randn({2, 16, 6, 6});
  EXPECT_TRUE(torch::equal(same->forward(y), torch::relu(y)));
}

TEST(ResNet32, KaimingNormalWeightsAndItsWidthDivisors) {
  // The papers' initialisation: N(0, 2 / fan_in) for every convolution and the linear layer.
  torch::manual_seed(5);
  auto net = make_model("resnet32", {});
  const auto params = net->named_parameters();
  for (const auto& [name, fan_in] : std::vector<std::pair<std::string, double>>{
           {"layer3.4.conv2.weight", 64 * 9}, {"layer1.0.conv1.weight", 16 * 9}}) {
    const double std = params[name].std().item<double>();
    EXPECT_NEAR(std, std::sqrt(2.0 / fan_in), 0.05 * std::sqrt(2.0 / fan_in)) << name;
  }
  for (const int64_t d : {2, 4, 8}) {
    auto narrow = make_model("resnet32", {10, d});
    torch::NoGradGuard no_grad;
    narrow->eval();
    EXPECT_EQ(narrow->forward(torch::rand({2, 1, 32, 32})).sizes().vec(),
              (std::vector<int64_t>{2, 10}));
  }
  for (const int64_t d : {3, 16}) {
    EXPECT_THROW(make_model("resnet32", {10, d}), std::invalid_argument) << d;
  }
}

using TensorFn = std::function<torch::Tensor(const torch::Tensor&)>;

// A block (in float64) against main_path(x) + torchvision's strided 1x1 projection through its
// downsample's weights, in value and in both gradients, channels-last, odd and even sides.
void expect_strided_projection(const std::string& name, const TensorFn& block,
                               const TensorFn& main_path,
                               torchfocal::models::SequentialBlock downsample) {
  ASSERT_TRUE(downsample) << name;
  auto* conv = downsample[0]->as<torch::nn::Conv2d>();
  auto* bn = downsample[1]->as<torchfocal::models::BatchNorm2d>();
  ASSERT_TRUE(conv && bn) << name;
  EXPECT_EQ((*conv->options.stride())[0], 1) << name;
  for (const int64_t side : {7, 12}) {
    auto x = torch::randn({3, 4, side, side}, torch::kFloat64)
                 .contiguous(torch::MemoryFormat::ChannelsLast)
                 .requires_grad_();
    auto ours = block(x);
    auto upstream = torch::randn_like(ours);
    auto grads = torch::autograd::grad({ours}, {x, conv->weight}, {upstream});
    auto reference =
        torch::relu(main_path(x) + bn->forward(torch::conv2d(x, conv->weight, {}, /*stride=*/2)));
    auto ref_grads = torch::autograd::grad({reference}, {x, conv->weight}, {upstream});
    ASSERT_EQ(ours.sizes(), reference.sizes()) << name;
    EXPECT_TRUE(torch::allclose(ours, reference, 1e-12, 1e-12)) << name << ", side " << side;
    EXPECT_TRUE(torch::allclose(grads[0], ref_grads[0], 1e-12, 1e-12)) << name << ", " << side;
    EXPECT_TRUE(torch::allclose(grads[1], ref_grads[1], 1e-12, 1e-12)) << name << ", " << side;
  }
}

TEST(TorchvisionResNet, StridedShortcutsAreTheStridedOneByOneConvolution) {
  // downsample.0 runs at stride 1 on a subsampled input (a oneDNN guard, layers.h).
  torch::manual_seed(11);
  torchfocal::models::BasicBlock basic(/*in_planes=*/4, /*planes=*/8, /*stride=*/2);
  basic->to(torch::kFloat64);
  expect_strided_projection(
      "BasicBlock", [&](const torch::Tensor& x) { return basic->forward(x); },
      [&](const torch::Tensor& x) {
        return basic->bn2(basic->conv2(torch::relu(basic->bn1(basic->conv1(x)))));
      },
      basic->downsample);
  torchfocal::models::Bottleneck bottleneck(/*in_planes=*/4, /*planes=*/4, /*stride=*/2);
  bottleneck->to(torch::kFloat64);
  // v1.5: the 3x3 convolution strides, not the first 1x1
  EXPECT_EQ((*bottleneck->conv1->options.stride())[0], 1);
  EXPECT_EQ((*bottleneck->conv2->options.stride())[0], 2);
  expect_strided_projection(
      "Bottleneck", [&](const torch::Tensor& x) { return bottleneck->forward(x); },
      [&](const torch::Tensor& x) {
        auto y = torch::relu(bottleneck->bn1(bottleneck->conv1(x)));
        y = torch::relu(bottleneck->bn2(bottleneck->conv2(y)));
        return bottleneck->bn3(bottleneck->conv3(y));
      },
      bottleneck->downsample);
}

TEST(TorchvisionResNet, TorchvisionsInitialisation) {
  // Convolutions N(0, 2 / fan_out), batch norm 1 and 0, the head U(±1/sqrt(fan_in)).
  torch::manual_seed(5);
  auto net = make_model("resnet50", {10, 1, /*in_channels=*/3});
  const auto params = net->named_parameters();
  for (const auto& [name, fan_out] :
       std::vector<std::pair<std::string, double>>{{"layer4.0.conv2.weight", 512 * 9},
                                                   {"layer1.0.conv1.weight", 64},
                                                   {"conv1.weight", 64 * 49}}) {
    const double std = params[name].std().item<double>();
    EXPECT_NEAR(std, std::sqrt(2.0 / fan_out), 0.05 * std::sqrt(2.0 / fan_out)) << name;
  }
  for (const std::string bn : {"bn1", "layer3.5.bn3", "layer2.0.downsample.1"}) {
    const auto& weight = params[bn + ".weight"];
    EXPECT_TRUE(torch::equal(weight, torch::ones_like(weight))) << bn;
    EXPECT_TRUE(torch::equal(params[bn + ".bias"], torch::zeros_like(weight))) << bn;
  }
  const double bound = 1 / std::sqrt(2048.0);
  EXPECT_LE(params["fc.weight"].abs().max().item<double>(), bound);
  EXPECT_NEAR(params["fc.weight"].std().item<double>(), bound / std::sqrt(3.0), 0.05 * bound);
}

TEST(TorchvisionResNet, WidthDivisorNarrowsEveryWidth) {
  torch::NoGradGuard no_grad;
  auto narrow18 = make_model("resnet18", {10, /*width_divisor=*/8, /*in_channels=*/3});
  auto narrow50 = make_model("resnet50", {10, /*width_divisor=*/8, /*in_channels=*/3});
  const auto p18 = narrow18->named_parameters();
  const auto p50 = narrow50->named_parameters();
  EXPECT_EQ(p18["conv1.weight"].sizes().vec(), (std::vector<int64_t>{8, 3, 7, 7}));
  EXPECT_EQ(p18["layer4.1.conv2.weight"].sizes().vec(), (std::vector<int64_t>{64, 64, 3, 3}));
  EXPECT_EQ(p18["fc.weight"].sizes().vec(), (std::vector<int64_t>{10, 64}));
  EXPECT_EQ(p50["layer2.0.downsample.0.weight"].sizes().vec(),
            (std::vector<int64_t>{64, 32, 1, 1}));
  EXPECT_EQ(p50["fc.weight"].sizes().vec(), (std::vector<int64_t>{10, 256}));
  for (auto net : {narrow18, narrow50}) {
    net->eval();
    EXPECT_EQ(net->forward(torch::rand({2, 3, 32, 32})).sizes().vec(),
              (std::vector<int64_t>{2, 10}));
  }
  for (const int64_t d : {3, 128}) {
    try {
      make_model("resnet34", {10, d});
      ADD_FAILURE() << "width_divisor " << d << " accepted";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("model 'resnet34': width_divisor"), std::string::npos)
          << e.what();
    }
  }
}

}  // namespace
