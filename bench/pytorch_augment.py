"""torchvision's CIFAR augmentation (RandomCrop(32, padding=4), RandomHorizontalFlip, ToTensor) on
N random 32x32 RGB PIL images, the way a DataLoader applies it: per image, on the CPU, in the
process that trains when num_workers=0. Prints one JSON line: the median seconds per pass.

Used by `torchfocal bench` (bench/resnet32.ts) to put torchfocal's on-device augmentation
overhead beside the per-image work PyTorch's recipe does per epoch."""
import json
import sys
import time

import numpy as np
import torch
from PIL import Image
from torchvision import transforms

n, repeats = int(sys.argv[1]), int(sys.argv[2])
torch.set_num_threads(1)
rng = np.random.default_rng(0)
images = [Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(n)]
augment = transforms.Compose(
    [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(), transforms.ToTensor()]
)
plain = transforms.ToTensor()
times = {"augmented": [], "plain": []}
for _ in range(repeats):
    for name, t in (("augmented", augment), ("plain", plain)):
        start = time.perf_counter()
        for im in images:
            t(im)
        times[name].append(time.perf_counter() - start)
print(json.dumps({k: float(np.median(v)) for k, v in times.items()}))
