#!/usr/bin/env bash
# The consumer workspace (examples/consumer) uses the rules through local_path_override, as a
# monorepo would. For x86-64, for aarch64 (under qemu) and in WORKSPACE mode it must build its
# app (two models), run its model's `scorer_run` on an input file, match onnx's reference
# evaluator, and pass its generated tests.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
BAZEL="${BAZEL:-$repo/tools/bazel}"
consumer="$repo/examples/consumer"
# Outside /tmp: Bazel's sandbox hides the real /tmp from actions (hermetic tmp).
work="$repo/bazel-testwork/consumer"
rm -rf "$work"
mkdir -p "$work"

python_in_root() { "$repo/tools/bazel" --pure_model_exec python3 "$@"; }

python_in_root -c "
import numpy as np
np.save('$work/signal.npy', np.random.default_rng(5).uniform(-1, 1, (1, 2, 12, 12)).astype(np.float32))"

# The binary that ran is of the architecture asked for: ELF e_machine 0x3e (x86-64) or 0xb7 (aarch64).
is_expected_elf() {
  local mode="$1" binary machine want
  [[ "$mode" == arm64 ]] && want=b700 || want=3e00
  binary="$("$BAZEL" info "${flags[@]}" execution_root)/$("$BAZEL" cquery "${flags[@]}" --output=files //models:scorer_run 2>/dev/null)"
  machine="$(od -An -tx1 -j18 -N2 "$binary" | tr -d ' \n')"
  if [[ "$machine" != "$want" ]]; then
    echo "FAIL $binary: ELF machine $machine, expected $want"
    return 1
  fi
  echo "ok   $mode binary is ELF machine $machine"
}

cd "$consumer"
passed=0
failed=0
# The same workspace three ways: bzlmod for x86-64 and aarch64, and WORKSPACE mode.
for mode in x86_64 arm64 workspace; do
  flags=()
  [[ "$mode" == arm64 ]] && flags=(--config=arm64)
  [[ "$mode" == workspace ]] && flags=(--config=pure_model_workspace)
  echo "== consumer, $mode"
  if "$BAZEL" run "${flags[@]}" //app &&
    "$BAZEL" run "${flags[@]}" //models:scorer_run -- --input=signal="$work/signal.npy" --output_dir="$work/out_$mode" &&
    python_in_root "$repo/tests/e2e/compare_with_reference.py" "$consumer/models/scorer.onnx" \
      signal="$work/signal.npy" -- "$work/out_$mode" &&
    "$BAZEL" test "${flags[@]}" //... &&
    is_expected_elf "$mode"; then
    passed=$((passed + 1))
  else
    echo "FAIL consumer, $mode"
    failed=$((failed + 1))
  fi
done
echo "consumer: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
