#!/usr/bin/env bash
# Each model in //tests/bad_models must fail the build with one clear line that names the
# model and the problem (and, for an op, the node, op, domain and opset), and no traceback.
set -uo pipefail
cd "$(dirname "$0")/../.."
BAZEL="${BAZEL:-tools/bazel}"

passed=0
failed=0
expect_failure() {
  local target="$1" pattern="$2" log
  log="$(mktemp)"
  if "$BAZEL" build "//tests/bad_models:$target" >"$log" 2>&1; then
    echo "FAIL $target: the build succeeded"
    failed=$((failed + 1))
  elif ! grep -qE "^pure_model_codegen: error: //tests/bad_models:$target\.onnx: $pattern" "$log"; then
    echo "FAIL $target: no error line matching: $pattern"
    grep -E "error" "$log" | head -n 5
    failed=$((failed + 1))
  elif grep -q "Traceback" "$log"; then
    echo "FAIL $target: the generator printed a Python traceback"
    failed=$((failed + 1))
  else
    echo "ok   $target: $(grep -E '^pure_model_codegen: error:' "$log" | head -n 1)"
    passed=$((passed + 1))
  fi
  rm -f "$log"
}

expect_failure unsupported_op "node 'mystery_node' \(ai\.onnx\.ImageDecoder, opset 20\): unsupported operator"
expect_failure dynamic "input 'x' dimension 0 \('batch'\) is dynamic; bind it with input_shapes"
expect_failure truncated "not an ONNX model"
expect_failure not_onnx "not an ONNX model"

echo "build_failures: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
