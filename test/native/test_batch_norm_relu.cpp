// The fused relu(batch_norm(x) [+ residual]) passes against the same composed of float64 ops on
// fresh random inputs: outputs, every gradient, running statistics, evaluation; the same results
// whatever the thread count; and BatchNorm2d::forward_relu choosing them only where they apply.
#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "models/batch_norm.h"
#include "models/batch_norm_relu.h"
#include "test/native/helpers.h"

namespace tfm = torchfocal::models;

namespace {

constexpr double kMomentum = 0.1, kEps = 1e-5;

struct Case {
  int64_t n, c, h, w;
  bool residual;
};

struct Inputs {
  torch::Tensor x, r, weight, bias, running_mean, running_var, g;
};

// Float32 channels-last inputs, off-centre (mean 3, spread 2) as activations are.
Inputs make_inputs(const Case& k) {
  const auto cl = torch::MemoryFormat::ChannelsLast;
  Inputs in;
  in.x = (torch::randn({k.n, k.c, k.h, k.w}) * 2 + 3).contiguous(cl);
  if (k.residual) in.r = torch::randn({k.n, k.c, k.h, k.w}).contiguous(cl);
  in.weight = torch::rand({k.c}) + 0.5;
  in.bias = torch::randn({k.c}) * 0.5;
  in.running_mean = torch::randn({k.c});
  in.running_var = torch::rand({k.c}) + 0.5;
  in.g = torch::randn({k.n, k.c, k.h, k.w});
  return in;
}

struct Result {
  torch::Tensor out, dx, dr, dweight, dbias, running_mean, running_var, pre_relu;
};

// Fused: float32, from the module-free entry point.
Result fused(const Inputs& in) {
  Result res;
  auto x = in.x.clone().requires_grad_(true);
  auto r = in.r.defined() ? in.r.clone().requires_grad_(true) : torch::Tensor();
  auto weight = in.weight.clone().requires_grad_(true);
  auto bias = in.bias.clone().requires_grad_(true);
  res.running_mean = in.running_mean.clone();
  res.running_var = in.running_var.clone();
  res.out = tfm::batch_norm_relu_train(x, r, weight, bias, res.running_mean, res.running_var,
                                       kMomentum, kEps);
  res.out.backward(in.g);
  res.out = res.out.detach();
  res.dx = x.grad();
  if (r.defined()) res.dr = r.grad();
  res.dweight = weight.grad();
  res.dbias = bias.grad();
  return res;
}

// Reference: float64, composed of elementary ops (no batch_norm kernel).
Result reference(const Inputs& in) {
  Result res;
  const auto d = [](const torch::Tensor& t) { return t.to(torch::kFloat64); };
  auto x = d(in.x).requires_grad_(true);
  auto r = in.r.defined() ? d(in.r).requires_grad_(true) : torch::Tensor();
  auto weight = d(in.weight).requires_grad_(true);
  auto bias = d(in.bias).requires_grad_(true);
  const int64_t count = x.numel() / x.size(1);
  const auto mean = x.mean({0, 2, 3}, /*keepdim=*/true);
  const auto var = (x - mean).pow(2).mean({0, 2, 3}, /*keepdim=*/true);
  auto z = (x - mean) / (var + kEps).sqrt() * weight.view({1, -1, 1, 1}) + bias.view({1, -1, 1, 1});
  if (r.defined()) z = z + r;
  res.pre_relu = z.detach();
  res.out = torch::relu(z);
  res.out.backward(d(in.g));
  res.out = res.out.detach();
  res.dx = x.grad();
  if (r.defined()) res.dr = r.grad();
  res.dweight = weight.grad();
  res.dbias = bias.grad();
  const auto batch_mean = mean.detach().flatten();
  const auto unbiased = var.detach().flatten() * count / (count - 1);
  res.running_mean = d(in.running_mean) * (1 - kMomentum) + batch_mean * kMomentum;
  res.running_var = d(in.running_var) * (1 - kMomentum) + unbiased * kMomentum;
  return res;
}

// Float32 against float64: relative 1e-4 of the values' own scale.
void expect_near(const torch::Tensor& ours, const torch::Tensor& ref, const char* what,
                 const torch::Tensor& where = torch::Tensor()) {
  auto diff = (ours.to(torch::kFloat64) - ref).abs();
  if (where.defined()) diff = diff * where;
  const double scale = ref.abs().max().item<double>() + 1e-12;
  EXPECT_LT(diff.max().item<double>(), 1e-4 * scale) << what;
}

}  // namespace

