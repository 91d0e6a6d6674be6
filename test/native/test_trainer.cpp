#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "src/io/atomic_file.h"
#include "src/train/trainer.h"

namespace tf = torchfocal;

namespace {

// Two easy classes: a bright left half or a bright right half, with noise.
std::pair<torch::Tensor, torch::Tensor> halves(int64_t n, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  auto labels = torch::randint(0, 2, {n}, gen, torch::kInt64);
  auto images = torch::randint(0, 60, {n, 28, 28}, gen, torch::kInt64);
  auto left = labels.eq(0).view({n, 1, 1});
  images.slice(2, 0, 14).add_(left.to(torch::kInt64) * 180);
  images.slice(2, 14, 28).add_(left.logical_not().to(torch::kInt64) * 180);
  return {images.to(torch::kUInt8), labels};
}

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

TEST(Trainer, CancelStopsBetweenSteps) {
  tf::train::Trainer t(mlp_config());
  auto [x, y] = halves(256, 5);
  t.set_train_data(x, y);
  std::atomic<bool> cancel{true};
  EXPECT_THROW(t.train_epoch({}, &cancel), tf::train::Cancelled);
}

TEST(Trainer, OptimizerStateSavesAtomically) {
  tf::train::Trainer t(mlp_config());
  auto [x, y] = halves(64, 6);
  t.set_train_data(x, y);
  t.train_epoch();
  auto dir = std::filesystem::temp_directory_path() / "torchfocal-native-opt";
  std::filesystem::create_directories(dir);
  auto path = (dir / "optimizer.pt").string();
  t.save_optimizer(path);
  EXPECT_TRUE(std::filesystem::exists(path));
  tf::train::Trainer u(mlp_config());
  u.load_optimizer(path);
  std::filesystem::remove_all(dir);
}

TEST(AtomicFile, FailedWriteLeavesTheOldFile) {
  auto path = (std::filesystem::temp_directory_path() / "torchfocal-atomic.txt").string();
  tf::io::write_atomically(path, [](const std::string& tmp) { std::ofstream(tmp) << "old"; });
  EXPECT_THROW(tf::io::write_atomically(path,
                                        [](const std::string& tmp) {
                                          std::ofstream(tmp) << "half";
                                          throw std::runtime_error("disk full");
                                        }),
               std::runtime_error);
  std::ifstream in(path);
  std::string content;
  in >> content;
  EXPECT_EQ(content, "old");
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp-" + std::to_string(::getpid())));
  std::filesystem::remove(path);
}
