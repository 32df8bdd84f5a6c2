#!/usr/bin/env bash
# A real HTTP remote cache works for these rules across checkouts.
#
# nginx's WebDAV module serves as a Bazel HTTP cache on 127.0.0.1. Checkout a of the committed
# HEAD builds //examples/... for x86-64 and aarch64 and fills the cache; its output base is then
# wiped. Checkout b, at another path with a fresh output base, builds the same: Bazel must report
# remote cache hits, and its execution log must show that every PureModelCodegen, CppCompile
# and PureModelReference spawn was a remote cache hit. A miss means the action's key depends on
# where the checkout or the output base lives; the log comparison names the difference.
#
# Everything lives under bazel-testwork/remote_cache (outside /tmp, which Bazel's sandbox hides);
# the checkouts, output bases and cache are removed at the end, the logs stay in .../logs.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
work="$repo/bazel-testwork/remote_cache"
logs="$work/logs"
ng="$work/nginx"
started=$SECONDS
passed=0
failed=0
nginx_pid=""

# Checkout a's own launcher (HEAD's), set once the checkouts exist: the launcher of the working
# tree may expect a newer .bazelrc than HEAD has. BAZEL overrides it for the builds.
launcher=""
in_root() { "$launcher" --pure_model_exec "$@"; }
ok() { echo "ok   $*"; passed=$((passed + 1)); }
fail() { echo "FAIL $*"; failed=$((failed + 1)); }
finish() {
  echo "remote_cache: $((SECONDS - started)) s"
  echo "remote_cache: $passed passed, $failed failed"
  [[ $failed -eq 0 ]] && exit 0
  exit 1
}
# A failure that makes the remaining checks meaningless.
fatal() { fail "$*"; finish; }

stop_nginx() {
  # $nginx_pid is the background job (the launcher, which waits for nginx); the master's pid is
  # in the pid file nginx writes.
  local master="" children="" i
  [[ -f "$ng/nginx.pid" ]] && master="$(cat "$ng/nginx.pid")"
  if [[ -n "$master" ]] && kill -0 "$master" 2>/dev/null; then
    children="$(pgrep -P "$master" || true)"
    kill -TERM "$master" 2>/dev/null || true
  elif [[ -n "$nginx_pid" ]]; then
    kill -TERM "$nginx_pid" 2>/dev/null || true
  fi
  for i in $(seq 50); do
    [[ -n "$master" ]] && kill -0 "$master" 2>/dev/null || break
    sleep 0.1
  done
  if [[ -n "$master" ]] && kill -0 "$master" 2>/dev/null; then
    # shellcheck disable=SC2086  # the worker pids, one per word
    kill -KILL "$master" $children 2>/dev/null || true
  fi
  if [[ -n "$nginx_pid" ]]; then
    wait "$nginx_pid" 2>/dev/null || true
  fi
  nginx_pid=""
}

remove_tree() {
  # Bazel leaves read-only directories behind.
  [[ -e "$1" ]] || return 0
  chmod -R u+w "$1" 2>/dev/null || true
  rm -rf "$1"
}

