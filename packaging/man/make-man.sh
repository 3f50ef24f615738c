#!/bin/sh
# viaduct.1 from the command's own help: the top-level --help, then each subcommand's, so the
# page never disagrees with the program.  make-man.sh VIADUCT OUT
set -eu
tool=$1
out=$2
include=$(mktemp)
trap 'rm -f "$include"' EXIT
{
  echo "[COMMANDS]"
  for sub in info "perf server" "perf client" lookup load serve keygen key-public "config check" \
    "bench failover" "bench faults" "bench crowd"; do
    echo ".SS viaduct $sub"
    echo ".nf"
    # shellcheck disable=SC2086
    "$tool" $sub --help | sed "s|$tool|viaduct|g" | sed 's/\\/\\\\/g; s/^\./\\\&./'
    echo ".fi"
  done
  echo "[EXIT STATUS]"
  echo "0 success (and --help, --version); 1 a runtime failure; 2 bad usage, a bad configuration"
  echo "file or a bad VIADUCT_* value, with the reason on stderr."
  echo "[ENVIRONMENT]"
  echo "VIADUCT_* variables set the tunables listed by viaduct info; VIADUCT_LOG_LEVEL sets the"
  echo "library's log level (trace, debug, info, warn, error, off)."
} >"$include"
help2man --no-info --no-discard-stderr --name "VIA-style low-latency transport with seamless failover" \
  --include "$include" --output "$out" "$tool"
