#include "src/train/optimizer_state.h"

#include <sstream>
#include <stdexcept>
#include <type_traits>

namespace torchfocal::train {
namespace {

// LibTorch keys the optimizer's state by the parameter's TensorImpl: as a string of its address
// in 1.x (c10::guts::to_string), as the raw pointer in later releases. Follow the map's own key
// type so both compile.
template <typename Map>
typename Map::key_type state_key(const torch::Tensor& p) {
  if constexpr (std::is_same_v<typename Map::key_type, std::string>) {
    std::ostringstream out;  // what c10::guts::to_string(TensorImpl*) writes
    out << static_cast<void*>(p.unsafeGetTensorImpl());
    return out.str();
  } else {
    return p.unsafeGetTensorImpl();
  }
}

template <typename Optimizer>
auto* find_state(Optimizer& optimizer, const torch::Tensor& p) {
  auto& map = optimizer.state();
  auto it = map.find(state_key<std::decay_t<decltype(map)>>(p));
  return it == map.end() ? nullptr : it->second.get();
}

enum class Kind { kAdam, kAdamW, kSgd };

Kind kind_of(const torch::optim::Optimizer& optimizer) {
  if (dynamic_cast<const torch::optim::Adam*>(&optimizer)) return Kind::kAdam;
  if (dynamic_cast<const torch::optim::AdamW*>(&optimizer)) return Kind::kAdamW;
  if (dynamic_cast<const torch::optim::SGD*>(&optimizer)) return Kind::kSgd;
  throw std::invalid_argument("optimizer state: only Adam, AdamW and SGD are supported");
}

// The prefix of the optimizer's entries, and the entries one parameter's state has, by field.
std::string prefix(Kind kind) {
  return kind == Kind::kAdam ? "adam." : kind == Kind::kAdamW ? "adamw." : "sgd.";
}

std::vector<std::string> fields(Kind kind) {
  if (kind == Kind::kSgd) return {"sgd.momentum_buffer"};
  const auto p = prefix(kind);
  return {p + "exp_avg", p + "exp_avg_sq", p + "step"};
}

// Adam's and AdamW's states are two classes with the same fields.
template <typename State>
AdamMoments moments_of(const State& s) {
  return {s.step(), s.exp_avg(), s.exp_avg_sq()};
}

template <typename State>
std::unique_ptr<State> state_of(AdamMoments m) {
  auto s = std::make_unique<State>();
  s->step(m.step);
  s->exp_avg(std::move(m.exp_avg));
  s->exp_avg_sq(std::move(m.exp_avg_sq));
  return s;
}

torch::Tensor saved(const torch::Tensor& t) {
  return t.detach().to(torch::kCPU).clone(torch::MemoryFormat::Contiguous);
}

// A state tensor on the parameter's device and in its memory format, as the optimizer makes them.
torch::Tensor restored(const torch::Tensor& t, const torch::Tensor& param) {
  auto out = torch::empty_like(param, torch::MemoryFormat::Preserve);
  out.copy_(t);
  return out;
}

}  // namespace

bool is_optimizer_entry(const std::string& name) {
  return name.rfind("adam.", 0) == 0 || name.rfind("adamw.", 0) == 0 || name.rfind("sgd.", 0) == 0;
}

NamedTensors optimizer_state(const torch::optim::Optimizer& optimizer,
                             const torch::nn::Module& model) {
  const Kind kind = kind_of(optimizer);
  auto& opt = const_cast<torch::optim::Optimizer&>(optimizer);  // state() has no const overload
  NamedTensors out;
  for (const auto& item : model.named_parameters(/*recurse=*/true)) {
    const std::string& name = item.key();
    auto* base = find_state(opt, item.value());
    if (base == nullptr) continue;
    if (kind != Kind::kSgd) {
      const auto m = kind == Kind::kAdam
                         ? moments_of(static_cast<const torch::optim::AdamParamState&>(*base))
                         : moments_of(static_cast<const torch::optim::AdamWParamState&>(*base));
      const auto p = prefix(kind);
      out.emplace_back(p + "exp_avg/" + name, saved(m.exp_avg));
      out.emplace_back(p + "exp_avg_sq/" + name, saved(m.exp_avg_sq));
      out.emplace_back(p + "step/" + name, torch::tensor(m.step).reshape({}));
    } else {
      const auto& s = static_cast<const torch::optim::SGDParamState&>(*base);
      if (s.momentum_buffer().defined()) {
        out.emplace_back("sgd.momentum_buffer/" + name, saved(s.momentum_buffer()));
      }
    }
  }
  return out;
}

void load_optimizer_state(torch::optim::Optimizer& optimizer, const torch::nn::Module& model,
                          const NamedTensors& state) {
  const Kind kind = kind_of(optimizer);
  const auto params = model.named_parameters(/*recurse=*/true);
  TensorSpecs expected;
  for (const auto& item : params) {
    const auto sizes = item.value().sizes().vec();
    for (const auto& field : fields(kind)) {
      const bool is_step = field == prefix(kind) + "step";
      expected[field + "/" + item.key()] =
          TensorSpec{is_step ? std::vector<int64_t>{} : sizes,
                     is_step ? torch::kInt64 : item.value().scalar_type()};
    }
  }
  NamedTensors mine;
  for (const auto& entry : state) {
    if (is_optimizer_entry(entry.first)) mine.push_back(entry);
  }
  const std::string where = "optimizer state does not match the model";
  const auto matched = match_tensors(expected, mine, where);
  // A parameter's fields come all together (it was stepped) or not at all.
  for (const auto& item : params) {
    int64_t present = 0;
    for (const auto& field : fields(kind)) present += matched.count(field + "/" + item.key());
    if (present != 0 && present != static_cast<int64_t>(fields(kind).size())) {
      throw std::invalid_argument(where + ": the state of '" + item.key() + "' is incomplete");
    }
    if (kind != Kind::kSgd && present) {
      const std::string step_name = prefix(kind) + "step/" + item.key();
      const int64_t step = matched.at(step_name).item<int64_t>();
      if (step < 1) {
        throw std::invalid_argument(where + ": '" + step_name + "' is " + std::to_string(step) +
                                    ", expected >= 1");
      }
    }
  }
  // Everything checked: only now replace the state.
  torch::NoGradGuard no_grad;
  auto& map = optimizer.state();
  using Map = std::decay_t<decltype(map)>;
  map.clear();
  for (const auto& item : params) {
    const auto& p = item.value();
    const auto get = [&](const std::string& field) {
      auto it = matched.find(field + "/" + item.key());
      return it == matched.end() ? torch::Tensor() : it->second;
    };
    if (kind != Kind::kSgd) {
      const auto pre = prefix(kind);
      if (!get(pre + "step").defined()) continue;
      AdamMoments m{get(pre + "step").item<int64_t>(), restored(get(pre + "exp_avg"), p),
                    restored(get(pre + "exp_avg_sq"), p)};
      if (kind == Kind::kAdam) {
        map[state_key<Map>(p)] = state_of<torch::optim::AdamParamState>(std::move(m));
      } else {
        map[state_key<Map>(p)] = state_of<torch::optim::AdamWParamState>(std::move(m));
      }
    } else {
      if (!get("sgd.momentum_buffer").defined()) continue;
      auto s = std::make_unique<torch::optim::SGDParamState>();
      s->momentum_buffer(restored(get("sgd.momentum_buffer"), p));
      map[state_key<Map>(p)] = std::move(s);
    }
  }
}

const torch::optim::AdamParamState* adam_state(torch::optim::Optimizer& optimizer,
                                               const torch::Tensor& param) {
  return static_cast<const torch::optim::AdamParamState*>(find_state(optimizer, param));
}

void set_adam_state(torch::optim::Optimizer& optimizer, const torch::Tensor& param, int64_t step,
                    torch::Tensor exp_avg, torch::Tensor exp_avg_sq) {
  auto s = std::make_unique<torch::optim::AdamParamState>();
  s->step(step);
  s->exp_avg(std::move(exp_avg));
  s->exp_avg_sq(std::move(exp_avg_sq));
  auto& map = optimizer.state();
  map[state_key<std::decay_t<decltype(map)>>(param)] = std::move(s);
}

AdamMoments adam_moments(torch::optim::Optimizer& optimizer, const torch::Tensor& param) {
  const Kind kind = kind_of(optimizer);
  const auto* base = find_state(optimizer, param);
  if (base == nullptr || kind == Kind::kSgd) return {};
  return kind == Kind::kAdam ? moments_of(static_cast<const torch::optim::AdamParamState&>(*base))
                             : moments_of(static_cast<const torch::optim::AdamWParamState&>(*base));
}

void set_adam_moments(torch::optim::Optimizer& optimizer, const torch::Tensor& param,
                      AdamMoments moments) {
  const Kind kind = kind_of(optimizer);
  if (kind == Kind::kSgd) throw std::invalid_argument("optimizer state: SGD has no moments");
  auto& map = optimizer.state();
  auto& slot = map[state_key<std::decay_t<decltype(map)>>(param)];
  if (kind == Kind::kAdam) {
    slot = state_of<torch::optim::AdamParamState>(std::move(moments));
  } else {
    slot = state_of<torch::optim::AdamWParamState>(std::move(moments));
  }
}

torch::Tensor momentum_buffer(torch::optim::Optimizer& optimizer, const torch::Tensor& param) {
  if (kind_of(optimizer) != Kind::kSgd) return {};
  const auto* base = find_state(optimizer, param);
  if (base == nullptr) return {};
  return static_cast<const torch::optim::SGDParamState&>(*base).momentum_buffer();
}

void set_momentum_buffer(torch::optim::Optimizer& optimizer, const torch::Tensor& param,
                         torch::Tensor buffer) {
  if (kind_of(optimizer) != Kind::kSgd) {
    throw std::invalid_argument("optimizer state: only SGD has a momentum buffer");
  }
  auto s = std::make_unique<torch::optim::SGDParamState>();
  s->momentum_buffer(std::move(buffer));
  auto& map = optimizer.state();
  map[state_key<std::decay_t<decltype(map)>>(param)] = std::move(s);
}

}  // namespace torchfocal::train
