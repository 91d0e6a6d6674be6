#!/usr/bin/env bash
# Installs everything torchfocal needs on Debian/Ubuntu: system packages (only those missing),
# then the npm dependencies, which builds the native addon. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

# libtorch-dev: the engine's LibTorch. libopenblas0-pthread: a fast libblas.so.3 for it (the
# reference BLAS is ~3x slower). python3-torch: the PyTorch baseline of `npm run bench` and the
# cross-checks in the tests (python3-pil: the original experiment's PNG loop in the benchmark).
# python3-torchvision: torchvision's ResNets, the reference of the zoo's; python3-onnx: onnx.checker on
# exported models (both for the tests). dataset-fashion-mnist: the second built-in dataset.
# chromium: renders reports in the tests.
# libgloo-dev: the headers of Gloo, the CPU backend of c10d that LibTorch links (distributed runs).
# A|B: either will do (the CUDA builds of LibTorch and PyTorch conflict with the CPU ones); the
# first is installed when neither is.
PACKAGES=(build-essential cmake ninja-build 'libtorch-dev|libtorch-cuda-dev' libopenblas0-pthread
  libgtest-dev 'libgloo-dev|libgloo-cuda-dev' 'python3-torch|python3-torch-cuda' python3-numpy python3-pil
  python3-torchvision python3-onnx dataset-fashion-mnist chromium)

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
missing=()
for entry in "${PACKAGES[@]}"; do
  found=""
  IFS='|' read -ra alternatives <<<"$entry"
  for pkg in "${alternatives[@]}"; do installed "$pkg" && found=1; done
  [ -n "$found" ] || missing+=("${alternatives[0]}")
done
if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: installing ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends --no-remove "${missing[@]}"
fi

if ! command -v node >/dev/null || ! node -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)'; then
  echo "setup: Node.js >= 20 is required (found: $(node --version 2>/dev/null || echo none))" >&2
  exit 1
fi

# npm ci installs the locked dependencies and runs our install script: cmake-js builds the addon.
# ONNXRUNTIME_NODE_INSTALL=skip: onnxruntime-node (a dev dependency, the export tests' runtime)
# would download its CUDA providers from NuGet at install; its CPU runtime is in its npm package.
export ONNXRUNTIME_NODE_INSTALL=skip
if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi
npm run build:ts
