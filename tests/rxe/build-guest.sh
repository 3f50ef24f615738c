#!/bin/bash
# Build the Soft-RoCE test guest for viaduct's verbs back end:
#   $VIADUCT_RXEVM_DIR/vmlinuz            Debian's own kernel (linux-image-6.1.*-amd64), unpacked, never installed
#   $VIADUCT_RXEVM_DIR/initramfs.cpio.gz  busybox-static + tests/rxe/init + the modules rdma_rxe needs
# The host kernel (and CI's) has no RDMA and cannot load modules, so verbs tests run in this guest.
# Only writes under $VIADUCT_RXEVM_DIR (default ${XDG_CACHE_HOME:-$HOME/.cache}/viaduct/rxe-vm).
# Installs its own apt packages when missing (needs root, as on the project's machines and CI).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${VIADUCT_RXEVM_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/viaduct/rxe-vm}
STEP_TIMEOUT=${VIADUCT_RXEVM_STEP_TIMEOUT:-300}

# Host tools: qemu to boot, busybox/cpio/kmod to pack the initramfs, and the rdma-core user space
# that runs unchanged inside the guest (the guest sees the host's filesystem).
NEED="qemu-system-x86 busybox-static cpio kmod iproute2 rdma-core ibverbs-providers ibverbs-utils
      rdmacm-utils perftest libibverbs-dev librdmacm-dev"
missing=""
for p in $NEED; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "build-guest: installing$missing"
  timeout "$STEP_TIMEOUT" apt-get update -qq
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive timeout "$STEP_TIMEOUT" apt-get install -y --no-install-recommends $missing
fi

mkdir -p "$CACHE"
cd "$CACHE"

# 1. The kernel: linux-image-amd64 is a meta package; fetch the versioned image it depends on.
KPKG=$(timeout 60 apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
if [ -z "$KPKG" ]; then
  timeout "$STEP_TIMEOUT" apt-get update -qq
  KPKG=$(timeout 60 apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
fi
[ -n "$KPKG" ] || { echo "build-guest: cannot resolve linux-image-amd64"; exit 1; }
KVER=${KPKG#linux-image-}
if [ ! -f "kroot/boot/vmlinuz-$KVER" ]; then
  rm -rf kpkg kroot
  mkdir -p kpkg
  # as root apt warns that the download is "unsandboxed": harmless
  (cd kpkg && timeout "$STEP_TIMEOUT" apt-get download "$KPKG")
  timeout "$STEP_TIMEOUT" dpkg -x kpkg/*.deb kroot
  # the .deb carries no modules.dep (its postinst would make it)
  timeout "$STEP_TIMEOUT" depmod -b kroot "$KVER"
fi
cp "kroot/boot/vmlinuz-$KVER" vmlinuz
echo "$KVER" > kver

# 2. Modules and their dependencies, in load order: nothing can autoload them in the guest.
WANT="virtio_pci virtio_net virtio_console 9pnet_virtio 9p overlay crc32_generic
      rdma_rxe rdma_ucm ib_umad veth dummy sch_netem"
rm -rf ird
mkdir -p ird/bin ird/lib/modules ird/proc ird/sys ird/dev ird/lower ird/upper ird/newroot
: > ird/modules.list
for m in $WANT; do
  timeout 60 modprobe -d kroot -S "$KVER" --show-depends "$m" | awk '$1=="insmod"{print $2}'
done | awk '!seen[$0]++' | while read -r ko; do
  b=$(basename "$ko")
  cp "$ko" "ird/lib/modules/$b"
  echo "$b" >> ird/modules.list
done
echo "build-guest: modules: $(tr '\n' ' ' < ird/modules.list)"

# 3. busybox and the project's init.
cp /bin/busybox ird/bin/busybox
for a in sh mount umount insmod mkdir chroot poweroff sync cat echo sleep ip grep sed mountpoint ls dmesg cut; do
  ln -s busybox "ird/bin/$a"
done
install -m 0755 "$HERE/init" ird/init
(cd ird && find . | LC_ALL=C sort | timeout "$STEP_TIMEOUT" cpio -o -H newc --quiet | gzip -1) > initramfs.cpio.gz.new
mv initramfs.cpio.gz.new initramfs.cpio.gz
# rxevm.sh rebuilds when init changes
sha256sum "$HERE/init" | cut -d' ' -f1 > init.sha256
ls -la "$CACHE/vmlinuz" "$CACHE/initramfs.cpio.gz"
