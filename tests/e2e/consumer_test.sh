#!/usr/bin/env bash
# The consumer workspace (examples/consumer) uses the rules through local_path_override, as a
# monorepo would. For x86-64 and for aarch64 (under qemu) it must build its app, run its model's
# `scorer_run` on an input file, match onnx's reference evaluator, and pass its generated tests.
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

cd "$consumer"
passed=0
failed=0
for config in x86_64 arm64; do
  flags=()
  [[ "$config" == arm64 ]] && flags=(--config=arm64)
  echo "== consumer, $config"
  if "$BAZEL" run "${flags[@]}" //app &&
    "$BAZEL" run "${flags[@]}" //models:scorer_run -- --input=signal="$work/signal.npy" --output_dir="$work/out_$config" &&
    python_in_root "$repo/tests/e2e/compare_with_reference.py" "$consumer/models/scorer.onnx" \
      signal="$work/signal.npy" -- "$work/out_$config" &&
    "$BAZEL" test "${flags[@]}" //...; then
    passed=$((passed + 1))
  else
    echo "FAIL consumer on $config"
    failed=$((failed + 1))
  fi
done
# The aarch64 run really ran an aarch64 binary.
if ! head -c 20 "$("$BAZEL" cquery --config=arm64 --output=files //models:scorer_run 2>/dev/null)" |
    od -An -tx1 | tr -d ' \n' | grep -q '^7f454c46020101.*b700$'; then
  echo "FAIL the arm64 scorer_run is not an aarch64 ELF binary"
  failed=$((failed + 1))
fi
echo "consumer: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
