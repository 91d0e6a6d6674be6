#!/usr/bin/env python3
"""PyTorch baseline for torchfocal's focal-op benchmark.

Times, forward + backward in float32 (mean reduction, gradient of the logits):
* crossEntropy: F.cross_entropy(logits, target)
* original: the original experiment's FocalLoss module, op for op (softmax, gather, + 1e-8,
  log, pow, mul, mean), alpha 100 on class 6 (class 0 when there are fewer than 7), gamma 2.
Each op runs in interleaved rounds of timed batches (each at least --min-batch seconds); the
median seconds per call is reported. Prints one JSON object on stdout:
{"torch": ..., "threads": ..., "sizes": [{"rows", "classes", "crossEntropy", "original"}, ...]}

    OPENBLAS_NUM_THREADS=1 /usr/bin/python3 bench/pytorch_focal.py --threads 2 \
        --sizes 128x10,4096x10,65536x10,4096x1000
"""

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn


class FocalLoss(nn.Module):
    """The original experiment's multi-class focal loss (with_logits=True)."""

    def __init__(self, alpha, gamma=2):
        super().__init__()
        self.alpha = torch.tensor(alpha)
        self.gamma = gamma

    def forward(self, input, target):
        pt = F.softmax(input, dim=1)
        pt = pt.gather(1, target.view(-1, 1)).view(-1) + 1e-8
        logpt = torch.log(pt)
        alpha = self.alpha.gather(0, target)
        loss = -alpha * (1 - pt) ** self.gamma * logpt
        return loss.mean()


def run_batch(loss, x, target, iters):
    start = time.perf_counter()
    for _ in range(iters):
        x.grad = None
        loss(x, target).backward()
    if x.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def time_size(rows, classes, repeats, min_batch, device):
    torch.manual_seed(0)
    x = (torch.randn(rows, classes) * 3).to(device).requires_grad_(True)
    target = torch.randint(classes, (rows,)).to(device)
    alpha = [1.0] * classes
    alpha[min(6, classes - 1)] = 100.0
    original = FocalLoss(alpha, 2)
    original.alpha = original.alpha.to(device)
    losses = {"crossEntropy": F.cross_entropy, "original": original}
    iters = {}
    for name, loss in losses.items():
        run_batch(loss, x, target, 3)
        n, t = 1, run_batch(loss, x, target, 1)
        while t < min_batch and n < (1 << 20):
            n = max(n * 2, int(n * min_batch / max(t, 1e-9)))
            t = run_batch(loss, x, target, n)
        iters[name] = n
    per_call = {name: [] for name in losses}
    for _ in range(repeats):
        for name, loss in losses.items():
            per_call[name].append(run_batch(loss, x, target, iters[name]) / iters[name])
    return {"rows": rows, "classes": classes,
            **{name: statistics.median(v) for name, v in per_call.items()}}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=0, help="intra-op threads (0: PyTorch's default)")
    p.add_argument("--sizes", default="128x10,4096x10,65536x10,4096x1000", help="ROWSxCLASSES,...")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--min-batch", type=float, default=0.02)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    args = p.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    out = {"torch": torch.__version__, "threads": torch.get_num_threads(),
           "device": args.device,
           "sizes": [time_size(r, c, args.repeats, args.min_batch, args.device) for r, c in sizes]}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
