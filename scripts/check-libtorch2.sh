#!/usr/bin/env bash
# Builds and tests a clean clone of this repository's HEAD against Debian 13's LibTorch 2.6, in a
# Debian 13 root made with mmdebstrap (the host's apt sources are never touched):
#
#   scripts/check-libtorch2.sh          libtorch-dev 2.6 (CPU): scripts/setup.sh, then npm test
#   scripts/check-libtorch2.sh --cuda   libtorch-cuda-dev 2.6 + nvidia-cuda-toolkit 12.4: the addon
#                                       and the native tests built and linked with CUDA, then the
#                                       full npm test on this machine, which has no GPU
#   --prepare                           only make the root (downloads; no build)
#
# Each root is made once and kept in $TORCHFOCAL_ROOTS (default /var/cache/torchfocal): trixie-cpu
# and trixie-cuda. Delete a folder there to start it afresh. Needs root (mmdebstrap, chroot).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

variant=cpu
prepare_only=""
for arg in "$@"; do
  case "$arg" in
    --cuda) variant=cuda ;;
    --prepare) prepare_only=1 ;;
    *) echo "usage: $0 [--cuda] [--prepare]" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "check-libtorch2: run as root (mmdebstrap and chroot)" >&2; exit 1; }

ROOTS=${TORCHFOCAL_ROOTS:-/var/cache/torchfocal}
root=$ROOTS/trixie-$variant
log() { echo "check-libtorch2 [$variant]: $*" >&2; }

# What the root starts with. setup.sh installs the rest inside it, as on any user's machine.
# The CUDA root gets its LibTorch and PyTorch first, so that setup.sh finds them in place of the
# CPU packages (they conflict).
base=(ca-certificates git nodejs npm)
components=main
if [ "$variant" = cuda ]; then
  base+=(libtorch-cuda-dev libgloo-cuda-dev libnccl-dev python3-torch-cuda nvidia-cuda-toolkit)
  components=main,contrib,non-free,non-free-firmware
fi

# libtorch-cuda-2.6 depends on nvidia-cudnn, whose install downloads cuDNN from NVIDIA (no network
# for that here). This check only links and runs CPU code, so a local package stands in for it
# and a stub libcudnn.so.9 defines the symbols LibTorch imports; neither ever leaves this root.
cudnn_stub_package() {
  local work=$1
  mkdir -p "$work/stub/DEBIAN"
  cat > "$work/stub/DEBIAN/control" <<'EOF'
Package: nvidia-cudnn
Version: 9.0.0.312~cuda12-0stub
Architecture: amd64
Maintainer: torchfocal check <nobody@invalid>
Provides: libcudnn-dev, libcudnn.so, libcudnn.so.9
Description: stand-in for cuDNN (torchfocal's link check; never shipped)
EOF
  dpkg-deb --build --root-owner-group "$work/stub" "$work/nvidia-cudnn-stub.deb" >/dev/null
}

# The stub library: one empty function for each cuDNN symbol LibTorch's libraries (and PyTorch's
# libtorch_python) import, under the soname and the symbol version (`cudnnCreate@libcudnn.so.9`)
# they ask for, so that executables link and `import torch` loads. Never called: no GPU, and
# torchfocal calls no cuDNN itself.
make_cudnn_stub() {
  local dir=$1/usr/lib/x86_64-linux-gnu
  find "$dir" -maxdepth 1 -type f -name 'libtorch*.so*' -exec nm -D --undefined-only {} + |
    awk '$2 ~ /^cudnn/ {print $2}' | sed 's/@.*//' | sort -u |
    awk '{print "void " $1 "(void) {}"}' > "$ROOTS/cudnn_stub.c"
  echo 'libcudnn.so.9 { global: *; };' > "$ROOTS/cudnn_stub.map"
  gcc -shared -fPIC -Wl,-soname,libcudnn.so.9 -Wl,--version-script="$ROOTS/cudnn_stub.map" \
    -o "$dir/libcudnn.so.9" "$ROOTS/cudnn_stub.c"
  ln -sf libcudnn.so.9 "$dir/libcudnn.so"
}

make_root() {
  command -v mmdebstrap >/dev/null || {
    log "installing mmdebstrap on the host"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap
  }
  local tmp=$root.tmp
  rm -rf "$tmp"
  mkdir -p "$ROOTS"
  local hooks=()
  if [ "$variant" = cuda ]; then
    cudnn_stub_package "$ROOTS"
    # Installed before the packages that depend on it (mmdebstrap's essential hook runs first).
    hooks+=(--essential-hook="copy-in $ROOTS/nvidia-cudnn-stub.deb /tmp"
      --essential-hook='chroot "$1" dpkg -i /tmp/nvidia-cudnn-stub.deb')
  fi
  log "making $root (Debian 13, $components: ${base[*]}); minutes, once"
  mmdebstrap --variant=apt --components="$components" --include="$(IFS=,; echo "${base[*]}")" \
    "${hooks[@]}" trixie "$tmp"
  if [ "$variant" = cuda ]; then
    make_cudnn_stub "$tmp"
  fi
  mv "$tmp" "$root"
}

[ -d "$root" ] || make_root
[ -z "$prepare_only" ] || exit 0

# A clean clone of HEAD, as CI gets it.
rm -rf "$root/src/torchfocal"
mkdir -p "$root/src"
git clone --quiet --no-hardlinks "$REPO" "$root/src/torchfocal"
# The host's name servers and the certificate authorities it trusts (a registry proxy's, say).
cp /etc/resolv.conf "$root/etc/resolv.conf"
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
  chroot "$root" update-ca-certificates >/dev/null 2>&1
fi

mounts=()
cleanup() {
  local i
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount -l "${mounts[i]}" 2>/dev/null || true; done
}
trap cleanup EXIT
for m in proc sys dev dev/pts; do
  mount --bind "/$m" "$root/$m"
  mounts+=("$root/$m")
done
mount -t tmpfs shm "$root/dev/shm"
mounts+=("$root/dev/shm")

log "building and testing $(git rev-parse --short HEAD) in $root"
start=$SECONDS
# Node.js trusts only its own certificate list unless told of the system's.
chroot "$root" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  HOME=/root TERM=dumb CI="${CI:-}" NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt \
  bash -c 'cd /src/torchfocal && ./scripts/setup.sh && npm test'
log "passed in $(((SECONDS - start) / 60)) min $(((SECONDS - start) % 60)) s with" \
  "$(chroot "$root" dpkg-query -W -f='${Status} ${Package} ${Version}\n' 'libtorch*-dev' |
    awk '/ installed / {print $4, $5}')"
