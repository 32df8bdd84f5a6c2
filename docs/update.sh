#!/usr/bin/env bash
# Copies freshly generated docs over the checked-in ones. Run it as `bazel run //docs:update`;
# the arguments (set in BUILD.bazel) are pairs of a generated file and its place in the source
# tree.
set -euo pipefail

if [[ -z "${BUILD_WORKSPACE_DIRECTORY:-}" ]]; then
  echo >&2 "update: run me with 'bazel run //docs:update', not directly"
  exit 1
fi
while (($# >= 2)); do
  # cp would write through a symlink left by an earlier tool; the checked-in file must be a file.
  rm -f "$BUILD_WORKSPACE_DIRECTORY/$2"
  cp "$1" "$BUILD_WORKSPACE_DIRECTORY/$2"
  chmod 644 "$BUILD_WORKSPACE_DIRECTORY/$2"
  echo "updated $2"
  shift 2
done
