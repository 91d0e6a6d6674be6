#include "src/ops/autograd/focal_loss_autograd.h"

namespace torchfocal::ops {

torch::Tensor FocalLossFunction::forward(torch::autograd::AutogradContext* ctx,
                                         const torch::Tensor& /*input*/,
                                         const detail::KernelArgs& args, Reduction reduction) {
  detail::ForwardOut out = detail::forward(args);
  ctx->save_for_backward({args.input, args.target, args.alpha, out.stats});
  auto& saved = ctx->saved_data;
  saved["mode"] = static_cast<int64_t>(args.mode);
  saved["gamma"] = args.gamma;
  saved["sigmoid_alpha"] = args.sigmoid_alpha;
  saved["ignore_index"] = args.ignore_index;
  saved["label_smoothing"] = args.label_smoothing;
  saved["mean_divisor"] = args.mean_divisor;
  saved["reduction"] = static_cast<int64_t>(reduction);
  return detail::reduce(out.loss, args, reduction);
}

torch::autograd::variable_list FocalLossFunction::backward(
    torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grad_outputs) {
  const torch::autograd::variable_list saved = ctx->get_saved_variables();
  const auto& data = ctx->saved_data;
  detail::KernelArgs args;
  args.input = saved[0];
  args.target = saved[1];
  args.alpha = saved[2];
  args.mode = static_cast<FocalMode>(data.at("mode").toInt());
  args.gamma = data.at("gamma").toDouble();
  args.sigmoid_alpha = data.at("sigmoid_alpha").toDouble();
  args.ignore_index = data.at("ignore_index").toInt();
  args.label_smoothing = data.at("label_smoothing").toDouble();
  args.mean_divisor = data.at("mean_divisor").toDouble();
  const auto reduction = static_cast<Reduction>(data.at("reduction").toInt());

  // d loss / d rows: grad_output itself for none (per row) and sum (scalar), grad_output over
  // the divisor for mean.
  const double scale = reduction == Reduction::kMean ? 1.0 / args.mean_divisor : 1.0;
  const torch::Tensor grad_loss = detail::prepare_grad_loss(grad_outputs[0], args);
  torch::Tensor grad_input = detail::backward(args, /*stats=*/saved[3], grad_loss, scale);
  // One gradient per forward argument: input, args, reduction.
  return {grad_input, torch::Tensor(), torch::Tensor()};
}

}  // namespace torchfocal::ops
