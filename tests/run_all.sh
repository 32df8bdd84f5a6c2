#!/usr/bin/env bash
# Every test of the project: the README's test command, and what CI runs.
#
#   1. bazel test //...                         the generator's unit and compile-and-run tests
#                                               (pytest), every example model against onnx's
#                                               reference evaluator, and the real models of
#                                               tests/real_models (from PyPI wheels) against ONNX
#                                               Runtime, on x86-64
#   2. bazel test --config=arm64 //examples/... the same example and real-model tests,
#         //tests/real_models/...               cross-compiled for aarch64 and run under qemu
#   2a. bazel test --config=x86_64_v4 (or v3)   the example tests and MobileNetV2 (a real network
#                                               through the GEMM, depthwise and fused kernels) with
#                                               the AVX-512 (AVX2) kernels, when this machine runs them
#   2b. bazel test --config=asan //examples/... the example tests under AddressSanitizer and
#                                               UndefinedBehaviorSanitizer
#   3. tests/e2e/build_failures.sh              bad models fail the build with one clear line
#   4. tests/e2e/consumer_test.sh               a separate workspace using the rules through
#                                               local_path_override, on both architectures and in
#                                               WORKSPACE mode
#   5. tests/e2e/determinism_test.sh            two checkouts, byte-identical outputs
#   6. tests/e2e/remote_cache_test.sh           a real HTTP cache (nginx) shared by two checkouts
#                                               at different paths: every codegen and compile hits
#
# Step 1 includes the analysis tests (tests/analysis) and the docs freshness test (docs/).
# tools/bazel provisions Bazel on first use. The script ends with one summary line.
set -uo pipefail
cd "$(dirname "$0")/.."
BAZEL=tools/bazel
started=$SECONDS
passed=0
failed=0
failures=()

step() {
  local name="$1"
  shift
  echo
  echo "=== $name: $*"
  if "$@"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    failures+=("$name")
  fi
}

step "x86_64 tests" "$BAZEL" test //...
step "aarch64 tests (qemu)" "$BAZEL" test --config=arm64 //examples/... //tests/real_models/...
# The kernels' AVX2/AVX-512 paths, on the best x86-64 level this machine runs.
if grep -qw avx512f /proc/cpuinfo && grep -qw avx512bw /proc/cpuinfo && grep -qw avx512vl /proc/cpuinfo; then
  step "x86-64-v4 tests" "$BAZEL" test --config=x86_64_v4 //examples/... //tools/bench/models:mobilenetv2_test
elif grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo; then
  step "x86-64-v3 tests" "$BAZEL" test --config=x86_64_v3 //examples/... //tools/bench/models:mobilenetv2_test
fi
step "sanitizers (ASan+UBSan)" "$BAZEL" test --config=asan //examples/...
step "build failures" tests/e2e/build_failures.sh
step "consumer workspace" tests/e2e/consumer_test.sh
step "determinism" tests/e2e/determinism_test.sh
step "remote cache" tests/e2e/remote_cache_test.sh

echo
echo "run_all: $((SECONDS - started)) s"
[[ $failed -eq 0 ]] || echo "failed steps: ${failures[*]}"
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
