#include "models/lenet.h"

#include "models/layers.h"
#include "models/sigmoid_avg_pool.h"
#include "models/single_channel_conv.h"

namespace torchfocal::models {

torch::nn::Sequential make_lenet(const ModelOptions& options) {
  namespace nn = torch::nn;
  // 16 channels of 5x5 remain after the second pooling of a 28x28 input
  const int64_t conv1 = output_side(options.input_size, /*kernel_size=*/5, 1, /*padding=*/2);
  const int64_t conv2 = output_side(output_side(conv1, 2, 2), /*kernel_size=*/5);
  const int64_t side = output_side(conv2, 2, 2);
  const int64_t flat_features = 16 * side * side;
  // Each Sigmoid + AvgPool2d(2) pair runs as one layer with a fused backward
  // (models/sigmoid_avg_pool.h); an Identity keeps the pooling's place, so the parameter
  // indices, and with them the state_dict names, stay PyTorch's (d2l's nn.Sequential).
  return nn::Sequential(
      // padding 2 keeps 28x28, as the original LeNet saw 32x32 inputs; a Conv2d that runs
      // grey images on direct kernels (models/single_channel_conv.h)
      SingleChannelConv2d(nn::Conv2dOptions(/*in_channels=*/options.in_channels,
                                            /*out_channels=*/6, /*kernel_size=*/5)
                              .padding(2)),
      SigmoidAvgPool2x2(), nn::Identity(),
      nn::Conv2d(nn::Conv2dOptions(/*in_channels=*/6, /*out_channels=*/16, /*kernel_size=*/5)),
      SigmoidAvgPool2x2(), nn::Identity(), nn::Flatten(), nn::Linear(flat_features, 120),
      nn::Sigmoid(), nn::Linear(120, 84), nn::Sigmoid(), nn::Linear(84, options.num_classes));
}

}  // namespace torchfocal::models