cleanup() {
  local rc=$?
  set +e
  stop_nginx
  local side
  for side in a b; do
    # Only this test's own servers: each has its own output base.
    if [[ -n "${BAZEL:-}" && -d "$work/ob_$side" && -d "$work/$side" ]]; then
      (cd "$work/$side" && "$BAZEL" --output_base="$work/ob_$side" shutdown >/dev/null 2>&1)
    fi
  done
  for side in a b; do
    remove_tree "$work/ob_$side"
    remove_tree "$work/$side"
  done
  remove_tree "$work/cache"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A run killed before its trap could leave its Bazel servers and nginx behind: stop those (found
# by their pid files, and only if the process still names this work dir).
for pidfile in "$work"/ob_*/server/server.pid.txt "$ng/nginx.pid"; do
  [[ -f "$pidfile" ]] || continue
  pid="$(cat "$pidfile")"
  if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$work"; then
    echo "stopping process $pid left behind by an earlier run"
    kill -TERM "$pid" 2>/dev/null || true
    sleep 2
  fi
done
remove_tree "$work"
mkdir -p "$logs" "$ng" "$work/cache"

# --- 1. two checkouts of HEAD at different paths --------------------------------------------------
head="$(git -C "$repo" rev-parse HEAD)"
for side in a b; do
  git clone --quiet --no-checkout "$repo" "$work/$side"
  git -C "$work/$side" checkout --quiet --detach "$head"
done
echo "checkouts of ${head:0:12}: $work/a and $work/b"
launcher="$work/a/tools/bazel"
BAZEL="${BAZEL:-$launcher}"

# --- 2. nginx as an HTTP cache on a free port of 127.0.0.1 ---------------------------------
start_nginx() {
  local port="$1"
  mkdir -p "$ng"/{client_body,proxy,fastcgi,uwsgi,scgi}
  {
    # Workers run as the master's user unless nginx starts as root.
    [[ "$(id -u)" == 0 ]] && echo "user root;"
    cat <<EOF
worker_processes 1;
pid $ng/nginx.pid;
error_log $ng/error.log warn;
events { worker_connections 256; }
http {
  log_format cache '\$request_method \$status \$body_bytes_sent \$request_length \$uri';
  access_log $ng/access.log cache;
  client_body_temp_path $ng/client_body;
  proxy_temp_path $ng/proxy;
  fastcgi_temp_path $ng/fastcgi;
  uwsgi_temp_path $ng/uwsgi;
  scgi_temp_path $ng/scgi;
  server {
    listen 127.0.0.1:$port;
    location / {
      root $work/cache;
      dav_methods PUT;
      create_full_put_path on;
      client_max_body_size 0;
    }
  }
}
EOF
  } >"$ng/nginx.conf"
  rm -f "$ng/nginx.pid"
  # daemon off: nginx stays the child of the launcher, a background job of this script.
  in_root nginx -p "$ng/" -c "$ng/nginx.conf" -e "$ng/error.log" -g 'daemon off;' \
    >>"$ng/stdout.log" 2>&1 &
  nginx_pid=$!
  local i
  for i in $(seq 100); do
    kill -0 "$nginx_pid" 2>/dev/null || return 1
    if [[ -f "$ng/nginx.pid" ]] && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  return 1
}

port=""
for attempt in 1 2 3 4 5; do
  candidate="$(in_root python3 -c "
import socket
s = socket.socket()
s.bind(('127.0.0.1', 0))
print(s.getsockname()[1])")"
  if start_nginx "$candidate"; then
    port="$candidate"
    break
  fi
  echo "nginx did not start on port $candidate (attempt $attempt):"
  tail -n 3 "$ng/error.log" "$ng/stdout.log" 2>/dev/null || true
  stop_nginx
done
[[ -n "$port" ]] || fatal "nginx did not start as an HTTP cache"
cache_url="http://127.0.0.1:$port"

# The cache answers like Bazel expects: PUT stores (creating directories), GET returns, a missing
# key is 404.
if in_root python3 - "$cache_url" <<'EOF'
import sys
import urllib.error
import urllib.request

url = sys.argv[1]
body = b"rules_pure_model remote cache probe"
urllib.request.urlopen(urllib.request.Request(url + "/cas/probe/x", data=body, method="PUT"), timeout=10)
assert urllib.request.urlopen(url + "/cas/probe/x", timeout=10).read() == body, "GET returned other bytes"
try:
    urllib.request.urlopen(url + "/ac/absent", timeout=10)
    sys.exit("GET of a missing key did not fail")
except urllib.error.HTTPError as e:
    assert e.code == 404, e.code
EOF
then
  rm -rf "$work/cache/cas/probe"
  : >"$ng/access.log"
  ok "nginx (master pid $(cat "$ng/nginx.pid")) serves a WebDAV HTTP cache at $cache_url"
else
  fatal "nginx at $cache_url does not store and return blobs (see $ng/error.log)"
fi


# --- builds -------------------------------------------------------------------------------------
# --disk_cache= : a disk cache set in someone's bazelrc would answer before the remote cache.
common_flags=(
  --remote_cache="$cache_url"
  --disk_cache=
  --color=no
  --curses=no
)
platform_flags() {
  case "$1" in
    x86_64) echo --platforms=//platforms:x86_64 ;;
    arm64) echo --config=arm64 ;;
  esac
}

