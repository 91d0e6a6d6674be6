#include <gtest/gtest.h>
#include <sys/resource.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <fstream>

#include "src/train/trainer.h"
#include "test/native/helpers.h"

namespace tf = torchfocal;

namespace {

using torchfocal::testing::halves;

tf::train::TrainConfig mlp_config() {
  tf::train::TrainConfig c;
  c.model = "mlp";
  c.num_classes = 2;
  c.batch_size = 32;
  c.optimizer = "sgd";
  c.lr = 0.1;
  c.seed = 7;
  c.threads = 1;
  c.device = "cpu";
  return c;
}

// LeNet or the d2l ResNet (batch norm) at an eighth of its width, on two threads.
tf::train::TrainConfig two_thread_config(const std::string& model, int64_t eval_batch_size) {
  auto c = mlp_config();
  c.model = model;
  c.width_divisor = 8;
  c.threads = 2;
  c.eval_batch_size = eval_batch_size;
  return c;
}

}  // namespace

TEST(Trainer, LearnsAnEasyTaskAndReportsMetrics) {
  tf::train::Trainer trainer(mlp_config());
  auto [x, y] = halves(512, 1);
  auto [tx, ty] = halves(256, 2);
  trainer.set_train_data(x, y);
  trainer.set_test_data(tx, ty);
  int reports = 0;
  auto r = trainer.train_epoch([&](const tf::train::Progress& p) {
    ++reports;
    EXPECT_EQ(p.steps, 16);
    EXPECT_TRUE(std::isfinite(p.loss));
  });
  EXPECT_GT(reports, 0);
  EXPECT_EQ(r.steps, 16);
  EXPECT_TRUE(r.has_test);
  EXPECT_GT(r.test.accuracy, 0.95);
  EXPECT_EQ(r.test.total, 256);
  EXPECT_EQ(trainer.epochs_done(), 1);
  auto probs = trainer.predict(tx.slice(0, 0, 5));
  EXPECT_EQ(probs.sizes(), (std::vector<int64_t>{5, 2}));
  EXPECT_TRUE(torch::allclose(probs.sum(1), torch::ones({5})));
}

TEST(Trainer, SameSeedSameLosses) {
  auto [x, y] = halves(256, 3);
  auto run = [&] {
    tf::train::Trainer t(mlp_config());
    t.set_train_data(x, y);
    return t.train_epoch().loss;
  };
  EXPECT_DOUBLE_EQ(run(), run());
}

TEST(Trainer, StateDictRoundTripAndMismatchErrors) {
  tf::train::Trainer a(mlp_config()), b([] {
    auto c = mlp_config();
    c.seed = 99;
    return c;
  }());
  auto state = a.state_dict();
  ASSERT_EQ(state.size(), 4u);
  EXPECT_EQ(state[0].first, "1.weight");
  b.load_state_dict(state);
  auto again = b.state_dict();
  for (size_t i = 0; i < state.size(); ++i)
    EXPECT_TRUE(torch::equal(state[i].second, again[i].second));

  auto wrong_shape = state;
  wrong_shape[0].second = torch::zeros({3, 3});
  EXPECT_THROW(b.load_state_dict(wrong_shape), std::invalid_argument);
  auto missing = state;
  missing.pop_back();
  EXPECT_THROW(b.load_state_dict(missing), std::invalid_argument);
  auto unexpected = state;
  unexpected.emplace_back("9.weight", torch::zeros({1}));
  try {
    b.load_state_dict(unexpected);
    FAIL() << "expected an error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("9.weight"), std::string::npos);
  }
  // the failed loads changed nothing
  auto after = b.state_dict();
  for (size_t i = 0; i < state.size(); ++i)
    EXPECT_TRUE(torch::equal(state[i].second, after[i].second));
}

