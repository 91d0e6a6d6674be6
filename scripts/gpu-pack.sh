#!/usr/bin/env bash
# Packs what scripts/gpu-check.sh needs on a GPU machine that has CUDA, CMake and PyTorch but no
# Node.js and no network, into .gpu/ (git-ignored; carry it along):
#   .gpu/node.xz               this machine's node binary
#   .gpu/node_modules.tar.xz   node_modules without the dev-only formatters, types and caches
#   .gpu/dist.tar.xz           the compiled TypeScript (tests and benchmarks included)
# Run here after `npm ci` and `npm run build:ts`.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -d node_modules && -d dist ]] || { echo "gpu-pack: run npm ci and npm run build:ts first" >&2; exit 1; }
mkdir -p .gpu
xz -T0 -6 -c "$(command -v node)" > .gpu/node.xz.tmp && mv .gpu/node.xz.tmp .gpu/node.xz
tar -c --exclude='node_modules/.cache' --exclude='node_modules/typescript' \
  --exclude='node_modules/prettier' --exclude='node_modules/@types' node_modules |
  xz -T0 -6 > .gpu/node_modules.tar.xz.tmp && mv .gpu/node_modules.tar.xz.tmp .gpu/node_modules.tar.xz
tar -c dist | xz -T0 -6 > .gpu/dist.tar.xz.tmp && mv .gpu/dist.tar.xz.tmp .gpu/dist.tar.xz
du -sh .gpu/*
echo "gpu-pack: carry .gpu (total $(du -sh .gpu | cut -f1); the device tool takes 64 MiB with the tree)"