# build SIDE PLATFORM: builds //examples/... in checkout SIDE with its own output base, keeps
# Bazel's output and the execution log in $logs.
build() {
  local side="$1" platform="$2" rc=0 t0=$SECONDS
  (cd "$work/$side" && "$BAZEL" --output_base="$work/ob_$side" build \
    "${common_flags[@]}" "$(platform_flags "$platform")" \
    --execution_log_json_file="$logs/${side}_$platform.exec.json" \
    //examples/...) >"$logs/${side}_$platform.log" 2>&1 || rc=$?
  echo "   build in $side for $platform: exit $rc, $((SECONDS - t0)) s"
  if [[ $rc -ne 0 ]]; then
    tail -n 30 "$logs/${side}_$platform.log"
    return 1
  fi
  # Upload or download problems are only warnings: Bazel then builds locally.
  if grep -E "WARNING: (Remote Cache|Writing to Remote Cache|Reading from Remote Cache)|Failed to (upload|fetch|query)" \
    "$logs/${side}_$platform.log"; then
    echo "   (the remote cache reported errors, above)"
    return 1
  fi
}

summary_lines() { grep -E '^INFO: [0-9]+ process(es)?: ' "$logs/$1.log" || true; }

# --- 3. checkout a fills the cache ---------------------------------------------------------------
for platform in x86_64 arm64; do
  if build a "$platform"; then
    ok "checkout a builds //examples/... for $platform: $(summary_lines "a_$platform")"
  else
    fatal "checkout a does not build //examples/... for $platform (log: $logs/a_$platform.log)"
  fi
done
ac_entries=$(find "$work/cache/ac" -type f 2>/dev/null | wc -l)
cas_entries=$(find "$work/cache/cas" -type f 2>/dev/null | wc -l)
if [[ $ac_entries -gt 0 && $cas_entries -gt 0 ]]; then
  ok "the cache holds $ac_entries action results and $cas_entries blobs ($(du -sh "$work/cache" | cut -f1))"
else
  fatal "checkout a uploaded nothing: $ac_entries action results, $cas_entries blobs"
fi

# --- 4. wipe a's output base; checkout b builds from the cache ---------------------------------------
(cd "$work/a" && "$BAZEL" --output_base="$work/ob_a" clean --expunge >/dev/null 2>&1) || true
remove_tree "$work/ob_a"
if [[ -e "$work/ob_a" ]]; then
  fatal "checkout a's output base is still there"
fi
ok "checkout a's output base is gone"
: >"$ng/access.log"

second_summaries=()
for platform in x86_64 arm64; do
  if ! build b "$platform"; then
    fatal "checkout b does not build //examples/... for $platform (log: $logs/b_$platform.log)"
  fi
  # --- 5. Bazel's own summary, then every spawn of the execution log ---------------------------
  summary="$(summary_lines "b_$platform")"
  second_summaries+=("$platform: $summary")
  if grep -q "remote cache hit" <<<"$summary"; then
    ok "checkout b, $platform: $summary"
  else
    fail "checkout b, $platform: no remote cache hit in Bazel's summary: ${summary:-<none>}"
  fi
  echo "   execution log $logs/b_$platform.exec.json:"
  if in_root python3 "$repo/tests/e2e/exec_log_cache_hits.py" \
    --require=PureModelCodegen,CppCompile --optional=PureModelReference \
    --baseline="$logs/a_$platform.exec.json" "$logs/b_$platform.exec.json"; then
    ok "checkout b, $platform: every PureModelCodegen, CppCompile and PureModelReference spawn was a remote cache hit"
  else
    fail "checkout b, $platform: spawns that must hit the remote cache missed it (above)"
  fi
done

# --- 6. summary ---------------------------------------------------------------------------------
echo
echo "Second build (checkout b, empty output base), Bazel's summaries:"
printf '  %s\n' "${second_summaries[@]}"
echo "HTTP requests to the cache during the second build (method status: count):"
awk '{ n[$1 " " $2]++ } END { for (k in n) printf "  %s: %d\n", k, n[k] }' "$ng/access.log" | sort
finish