TEST(Trainer, RejectsBadConfigAndData) {
  auto c = mlp_config();
  c.optimizer = "rmsprop";
  EXPECT_THROW(tf::train::Trainer{c}, std::invalid_argument);
  c = mlp_config();
  c.model = "nosuchnet";
  EXPECT_THROW(tf::train::Trainer{c}, std::invalid_argument);
  c = mlp_config();
  c.loss.alpha = {1, 2, 3};
  EXPECT_THROW(tf::train::Trainer{c}, std::invalid_argument);
  tf::train::Trainer t(mlp_config());
  EXPECT_THROW(t.train_epoch(), std::logic_error);
  auto [x, y] = halves(16, 4);
  EXPECT_THROW(t.set_train_data(x, y + 5), std::invalid_argument);  // labels out of range
  EXPECT_THROW(t.set_train_data(x, y.slice(0, 0, 8)), std::invalid_argument);
  EXPECT_THROW(t.predict(torch::zeros({2, 28}, torch::kUInt8)), std::invalid_argument);
}

// logits() is the network on inputs as given: the predictions before their softmax, for inputs
// the prediction's preparation made (pixels / 255, here at the network's side already).
TEST(Trainer, LogitsAreThePredictionsBeforeTheSoftmax) {
  auto c = mlp_config();
  c.eval_batch_size = 3;  // batches of 3 over 7 images: the last one partial
  tf::train::Trainer t(c);
  auto [images, labels] = halves(7, 5);
  const auto logits = t.logits(images.unsqueeze(1).to(torch::kFloat32) / 255);
  ASSERT_EQ(logits.sizes(), (std::vector<int64_t>{7, 2}));
  EXPECT_TRUE(torch::allclose(torch::softmax(logits, 1), t.predict(images), 0, 1e-6));
  EXPECT_GT((logits.select(1, 0) - logits.select(1, 1)).abs().max().item<float>(), 1e-3);
  EXPECT_TRUE(t.model()->is_training());
  EXPECT_THROW(t.logits(torch::zeros({2, 1, 27, 28})), std::invalid_argument);  // not the side
  EXPECT_THROW(t.logits(torch::zeros({2, 1, 28, 28}, torch::kFloat64)), std::invalid_argument);
  EXPECT_THROW(t.logits(torch::zeros({0, 1, 28, 28})), std::invalid_argument);
}

// Two threads evaluate a batch as two slices, each on single-threaded kernels: the same outputs
// as batches too small to slice (under 16 images) on both threads, for a network with batch
// norm in eval mode too.
TEST(Trainer, ThreadSlicedInferenceEqualsWholeBatches) {
  for (const std::string model : {"lenet", "resnet"}) {
    SCOPED_TRACE(model);
    // slices of 18 and 19; the last batch (101 = 2 × 37 + 27) too
    tf::train::Trainer t(two_thread_config(model, 37));
    auto [x, y] = halves(64, 3);
    t.set_train_data(x, y);
    t.train_epoch();  // batch norm's running statistics leave their initial values
    auto [images, labels] = halves(101, 4);
    const auto sliced = t.predict(images);
    std::vector<torch::Tensor> small;
    for (int64_t i = 0; i < 101; i += 10) small.push_back(t.predict(images.slice(0, i, i + 10)));
    const auto whole = torch::cat(small);
    EXPECT_TRUE(torch::allclose(sliced, whole, 1e-5, 1e-6))
        << (sliced - whole).abs().max().item<float>();
    t.set_test_data(images, labels);
    const auto expected = tf::metrics::confusion_matrix(labels, whole.argmax(1), 2).contiguous();
    const auto m = t.evaluate_test();
    for (int64_t i = 0; i < 2; ++i) {
      for (int64_t j = 0; j < 2; ++j) EXPECT_EQ(m.confusion[i][j], expected[i][j].item<int64_t>());
    }
  }
}

