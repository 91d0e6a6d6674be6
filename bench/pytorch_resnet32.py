#!/usr/bin/env python3
"""PyTorch baseline for torchfocal's ResNet-32 epoch benchmark.

The CIFAR long-tail papers' ResNet-32 (d2l_models.resnet32, three input channels: the same
layers and parameters as torchfocal's zoo `resnet32`) trained on --images random 32x32 RGB images
(seeded; the arithmetic does not care what they show), ten classes, batch 128, SGD lr 0.1
momentum 0.9, cross-entropy: pytorch_lenet.py's in-memory loop (whole set one uint8 tensor,
randperm + index batches).

PyTorch's best configuration: run it with OPENBLAS_NUM_THREADS=1, glibc's allocator held as the
addon holds its own (MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1073741824: without
them ResNet-32's activations are faulted in again every step) and --threads as torchfocal's;
after one cold warm-up epoch, one more epoch in each memory layout (NCHW, channels_last) picks
the faster for the timed epochs (--layout fixes it instead). --serve, --warmup, --json: as
pytorch_lenet.py (epoch requests only); the JSON adds "layout" and "layoutSeconds".

    OPENBLAS_NUM_THREADS=1 MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1073741824 \
        /usr/bin/python3 bench/pytorch_resnet32.py --images 5000 --threads 2
"""

import argparse
import sys

import torch

from d2l_models import resnet32
from pytorch_lenet import finish, tensor_epoch, tensor_run

BATCH_SIZE = 128  # pytorch_lenet.tensor_epoch's
LAYOUTS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=5000, help="random training images (default 5000)")
    p.add_argument("--epochs", type=int, default=3, help="timed epochs (default 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed cold epochs first (default 1)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch.set_num_threads(N); 0 leaves PyTorch's default")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--layout", choices=["auto", *LAYOUTS], default="auto")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--serve", action="store_true",
                   help="after the warm-up, one timed epoch per 'epoch' line on stdin")
    args = p.parse_args(argv)
    if args.images < 1 or args.epochs < 1 or args.warmup < 0 or args.threads < 0:
        p.error("--images and --epochs must be >= 1; --warmup and --threads >= 0")
    args.device = "cpu"

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    images = torch.randint(0, 256, (args.images, 3, 32, 32), dtype=torch.uint8,
                           generator=generator)
    labels = torch.arange(args.images) % 10
    model = resnet32(num_classes=10, channels=3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    def epoch(fmt):
        model.to(memory_format=fmt)
        return tensor_epoch(model, optimizer, images, labels, generator, fmt)[0]

    for e in range(args.warmup):
        print(f"warm-up epoch {e}: {epoch(LAYOUTS['nchw']):.2f}s", file=sys.stderr)
    layout_seconds = {}
    if args.layout == "auto":
        for name, fmt in LAYOUTS.items():
            layout_seconds[name] = epoch(fmt)
            print(f"layout trial {name}: {layout_seconds[name]:.2f}s", file=sys.stderr)
        layout = min(layout_seconds, key=layout_seconds.get)
    else:
        layout = args.layout
    model.to(memory_format=LAYOUTS[layout])
    args.warmup = 0  # done above
    result = {"mode": "tensor", "layout": layout, "layoutSeconds": layout_seconds}
    result.update(tensor_run(args, model, optimizer, images, labels, generator,
                             memory_format=LAYOUTS[layout]))
    finish(args, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
