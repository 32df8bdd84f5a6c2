#!/usr/bin/env bash
# stardoc's Markdown renderer (the prebuilt jar stardoc ships) on the system's Java. See the
# comment on :renderer in BUILD.bazel for why not stardoc's own java_binary.

# --- begin runfiles.bash initialization v3 ---
# Copy-pasted from the Bazel Bash runfiles library v3.
set -uo pipefail; set +e; f=bazel_tools/tools/bash/runfiles/runfiles.bash
# shellcheck disable=SC1090
source "${RUNFILES_DIR:-/dev/null}/$f" 2>/dev/null || \
  source "$(grep -sm1 "^$f " "${RUNFILES_MANIFEST_FILE:-/dev/null}" | cut -f2- -d' ')" 2>/dev/null || \
  source "$0.runfiles/$f" 2>/dev/null || \
  source "$(grep -sm1 "^$f " "$0.runfiles_manifest" | cut -f2- -d' ')" 2>/dev/null || \
  source "$(grep -sm1 "^$f " "$0.exe.runfiles_manifest" | cut -f2- -d' ')" 2>/dev/null || \
  { echo>&2 "ERROR: cannot find $f"; exit 1; }; f=; set -e
# --- end runfiles.bash initialization v3 ---

jar="$(rlocation stardoc/stardoc/renderer_prebuilt.jar)"
if [[ ! -f "$jar" ]]; then
  echo >&2 "renderer: stardoc's renderer_prebuilt.jar is not in the runfiles"
  exit 1
fi
if ! command -v java >/dev/null; then
  echo >&2 "renderer: no java on PATH ($PATH); rendering the docs needs a Java runtime"
  exit 1
fi
# JDK 24 and later warn on every run that the protobuf inside the jar uses sun.misc.Unsafe; the
# flag that allows it quietly is an error on older JDKs.
flags=()
if java --sun-misc-unsafe-memory-access=allow -version >/dev/null 2>&1; then
  flags+=(--sun-misc-unsafe-memory-access=allow)
fi
exec java "${flags[@]}" -cp "$jar" com.google.devtools.build.stardoc.renderer.RendererMain "$@"
