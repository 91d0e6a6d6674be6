#!/usr/bin/env bash
# The prepared GPU check: builds the addon against the LibTorch of the installed (CUDA) PyTorch,
# runs the native tests (the CUDA focal kernels against the CPU op among them), the GPU-only ava
# tests (test/gpu: kernels vs CPU on random inputs, the focal issue's edge cases, a training run)
# and the benchmark on the GPU. Logs and summary.md go to OUT_DIR.
#
#   scripts/gpu-check.sh OUT_DIR
#
# Needs: an NVIDIA GPU, CUDA (nvcc), CMake, python3 with a CUDA PyTorch (and numpy). Nothing is
# fetched: without Node.js or node_modules it unpacks the ones scripts/gpu-pack.sh put in .gpu/.
# Every step has a time limit; the whole run stays under 10 minutes on a 16-core machine.
set -uo pipefail

[[ $# -eq 1 ]] || { echo "usage: $0 OUT_DIR" >&2; exit 2; }
mkdir -p "$1" && OUT=$(cd "$1" && pwd)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
SUMMARY=$OUT/summary.md
FAILED=0
: > "$SUMMARY"

note() { echo "$*" | tee -a "$SUMMARY"; }

# step NAME LIMIT_SECONDS COMMAND...: runs it with its output in OUT/NAME.log, one table row.
step() {
  local name=$1 limit=$2 start status
  shift 2
  start=$(date +%s)
  echo "== $name ($*)" >&2
  timeout --kill-after=10 "$limit" "$@" > "$OUT/$name.log" 2>&1
  status=$?
  local took=$(( $(date +%s) - start ))
  if [[ $status -eq 0 ]]; then
    ROWS+="| $name | ok | ${took} s |"$'\n'
  else
    [[ $status -eq 124 ]] && status="timed out after ${limit} s" || status="exit $status"
    ROWS+="| $name | **failed: $status** (see $name.log) | ${took} s |"$'\n'
    FAILED=1
    tail -20 "$OUT/$name.log" >&2
  fi
}
ROWS=""

# ---- Node.js and the JS side, carried when the machine has none -------------------------------
if ! command -v node > /dev/null; then
  [[ -f .gpu/node.xz ]] || { echo "gpu-check: no node and no .gpu/node.xz (run scripts/gpu-pack.sh)" >&2; exit 2; }
  mkdir -p /tmp/torchfocal-node && xz -dc .gpu/node.xz > /tmp/torchfocal-node/node
  chmod +x /tmp/torchfocal-node/node && export PATH=/tmp/torchfocal-node:$PATH
fi
for part in node_modules dist; do
  if [[ ! -d $part && -f .gpu/$part.tar.xz ]]; then tar -xJf ".gpu/$part.tar.xz"; fi
  [[ -d $part ]] || { echo "gpu-check: $part is missing (run npm ci / scripts/gpu-pack.sh)" >&2; exit 2; }
done

# ---- The machine -------------------------------------------------------------------------------
PY=${PYTHON:-python3}
TORCH_PREFIX=$("$PY" -c 'import torch; print(torch.utils.cmake_prefix_path)') ||
  { echo "gpu-check: $PY cannot import torch" >&2; exit 2; }
note "# torchfocal GPU check, $(date -u +'%Y-%m-%d %H:%M UTC')"
note ""
note "- GPU: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1)"
note "- PyTorch: $("$PY" -c 'import torch; print(torch.__version__, "CUDA", torch.version.cuda, "available:", torch.cuda.is_available())')"
note "- node $(node --version), cmake $(cmake --version | head -1 | cut -d' ' -f3), nvcc $(nvcc --version 2>/dev/null | tail -2 | head -1 | sed 's/.*release //')"
note "- CPU: $(nproc) cores"
note ""

# ---- Build: the addon, the native tests and the CUDA kernels, against PyTorch's LibTorch ------
export CMAKE_BUILD_PARALLEL_LEVEL=$(nproc)
# configure, then build: `compile` skips the configure of an existing build folder, and with it
# the native tests that an install leaves off.
step build 420 bash -c 'node node_modules/cmake-js/bin/cmake-js configure --release --out build-gpu \
  --CDCMAKE_PREFIX_PATH="$1" --CDTORCHFOCAL_TESTS=ON &&
  node node_modules/cmake-js/bin/cmake-js build --release --out build-gpu' build "$TORCH_PREFIX"
export TORCHFOCAL_ADDON=$ROOT/build-gpu/Release/torchfocal.node
grep -E "torchfocal:|GoogleTest" "$OUT/build.log" | sed 's/^/    /' >> "$SUMMARY"

if [[ -f $TORCHFOCAL_ADDON ]]; then
  # ---- Native tests (GoogleTest through ctest), when GoogleTest was found ----------------------
  if [[ -x build-gpu/torchfocal_native_tests ]]; then
    step native-tests 240 ctest --test-dir build-gpu --output-on-failure -j "$(nproc)"
  else
    note "- native tests not built: no GoogleTest on this machine (the ava GPU tests cover the kernels)"
  fi
  # ---- What the build found: versions, the device, cuDNN, NCCL ----------------------------------
  step info 60 node dist/ts/cli/main.js info
  sed 's/^/    /' "$OUT/info.log" >> "$SUMMARY"
  # ---- ava GPU tests ---------------------------------------------------------------------------
  step ava-gpu 240 node node_modules/ava/entrypoints/cli.mjs --config ava.gpu.config.mjs --verbose
  # ---- c10d NCCL smoke test: one rank on one GPU, through the launcher ---------------------------
  step nccl-1gpu 120 node dist/ts/cli/main.js train --nproc 1 --device cuda --epochs 1 \
    --out "$OUT/nccl-run" --json
  # ---- The benchmark on the GPU (LeNet epoch, inference, focal op; PyTorch in the same run) ----
  step bench-cuda 300 node dist/ts/cli/main.js bench --quick --device cuda --python "$PY" --json
  # the bench log ends with its JSON object; keep it on its own
  tail -1 "$OUT/bench-cuda.log" > "$OUT/bench-cuda.json"
fi

note ""
note "| step | result | time |"
note "| --- | --- | --- |"
printf '%s' "$ROWS" | tee -a "$SUMMARY"
if [[ -s $OUT/bench-cuda.json ]]; then
  node -e '
    const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    const l = r.lenet, s = (x) => (x === undefined ? "-" : x);
    const lines = ["", "| figure | value |", "| --- | --- |",
      `| torchfocal LeNet epoch (cuda, CUDA graph) | ${s(l.torchfocal.seconds)} s |`,
      `| torchfocal LeNet epoch (cuda, uncaptured) | ${s(l.torchfocalUncaptured?.seconds)} s |`,
      ...(l.timeTo99?.recipes ?? []).map((t) => `| to 99% test accuracy, ${t.recipe} | ${s(t.seconds ?? undefined)} s of training, ${t.epochs} epochs, acc ${t.accuracy} |`),
      `| PyTorch eager, GPU-resident (best / default) | ${s(l.pytorchBest?.seconds)} s / ${s(l.pytorchDefault?.seconds)} s |`,
      `| eval images/s torchfocal / PyTorch | ${s(r.inference.torchfocal.evalImagesPerSecond)} / ${s(r.inference.pytorch?.evalImagesPerSecond)} |`,
      ...Object.entries(r.ratios).map(([k, v]) => `| ${k} | ${v} |`),
      ...r.notes.map((n) => `| note | ${n} |`)];
    console.log(lines.join("\n"));' "$OUT/bench-cuda.json" 2>/dev/null | tee -a "$SUMMARY"
fi
exit $FAILED