// Two threads each evaluating a contiguous share of whole batches give one thread's figures: the
// same confusion matrix and top-k counts, the validation loss up to its float64 sum's order, and
// the same predictions. 101 images in batches of 10 (the last of one image): 11 batches, 6 and 5
// per thread.
TEST(Trainer, ThreadSharedEvaluationEqualsOneThread) {
  for (const std::string model : {"lenet", "resnet"}) {
    SCOPED_TRACE(model);
    auto c = two_thread_config(model, 10);
    tf::train::Trainer two(c);
    c.threads = 1;
    tf::train::Trainer one(c);
    auto [x, y] = halves(64, 3);
    auto [images, labels] = halves(101, 4);
    for (auto* t : {&two, &one}) {
      t->set_train_data(x, y);
      t->set_val_data(images, labels);
      t->set_test_data(images, labels);
    }
    two.train_epoch();  // batch norm's running statistics leave their initial values
    one.load_state_dict(two.state_dict());
    const auto [m2, loss2] = two.evaluate_val();
    const auto [m1, loss1] = one.evaluate_val();
    EXPECT_EQ(m2.confusion, m1.confusion);
    EXPECT_EQ(m2.top_k_accuracy, m1.top_k_accuracy);
    EXPECT_NEAR(loss2, loss1, 1e-6 * std::abs(loss1));
    EXPECT_EQ(two.evaluate_test().confusion, m1.confusion);
    // against the predictions themselves: the counts are the batches' own, each counted once
    const auto probabilities = one.predict(images);
    EXPECT_TRUE(torch::allclose(two.predict(images), probabilities, 1e-5, 1e-6));  // in shares
    const auto expected =
        tf::metrics::confusion_matrix(labels, probabilities.argmax(1), 2).contiguous();
    for (int64_t i = 0; i < 2; ++i) {
      for (int64_t j = 0; j < 2; ++j) EXPECT_EQ(m2.confusion[i][j], expected[i][j].item<int64_t>());
    }
    std::atomic<bool> cancel{true};
    EXPECT_THROW(two.evaluate_test(&cancel), tf::train::Cancelled);
  }
}

TEST(Trainer, CancelStopsBetweenSteps) {
  tf::train::Trainer t(mlp_config());
  auto [x, y] = halves(256, 5);
  t.set_train_data(x, y);
  std::atomic<bool> cancel{true};
  EXPECT_THROW(t.train_epoch({}, &cancel), tf::train::Cancelled);
}

// Cancelled during the epoch's evaluation (the flag set by the last step's progress): the epoch
// becomes one interrupted after its last step, and the next train_epoch only evaluates it, giving
// what an uninterrupted trainer gives.
TEST(Trainer, CancelInEvaluationKeepsTheTrainedEpoch) {
  auto config = mlp_config();
  config.progress_every = 1;
  config.eval_batch_size = 16;
  auto [x, y] = halves(256, 5);
  auto [tx, ty] = halves(64, 7);
  tf::train::Trainer reference(config), t(config);
  for (auto* tr : {&reference, &t}) {
    tr->set_train_data(x, y);
    tr->set_test_data(tx, ty);
  }
  const auto want = reference.train_epoch();
  std::atomic<bool> cancel{false};
  EXPECT_THROW(t.train_epoch(
                   [&](const tf::train::Progress& p) {
                     if (p.step == p.steps) cancel = true;
                   },
                   &cancel),
               tf::train::Cancelled);
  EXPECT_EQ(t.epochs_done(), 0);
  EXPECT_EQ(t.partial_epoch().epoch, 0);
  EXPECT_EQ(t.partial_epoch().step, want.steps);
  cancel = false;
  const auto got = t.train_epoch({}, &cancel);
  EXPECT_EQ(t.epochs_done(), 1);
  EXPECT_EQ(got.loss, want.loss);
  EXPECT_EQ(got.train_acc, want.train_acc);
  ASSERT_TRUE(got.has_test);
  EXPECT_EQ(got.test.confusion, want.test.confusion);
  // and a bare evaluation stops too
  cancel = true;
  EXPECT_THROW(t.evaluate_test(&cancel), tf::train::Cancelled);
}

namespace {

// Dropout draws on: the state a resume needs is the optimizer's and the dropout stream's.
// VGG at a 64th of its widths is the cheapest network of the zoo with dropout; one 8-image step
// per epoch.
tf::train::TrainConfig dropout_config() {
  auto c = mlp_config();
  c.model = "vgg";
  c.width_divisor = 64;
  c.optimizer = "adam";
  c.lr = 0.001;
  c.batch_size = 8;
  return c;
}

tf::train::TrainConfig lenet_adam_config() {
  auto c = dropout_config();
  c.model = "lenet";
  return c;
}

std::vector<double> losses(tf::train::Trainer& t, int epochs) {
  std::vector<double> out;
  for (int i = 0; i < epochs; ++i) out.push_back(t.train_epoch({}, nullptr, false).loss);
  return out;
}

}  // namespace

