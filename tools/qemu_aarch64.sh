#!/bin/sh
# Runs an aarch64 Linux binary (and its arguments) under user-mode qemu, with the aarch64
# C and C++ runtime libraries of the cross toolchain as its library root.
set -eu
sysroot="${PURE_MODEL_AARCH64_SYSROOT:-/usr/aarch64-linux-gnu}"
if ! command -v qemu-aarch64 >/dev/null 2>&1; then
  echo "qemu_aarch64: qemu-aarch64 is not installed (Debian package qemu-user)" >&2
  exit 127
fi
exec qemu-aarch64 -L "$sysroot" "$@"
