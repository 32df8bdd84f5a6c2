#!/usr/bin/env bash
# Two clean builds from two checkouts at different paths, each with its own output base, must
# produce byte-identical generated sources, object files, libraries and binaries, for x86-64
# and aarch64. Anything else would poison a shared remote cache.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
# Outside /tmp: Bazel's sandbox hides the real /tmp from actions.
work="$repo/bazel-testwork/determinism"
BAZEL="$repo/tools/bazel"

cleanup() {
  for side in first second; do
    if [[ -d "$work/$side/checkout" ]]; then
      (cd "$work/$side/checkout" && "$BAZEL" --output_base="$work/$side/output_base" shutdown >/dev/null 2>&1) || true
    fi
    git -C "$repo" worktree remove --force "$work/$side/checkout" >/dev/null 2>&1 || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
cleanup
mkdir -p "$work"

# What a build leaves that must not depend on where or when it ran.
digest_outputs() {
  local bin="$1"
  (cd "$bin" && find examples tools -type f \
    \( -name '*.h' -o -name '*.cc' -o -name '*.S' -o -name '*.bin' -o -name '*.o' -o -name '*.a' -o -perm -u+x \) \
    ! -path '*.runfiles*' ! -name '*.sh' ! -name '*.params' ! -name '*MANIFEST' 2>/dev/null |
    LC_ALL=C sort | xargs -d '\n' sha256sum)
}

for side in first second; do
  # The second checkout sits one directory deeper, so no path length coincides either.
  dir="$work/$side/checkout"
  [[ "$side" == second ]] && dir="$work/$side/deeper/checkout"
  mkdir -p "$(dirname "$dir")"
  git -C "$repo" worktree add --detach --force "$dir" HEAD >/dev/null 2>&1
  [[ "$side" == second ]] && ln -s "$dir" "$work/$side/checkout"
  for config in x86_64 arm64; do
    (cd "$dir" && "$BAZEL" --output_base="$work/$side/output_base" build \
      --platforms="//platforms:$config" //examples/... >"$work/$side-$config.log" 2>&1) || {
      tail -n 30 "$work/$side-$config.log"
      echo "determinism: 0 passed, 1 failed"
      exit 1
    }
    bin="$(cd "$dir" && "$BAZEL" --output_base="$work/$side/output_base" info --platforms="//platforms:$config" bazel-bin 2>/dev/null)"
    digest_outputs "$bin" >"$work/$side-$config.sha256"
  done
done

passed=0
failed=0
for config in x86_64 arm64; do
  count="$(wc -l <"$work/first-$config.sha256")"
  if [[ "$count" -lt 10 ]]; then
    echo "FAIL $config: only $count outputs found; the comparison would prove nothing"
    failed=$((failed + 1))
  elif diff -u "$work/first-$config.sha256" "$work/second-$config.sha256"; then
    echo "ok   $config: $count outputs byte-identical across the two checkouts"
    passed=$((passed + 1))
  else
    echo "FAIL $config: outputs differ between the two checkouts (diff above)"
    failed=$((failed + 1))
  fi
done
echo "determinism: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