// A trainer rebuilt from the weights and training state continues bitwise like the original;
// from the weights alone it does not (so the comparison can fail).
TEST(TrainState, RestoresOptimizerAndDropoutStream) {
  auto [x, y] = halves(8, 6);
  tf::train::Trainer original(dropout_config());
  original.set_train_data(x, y);
  losses(original, 1);
  const auto weights = original.state_dict();
  const auto state = original.train_state();
  const auto expected = losses(original, 2);

  const auto resume = [&](bool with_state) {
    tf::train::Trainer t(dropout_config());
    t.set_train_data(x, y);
    t.load_state_dict(weights);
    if (with_state) t.load_train_state(state);
    t.set_epochs_done(1);
    return losses(t, 2);
  };
  EXPECT_EQ(resume(true), expected);
  EXPECT_NE(resume(false), expected);
}

// Two trainers interleaved in one process draw from their own streams.
TEST(TrainState, TrainersDoNotShareTheDropoutStream) {
  auto [x, y] = halves(8, 6);
  tf::train::Trainer alone(dropout_config());
  alone.set_train_data(x, y);
  const auto expected = losses(alone, 2);

  tf::train::Trainer a(dropout_config()), b(dropout_config());
  a.set_train_data(x, y);
  b.set_train_data(x, y);
  std::vector<double> got;
  for (int i = 0; i < 2; ++i) {
    got.push_back(a.train_epoch({}, nullptr, false).loss);
    torch::rand({1000});  // someone else drawing from the global generator
    b.train_epoch({}, nullptr, false);
  }
  EXPECT_EQ(got, expected);
}

// A bad entry is refused by name, and a refused load changes nothing.
TEST(TrainState, RefusesMismatchesAndLeavesTheStateAlone) {
  auto [x, y] = halves(48, 6);
  tf::train::Trainer source(lenet_adam_config());
  source.set_train_data(x, y);
  losses(source, 1);
  const auto good = source.train_state();

  const auto refused = [&](tf::train::NamedTensors bad, const std::string& message) {
    tf::train::Trainer t(lenet_adam_config());
    t.set_train_data(x, y);
    losses(t, 1);
    const auto before = t.train_state();
    try {
      t.load_train_state(bad);
      ADD_FAILURE() << "accepted: " << message;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(message), std::string::npos) << e.what();
    }
    const auto after = t.train_state();
    ASSERT_EQ(after.size(), before.size());
    for (size_t i = 0; i < after.size(); ++i) {
      EXPECT_EQ(after[i].first, before[i].first);
      EXPECT_TRUE(after[i].second.equal(before[i].second)) << after[i].first;
    }
  };
  const auto with = [&](const std::string& name, torch::Tensor t) {
    auto s = good;
    for (auto& [n, v] : s) {
      if (n == name) v = t;
    }
    return s;
  };
  const std::string first = "adam.exp_avg/" + source.state_dict().front().first;
  const auto exp_avg = [&] {
    for (const auto& [n, v] : good) {
      if (n == first) return v;
    }
    return torch::Tensor();
  }();
  refused(with(first, exp_avg.flatten()), "has shape");
  refused(with(first, exp_avg.to(torch::kFloat64)), "has dtype");
  auto unexpected = good;
  unexpected.emplace_back("adam.exp_avg/no.such.param", exp_avg);
  refused(unexpected, "unexpected tensor 'adam.exp_avg/no.such.param'");
  auto stranger = good;
  stranger.emplace_back("sgd.momentum_buffer/" + source.state_dict().front().first, exp_avg);
  refused(stranger, "unexpected tensor 'sgd.momentum_buffer/");
  auto incomplete = good;
  incomplete.erase(std::remove_if(incomplete.begin(), incomplete.end(),
                                  [&](const auto& e) { return e.first == first; }),
                   incomplete.end());
  refused(incomplete, "is incomplete");
  const std::string step = "adam.step/" + source.state_dict().front().first;
  refused(with(step, torch::tensor(int64_t{0}).reshape({})), "expected >= 1");
  refused(with("rng.cpu", torch::zeros({7}, torch::kUInt8)), "rng.cpu must be");
  const auto rng_bytes = [&] {
    for (const auto& [n, v] : good) {
      if (n == "rng.cpu") return v.numel();
    }
    return int64_t{0};
  }();
  refused(with("rng.cpu", torch::zeros({rng_bytes}, torch::kUInt8)), "not a valid generator state");
  auto other = good;
  other.emplace_back("junk", exp_avg);
  refused(other, "unexpected tensor 'junk'");
}