TEST(BatchNormRelu, TrainingMatchesComposedFloat64) {
  // C = 16, 32, 64 and their multiples 48, 96, 128: vectors in groups of 16, 32, 64 channels;
  // 3 and 5: the scalar loops. Sizes span several blocks of rows and end in a partial one.
  const Case cases[] = {{8, 16, 12, 11, true}, {4, 32, 9, 9, false},  {8, 64, 9, 8, true},
                        {3, 48, 10, 7, true},  {2, 96, 9, 10, false}, {2, 128, 9, 9, true},
                        {5, 3, 7, 9, false},   {6, 5, 8, 8, true}};
  torch::manual_seed(7);
  for (const auto& k : cases) {
    SCOPED_TRACE(testing::Message() << "C = " << k.c << (k.residual ? " with residual" : ""));
    const auto in = make_inputs(k);
    ASSERT_TRUE(tfm::batch_norm_relu_applies(in.x, in.r));
    const auto ours = fused(in);
    const auto ref = reference(in);
    expect_near(ours.out, ref.out, "output");
    expect_near(ours.running_mean, ref.running_mean, "running mean");
    expect_near(ours.running_var, ref.running_var, "running variance");
    expect_near(ours.dweight, ref.dweight, "weight gradient");
    expect_near(ours.dbias, ref.dbias, "bias gradient");
    // Element gradients where float32 and float64 agree on ReLU's side.
    const auto clear = (ref.pre_relu.abs() > 1e-4).to(torch::kFloat64);
    expect_near(ours.dx, ref.dx, "input gradient", clear);
    if (k.residual) expect_near(ours.dr, ref.dr, "residual gradient", clear);
    EXPECT_TRUE(ours.out.is_contiguous(torch::MemoryFormat::ChannelsLast));
  }
}

// Blocks of rows are fixed by C alone and their sums added in order: one thread or two give the
// same bits.
TEST(BatchNormRelu, ThreadCountDoesNotChangeResults) {
  torch::manual_seed(11);
  const auto in = make_inputs({16, 16, 16, 16, true});
  const auto one = torchfocal::testing::with_threads(1, [&] { return fused(in); });
  const auto two = torchfocal::testing::with_threads(2, [&] { return fused(in); });
  EXPECT_TRUE(torch::equal(one.out, two.out));
  EXPECT_TRUE(torch::equal(one.dx, two.dx));
  EXPECT_TRUE(torch::equal(one.dweight, two.dweight));
  EXPECT_TRUE(torch::equal(one.running_var, two.running_var));
}

// forward_relu: fused for channels-last float32, LibTorch's kernels for other layouts and types;
// both compute relu(bn(x) + r), in training (with the module's statistics) and in evaluation.
TEST(BatchNormRelu, ForwardReluEqualsUnfusedModule) {
  torch::manual_seed(3);
  const auto in = make_inputs({6, 16, 10, 10, true});
  const auto contiguous = in.x.contiguous();
  EXPECT_FALSE(tfm::batch_norm_relu_applies(contiguous, in.r));
  EXPECT_FALSE(tfm::batch_norm_relu_applies(in.x.to(torch::kFloat64), torch::Tensor()));
  EXPECT_FALSE(tfm::batch_norm_relu_applies(in.x, in.r.slice(0, 0, 3)));

  tfm::BatchNorm2d fused_bn(16), plain_bn(16);
  for (auto* bn : {&fused_bn, &plain_bn}) {
    torch::NoGradGuard no_grad;
    (*bn)->weight.copy_(in.weight);
    (*bn)->bias.copy_(in.bias);
  }
  auto x1 = in.x.clone().requires_grad_(true);
  auto x2 = contiguous.clone().requires_grad_(true);
  const auto y1 = fused_bn->forward_relu(x1, in.r);
  const auto y2 = plain_bn->forward_relu(x2, in.r);
  (y1 * in.g).sum().backward();
  (y2 * in.g).sum().backward();
  EXPECT_TRUE(torch::allclose(y1, y2, 1e-4, 1e-5));
  EXPECT_TRUE(torch::allclose(fused_bn->weight.grad(), plain_bn->weight.grad(), 1e-3, 1e-3));
  EXPECT_TRUE(torch::allclose(fused_bn->running_var, plain_bn->running_var, 1e-5, 1e-6));
  EXPECT_EQ(fused_bn->num_batches_tracked.item<int64_t>(), 1);

  fused_bn->eval();
  plain_bn->eval();
  torch::NoGradGuard no_grad;
  const auto e1 = fused_bn->forward_relu(in.x, in.r);
  const auto e2 = torch::relu(plain_bn->forward(contiguous) + in.r);
  EXPECT_TRUE(torch::allclose(e1, e2, 1e-5, 1e-5));
}
