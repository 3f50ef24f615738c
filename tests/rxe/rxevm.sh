#!/bin/bash
# Run one command inside viaduct's Soft-RoCE test guest (Debian 6.1 kernel with rdma_rxe, QEMU TCG).
#   tests/rxe/rxevm.sh [-t TIMEOUT_S] [-m MEM_MB] [-s SMP] -- CMD [ARGS...]
# The guest sees the host's filesystem read-only (writes go to a tmpfs and are lost), so host-built
# test binaries and rdma-core/perftest run unchanged. CMD runs as root in the current directory;
# its output comes on our stdout, mixed with kernel warnings. Files written under $VIADUCT_RXEVM_OUT
# (a host folder, same path in the guest) are kept. VIADUCT_* variables of the caller are passed in.
# Exit status: CMD's; 124 on timeout; 125 if the guest died before CMD finished.
# The guest has no NIC (-nodefaults): no traffic can leave it.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${VIADUCT_RXEVM_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/viaduct/rxe-vm}
# A hanging test stalls the whole guest until this cap; keep it under the 9 min a CI step allows.
T=480 MEM=2048 SMP=2
while getopts "t:m:s:" o; do
  case $o in
    t) T=$OPTARG ;;
    m) MEM=$OPTARG ;;
    s) SMP=$OPTARG ;;
    *) exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[ "${1:-}" = "--" ] && shift
[ $# -gt 0 ] || { echo "usage: $0 [-t s] [-m MB] [-s N] -- CMD..."; exit 2; }
if [ "$T" -gt 530 ]; then echo "rxevm: -t $T capped to 530 s"; T=530; fi

if [ ! -f "$CACHE/initramfs.cpio.gz" ] ||
   [ "$(cat "$CACHE/init.sha256" 2>/dev/null)" != "$(sha256sum "$HERE/init" | cut -d' ' -f1)" ]; then
  VIADUCT_RXEVM_DIR=$CACHE timeout 900 "$HERE/build-guest.sh" || { echo "rxevm: build-guest.sh failed"; exit 125; }
fi

RUN=${VIADUCT_RXEVM_OUT:-}
if [ -z "$RUN" ]; then RUN=$(mktemp -d /tmp/viaduct-rxevm.XXXXXX); CLEAN=1; else mkdir -p "$RUN"; CLEAN=0; fi
RUN=$(cd "$RUN" && pwd)
rm -f "$RUN/rc"
{ printf 'cd %q || exit 126\n' "$PWD"; printf 'exec'; printf ' %q' "$@"; printf '\n'; } > "$RUN/cmd.sh"
# Values with spaces would split in init; the test knobs are plain words.
env | grep -E '^VIADUCT_[A-Z0-9_]+=[^ ]*$' | grep -v -E '^VIADUCT_RXEVM' > "$RUN/env" || true

# MTTCG: one host thread per vCPU. KVM is not offered: where it exists here it is nested and the
# guest kernel never boots.
timeout -k 5 "$T" qemu-system-x86_64 -accel tcg,thread=multi,tb-size=256 -cpu max -smp "$SMP" -m "$MEM" \
  -nodefaults -no-user-config -display none -no-reboot \
  -kernel "$CACHE/vmlinuz" -initrd "$CACHE/initramfs.cpio.gz" \
  -append "console=ttyS0 quiet loglevel=3 panic=-1 mitigations=off viaduct.run=$RUN" \
  -chardev stdio,id=con,signal=off -serial chardev:con \
  -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
  -virtfs local,path="$RUN",mount_tag=viaductrun,security_model=none,multidevs=remap \
  < /dev/null
Q=$?
if [ -f "$RUN/rc" ]; then
  RC=$(cat "$RUN/rc")
elif [ $Q -eq 124 ]; then
  RC=124
  echo "rxevm: timeout after ${T}s"
else
  RC=125
  echo "rxevm: guest ended (qemu rc $Q) before the command finished"
fi
[ $CLEAN = 1 ] && rm -rf "$RUN"
exit "$RC"