namespace {

// Caps this process's address space at its current size plus `headroom` for its lifetime, so a
// large allocation fails the way it does on a full GPU or host.
class AddressSpaceCap {
 public:
  explicit AddressSpaceCap(size_t headroom) {
    getrlimit(RLIMIT_AS, &saved_);
    std::ifstream status("/proc/self/status");
    std::string key;
    size_t kib = 0;
    while (status >> key) {
      if (key == "VmSize:") {
        status >> kib;
        break;
      }
    }
    rlimit cap = saved_;
    cap.rlim_cur = kib * 1024 + headroom;
    setrlimit(RLIMIT_AS, &cap);
  }
  ~AddressSpaceCap() { setrlimit(RLIMIT_AS, &saved_); }

 private:
  rlimit saved_{};
};

}  // namespace

// Out of memory mid-epoch: a clean error, the epoch kept as interrupted, and training goes on
// with a smaller batch.
TEST(Trainer, OutOfMemoryLeavesTheTrainerUsable) {
  auto config = mlp_config();
  config.model = "lenet";
  tf::train::Trainer t(config);
  auto [x, y] = halves(4096, 3);
  t.set_train_data(x, y);
  t.train_epoch({}, nullptr, false);  // warm: threads and allocator pools exist
  // LeNet's activations for 4096 images: over 250 MB, the first layer's output and its sigmoid
  // alone 154 MB
  t.set_batch_sizes(4096, 1000);
  {
    AddressSpaceCap cap(128u << 20);
    try {
      t.train_epoch({}, nullptr, false);
      ADD_FAILURE() << "a 4096-image LeNet step fitted in 128 MB";
    } catch (const tf::train::OutOfMemory& e) {
      EXPECT_NE(
          std::string(e.what()).find("out of memory at batch size 4096 (epoch 1, step 1 of 1)"),
          std::string::npos)
          << e.what();
    }
  }
  EXPECT_EQ(t.partial_epoch().epoch, 1);
  EXPECT_EQ(t.partial_epoch().step, 0);
  EXPECT_EQ(t.epochs_done(), 1);
  t.set_batch_sizes(64, 1000);
  const auto r = t.train_epoch({}, nullptr, false);
  EXPECT_EQ(r.steps, 64);
  EXPECT_TRUE(std::isfinite(r.loss));
  EXPECT_EQ(t.epochs_done(), 2);
}

TEST(Trainer, BatchSizeChangeKeepsTheInterruptedEpochsSample) {
  auto config = mlp_config();
  config.progress_every = 1;
  tf::train::Trainer t(config);
  auto [x, y] = halves(256, 5);
  t.set_train_data(x, y);
  std::atomic<int> steps{0};
  std::atomic<bool> cancel{false};
  EXPECT_THROW(t.train_epoch(
                   [&](const tf::train::Progress&) {
                     if (++steps == 1) cancel = true;
                   },
                   &cancel, false),
               tf::train::Cancelled);
  ASSERT_GT(t.partial_epoch().step, 0);
  const int64_t samples = t.partial_epoch().step * 32;
  EXPECT_THROW(t.set_batch_sizes(samples + 1, 100), std::invalid_argument);
  t.set_batch_sizes(16, 100);
  EXPECT_EQ(t.partial_epoch().step, samples / 16);
  EXPECT_EQ(t.train_epoch({}, nullptr, false).steps, 16);
}

