#!/usr/bin/env bash
# The package as a user gets it: `npm pack` of this checkout, installed into an empty project,
# then the CLI (--version, info, a one-epoch train, experiment starve) and a TypeScript file
# that imports torchfocal, compiled under strict. Needs what scripts/setup.sh installs.
#   scripts/check-package.sh [--quick]   --quick: starve with one epoch instead of five
set -euo pipefail
cd "$(dirname "$0")/.."
epochs=5
[ "${1:-}" = --quick ] && epochs=1

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
say() { echo "check-package: $*" >&2; }

say "packing (prepack compiles the TypeScript)"
tarball=$(npm pack --silent --pack-destination "$work" | tail -1)
tar -tzf "$work/$tarball" > "$work/contents"
for f in dist/ts/index.js dist/ts/index.d.ts dist/ts/cli/main.js scripts/install.js CMakeLists.txt \
  binding/addon.cc src/train/trainer.cpp models/registry.cpp bench/native/focal_op_bench.cpp \
  dist/bench/run.js bench/pytorch_lenet.py bench/pytorch_resnet32.py bench/d2l_models.py \
  ts/export/onnx.proto; do
  grep -qx "package/$f" "$work/contents" || { say "the tarball lacks $f"; exit 1; }
done
if grep -qE '^package/(test|dist/test)/' "$work/contents"; then
  say "the tarball carries tests"; exit 1
fi
say "$tarball: $(wc -l < "$work/contents") files, $(du -k "$work/$tarball" | cut -f1) KiB"

mkdir "$work/project"
repo=$PWD
cd "$work/project"
npm init -y > /dev/null
start=$SECONDS
# --foreground-scripts: the install script's one-line summary (addon build time) is shown.
npm install --no-audit --no-fund --foreground-scripts "../$tarball" 2>&1 | grep -E 'torchfocal|added|ERR' >&2
say "npm install took $((SECONDS - start)) s"
test -f node_modules/torchfocal/build/Release/torchfocal.node || { say "no addon after install"; exit 1; }

version=$(node -p "require('torchfocal/package.json').version")
[ "$(npx torchfocal --version)" = "$version" ] || { say "--version is not $version"; exit 1; }
npx torchfocal info
# the bench's harness and its baselines resolve from the installed package (not run: minutes)
npx torchfocal bench --help > /dev/null
node -e 'require("torchfocal/dist/bench/run.js")'
npx torchfocal info --json | node -e '
  const info = JSON.parse(require("fs").readFileSync(0, "utf8"));
  if (!info.runtime || !/^\d+\.\d+\.\d+$/.test(info.runtime.torchVersion)) process.exit(1);'

say "one epoch of LeNet"
npx torchfocal train --epochs 1 --out runs/one --json | tail -1 | node -e '
  const done = JSON.parse(require("fs").readFileSync(0, "utf8"));
  if (done.event !== "done" || !(done.eval.accuracy > 0.5)) {
    console.error("check-package: unexpected end of train:", JSON.stringify(done).slice(0, 200));
    process.exit(1);
  }
  console.error(`check-package: test accuracy ${done.eval.accuracy} after one epoch`);'

say "export of that checkpoint as ONNX"
npx torchfocal export --checkpoint runs/one --format onnx --out one.onnx --json | node -e '
  const s = JSON.parse(require("fs").readFileSync(0, "utf8"));
  if (s.bytes !== require("fs").statSync("one.onnx").size || s.classes.length !== 10) process.exit(1);'

say "experiment starve ($epochs epochs)"
npx torchfocal experiment starve --epochs "$epochs" --out runs/starve

say "TypeScript: a script importing torchfocal, under strict"
npm install --no-audit --no-fund --silent typescript@5.9 @types/node@20
# The repository's example, importing the package by name as a user's script does.
sed "s#from '../ts/index'#from 'torchfocal'#" "$repo/examples/starve-six.ts" > starve-six.ts
grep -q "from 'torchfocal'" starve-six.ts
npx tsc --strict --noEmit --module node16 --moduleResolution node16 --target es2022 --types node starve-six.ts
say "passed"
