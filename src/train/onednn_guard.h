// A check of LibTorch's oneDNN convolutions, and the switch that routes them around it.
#pragma once

#include <string>

namespace torchfocal::train {

// LibTorch runs CPU convolutions through oneDNN where it has it, and some oneDNN builds compute
// wrong gradients: Debian 13's oneDNN 3.7.2 under LibTorch 2.6, on AVX2, returns input gradients
// off by 20-90% for narrow layers (1 -> 6 channels 5x5, 4 -> 4 and 8 -> 8 3x3; bench/NOTES.md
// §16), enough to turn a narrow ResNet's loss to NaN. Once per process this compares oneDNN's
// input gradients of such layers with LibTorch's own kernels on fixed random data; where they
// disagree, LibTorch is told to run convolutions without oneDNN. Thread-safe; cheap after the
// first call (the check itself takes a few milliseconds).
void guard_onednn_convolutions();

// What the check found (running it first if it has not run): "used" (oneDNN passed), "off: ..."
// (failed, routed around), "not built" (LibTorch has no oneDNN) or "off by the caller".
std::string onednn_convolutions_state();

}  // namespace torchfocal::train