// Issue 16: a checkpoint whose weights are NaN or infinite is refused at load, naming the tensor,
// and the model is left as it was.
TEST(Trainer, RefusesNonFiniteWeights) {
  tf::train::Trainer a(mlp_config()), b(mlp_config());
  const auto state = a.state_dict();
  for (const double bad : {std::nan(""), HUGE_VAL, -HUGE_VAL}) {
    auto poisoned = state;
    poisoned[2].second = poisoned[2].second.clone();
    poisoned[2].second.view(-1)[0] = bad;
    try {
      b.load_state_dict(poisoned);
      FAIL() << "expected an error";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("'" + state[2].first + "'"), std::string::npos)
          << e.what();
      EXPECT_NE(std::string(e.what()).find("non-finite"), std::string::npos) << e.what();
    }
    try {
      b.load_weights(poisoned, false);
      FAIL() << "expected an error";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("'" + state[2].first + "'"), std::string::npos)
          << e.what();
    }
  }
  auto after = b.state_dict();
  for (size_t i = 0; i < state.size(); ++i)
    EXPECT_TRUE(torch::equal(state[i].second, after[i].second));
}

TEST(Trainer, RgbDataWithDatasetNormalisation) {
  auto c = mlp_config();
  c.in_channels = 3;
  c.normalize = "dataset";
  tf::train::Trainer t(c);
  auto [grey, y] = halves(32, 5);
  // an RGB image set: the grey halves with a tint per channel
  auto rgb = torch::stack({grey, grey.div(2, "floor"), grey.div(4, "floor")}, 1).contiguous();
  EXPECT_THROW(t.predict(rgb.slice(0, 0, 2)), std::logic_error);  // no statistics yet
  try {
    t.set_train_data(grey, y);
    ADD_FAILURE() << "one-channel data accepted by a three-channel model";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("training images have 1 channel(s); the model takes 3"),
              std::string::npos)
        << e.what();
  }
  t.set_train_data(rgb, y);
  const auto [mean, std] = tf::data::channel_statistics(rgb);
  EXPECT_EQ(t.transform().mean, mean);
  EXPECT_EQ(t.transform().std, std);
  EXPECT_GT(mean[0], mean[2] * 2);  // the channels were told apart
  t.train_epoch();
  EXPECT_EQ(t.predict(rgb.slice(0, 0, 2)).sizes().vec(), (std::vector<int64_t>{2, 2}));
  EXPECT_THROW(t.predict(grey.slice(0, 0, 2)), std::invalid_argument);
}

TEST(Trainer, FixedNormalisationIsChecked) {
  auto c = mlp_config();
  c.normalize = "fixed";
  c.normalize_mean = {0.5, 0.5, 0.5};
  c.normalize_std = {0.2, 0.2, 0.2};
  EXPECT_THROW(tf::train::Trainer{c}, std::invalid_argument);  // 3 figures for 1 channel
  c.normalize = "none";
  EXPECT_THROW(tf::train::Trainer{c}, std::invalid_argument);  // figures without "fixed"
  c = mlp_config();
  c.in_channels = 2;
  EXPECT_THROW(tf::train::Trainer{c}, std::invalid_argument);
  c = mlp_config();
  c.normalize = "fixed";
  c.normalize_mean = {0.1};
  c.normalize_std = {0.3};
  c.input_size = 20;
  tf::train::Trainer t(c);
  EXPECT_EQ(t.input_size(), 20);
  EXPECT_EQ(t.transform().mean, std::vector<double>{0.1});
}

TEST(Trainer, FreezeBackboneTrainsOnlyTheHead) {
  for (const char* device_step : {"off", "on"}) {
    auto c = mlp_config();
    c.model = "resnet32";
    c.width_divisor = 8;
    c.input_size = 16;
    c.optimizer = "adam";
    c.lr = 0.01;
    c.freeze_backbone = true;
    c.device_step = device_step;
    tf::train::Trainer t(c);
    auto [x, y] = halves(64, 9);
    t.set_train_data(x, y);
    const auto before = t.state_dict();
    const auto result = t.train_epoch();
    EXPECT_TRUE(std::isfinite(result.loss));
    const auto after = t.state_dict();
    ASSERT_EQ(before.size(), after.size());
    int64_t changed = 0;
    for (size_t i = 0; i < before.size(); ++i) {
      const bool head = before[i].first.rfind("linear.", 0) == 0;
      const bool same = torch::equal(before[i].second, after[i].second);
      // the head learns; every backbone weight and batch-norm statistic stays as it was
      EXPECT_EQ(same, !head) << device_step << ": " << before[i].first;
      changed += !same;
    }
    EXPECT_EQ(changed, 2) << device_step;  // linear.weight and linear.bias
  }
}
