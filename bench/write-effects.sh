#!/usr/bin/env bash
# What comparing every write's effect costs, in one run: profile changes (PATCH
# /api/v1/users/me, wrk, 32 connections, 1,000 members' tokens drawn at random, a new
# nickname each) through the migration proxy, with `comparison.write_effects` on beside
# the same proxy with it off (the baseline), while migrating on PostgreSQL (the legacy
# simulator on its own database as the legacy, the identity service migrating from it).
# At 0% the legacy serves every write and the effect reaches the identity database by
# the sync (asked again until it has); at 100% the identity service serves it and writes
# it through. Each pair runs twice, interleaved (off, on, off, on); the ratio is the
# figure. The client's answer never waits for the question: the cost is the extra load
# (one question per write, reading both databases) on the same 2 cores. Also printed:
# the questions' results, and what a mismatching one named (a benchmark reports; it
# does not assert).
# Then what sending refreshes first costs their clients (`comparison.replay_first`):
# token refreshes at 0% (the legacy serves them), 16 clients each refreshing with the
# token its last refresh gave it (`member-load refreshes`), with `replay_first:
# {sessions: [refresh]}` beside the same proxy without it, interleaved twice: the dry
# run's time is on every refresh's path.
# Usage: bench/write-effects.sh [seconds per measurement, default 10]
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-10}"
case "$secs" in '' | *[!0-9]*) echo "usage: bench/write-effects.sh [seconds]" >&2; exit 64 ;; esac
work=$(mktemp -d /tmp/write-effects.XXXXXX)
chmod 755 "$work"
pids=()
pg_stop=""
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  [ -n "$pg_stop" ] && eval "$pg_stop" || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
pgbin=""; command -v initdb >/dev/null 2>&1 || pgbin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)/"
for tool in "${pgbin}initdb" "${pgbin}pg_ctl" psql wrk; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is missing: no figures" >&2; exit 1; }
done
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 1 150); do curl -s -o /dev/null "$1" && return 0; sleep 0.2; done; echo "bench: no answer at $1" >&2; exit 1; }

echo "== building (release)"
cargo build --release --locked -q -p identity -p migration-proxy -p legacy-sim -p member-load
bin="${CARGO_TARGET_DIR:-target}/release"

echo "== PostgreSQL from the machine's binaries"
pg_port=$(free_port)
mkdir -p "$work/pg"
as_pg() { if [ "$(id -u)" = 0 ]; then chown -R postgres:postgres "$work/pg"; su postgres -s /bin/sh -c "$1"; else sh -c "$1"; fi; }
as_pg "${pgbin}initdb -D '$work/pg/data' -U postgres --auth=trust --no-sync -E UTF8 --locale=C.UTF-8 >/dev/null"
as_pg "${pgbin}pg_ctl -D '$work/pg/data' -l '$work/pg/log' -o \"-p $pg_port -k '$work/pg' -c listen_addresses=127.0.0.1 -c max_connections=200 -c shared_buffers=256MB\" -w start >/dev/null"
pg_stop="as_pg \"${pgbin}pg_ctl -D '$work/pg/data' -m fast -w stop >/dev/null\""
pg="postgres://postgres@127.0.0.1:$pg_port"
psql "$pg/postgres" -qc "CREATE DATABASE legacy" -c "CREATE DATABASE identity" >/dev/null

echo "== 5,000 members on the legacy, back-filled, 1,000 sessions"
"$bin/member-load" seed-legacy --database-url "$pg/legacy" --members 5000 --password benchmark-pw
"$bin/identity" migrate --database-url "$pg/identity" --legacy-database-url "$pg/legacy" backfill >/dev/null
lport=$(free_port)
"$bin/legacy-sim" --addr "127.0.0.1:$lport" --database-url "$pg/legacy" --bcrypt-cost 4 >"$work/legacy.log" 2>&1 &
pids+=($!); wait_http "http://127.0.0.1:$lport/api/v1/users/0"
ihttp=$(free_port); igrpc=$(free_port)
"$bin/identity" serve --database-url "$pg/identity" --legacy-database-url "$pg/legacy" --legacy-bcrypt-cost 4 \
  --data-dir "$work/identity" --http-addr "127.0.0.1:$ihttp" --grpc-addr "127.0.0.1:$igrpc" \
  --argon2-memory-kib 1024 --argon2-iterations 1 --log-format text >"$work/identity.log" 2>&1 &
pids+=($!); wait_http "http://127.0.0.1:$ihttp/healthz"
"$bin/member-load" tokens --base-url "http://127.0.0.1:$ihttp" --members 5000 --count 1000 --password benchmark-pw >"$work/tokens.txt"

results="$work/results.tsv"; : >"$results"
refresh_results="$work/refresh.tsv"; : >"$refresh_results"
run() { # percent effects(true|false) round [load: patch|refresh] [replay_first(true|false)]
  local port admin load="${4:-patch}" first=""
  [ "${5:-false}" = true ] && first=$'\n  replay_first: {sessions: [refresh]}'
  port=$(free_port); admin=$(free_port)
  sed -e "s/weight: 99$/weight: $((100 - $1))/" -e "s/weight: 1$/weight: $1/" istio/virtualservice-member-api.yaml >"$work/vs.yaml"
  cat >"$work/proxy.yaml" <<YAML
listen: 127.0.0.1:$port
admin_listen: 127.0.0.1:$admin
virtual_service: member-api
upstreams:
  legacy-api.members.svc.cluster.local: {address: "127.0.0.1:$lport", role: legacy}
  identity.members.svc.cluster.local: {address: "127.0.0.1:$ihttp", role: new}
admin_token: bench-admin-token-0123456789
comparison:
  ignore: ["\$..created_at", "\$..updated_at", "\$..token", "\$..refresh_token", "\$..expires_at"]
  learn_noise: false
  write_effects: $2$first
guard: {min_requests: 100000000, min_comparisons: 100000000}
YAML
  "$bin/migration-proxy" --virtual-service "$work/vs.yaml" --config "$work/proxy.yaml" --workers 1 >"$work/proxy.log" 2>&1 &
  local proxy=$!
  wait_http "http://127.0.0.1:$admin/healthz"
  if [ "$load" = refresh ]; then
    local line
    line=$("$bin/member-load" refreshes --base-url "http://127.0.0.1:$port" --members 5000 --password benchmark-pw \
      --seconds "$secs" --concurrency 16)
    printf 'refresh, replay_first %s #%s: %s\n' "${5:-false}" "$3" "$line"
    printf '%s\t%s\n' "${5:-false}" "$line" >>"$refresh_results"
    curl -s "http://127.0.0.1:$admin/metrics" | grep -E '^proxy_writes_total\{route="sessions",kind="refresh"' | sed 's/^/    /' || true
    kill "$proxy"; wait "$proxy" 2>/dev/null || true
    return
  fi
  TOKENS="$work/tokens.txt" wrk -t2 -c32 -d"${secs}s" --latency -s bench/random-patch.lua "http://127.0.0.1:$port" >"$work/wrk.txt"
  grep -q "Non-2xx" "$work/wrk.txt" && { cat "$work/wrk.txt" >&2; echo "bench: the writes answered errors" >&2; exit 1; }
  sleep 6 # the last questions settle
  local label="$1% effects $2"
  awk -v l="$label" '/Requests\/sec/ {rps = $2} $1 == "99%" {p = $2; if (p ~ /us$/) p = p / 1000; else if (p ~ /ms$/) p = p + 0; else if (p ~ /s$/) p = p * 1000}
    END { print l "\t" rps "\t" p }' "$work/wrk.txt" >>"$results"
  printf '%s #%s: %s writes/s\n' "$label" "$3" "$(awk '/Requests\/sec/ {print $2}' "$work/wrk.txt")"
  curl -s "http://127.0.0.1:$admin/metrics" | grep -E '^proxy_writes_total\{route="users-me",kind="profile_update",compared="effect"|^proxy_comparisons_total\{route="users-me",result="skipped' | sed 's/^/    /' || true
  # What a mismatching effect named (field names only), if any.
  curl -s -H "Authorization: Bearer bench-admin-token-0123456789" "http://127.0.0.1:$admin/admin/samples" |
    python3 -c 'import json,sys; [print("    sample:", s["differences"]) for r in json.load(sys.stdin)["routes"] for s in r["samples"] if any("effect:" in d for d in s["differences"])][:3]' || true
  kill "$proxy"; wait "$proxy" 2>/dev/null || true
}
for percent in 0 100; do
  echo "== PATCH /api/v1/users/me through the proxy at $percent%"
  for round in 1 2; do
    run "$percent" false "$round"
    run "$percent" true "$round"
  done
done
echo "== POST /api/v1/sessions/refresh through the proxy at 0%, replay_first off and on"
for round in 1 2; do
  run 0 true "$round" refresh false
  run 0 true "$round" refresh true
done

echo
python3 - "$results" <<'PY'
import sys, statistics
rows = {}
for line in open(sys.argv[1]):
    label, rate, p99 = line.rstrip("\n").split("\t")
    rows.setdefault(label, []).append((float(rate), float(p99)))
print(f"{'writes through the proxy':<28} {'writes/s (median of 2)':>22} {'p99 ms (worst)':>15}  ratio to effects off")
for percent in (0, 100):
    off = rows[f"{percent}% effects false"]
    on = rows[f"{percent}% effects true"]
    for name, r in ((f"{percent}%, effects off", off), (f"{percent}%, effects on", on)):
        print(f"{name:<28} {statistics.median(x for x, _ in r):>22.0f} {max(p for _, p in r):>15.2f}  "
              f"{statistics.median(x for x, _ in r) / statistics.median(x for x, _ in off):.2f}x")
PY
python3 - "$refresh_results" <<'PY'
import re, sys, statistics
runs = {}
for line in open(sys.argv[1]):
    first, text = line.rstrip("\n").split("\t", 1)
    m = re.search(r"([\d.]+) req/s, p50 ([\d.]+) ms, p99 ([\d.]+) ms", text)
    runs.setdefault(first, []).append(tuple(float(x) for x in m.groups()))
off, on = runs.get("false", []), runs.get("true", [])
if off and on:
    med = lambda r, i: statistics.median(x[i] for x in r)
    print()
    print(f"{'refreshes at 0%':<28} {'refreshes/s':>12} {'p50 ms':>8} {'p99 ms':>8}")
    for name, r in (("replay_first off", off), ("replay_first on", on)):
        print(f"{name:<28} {med(r, 0):>12.0f} {med(r, 1):>8.2f} {med(r, 2):>8.2f}")
    print(f"replay_first's price: p50 +{med(on, 1) - med(off, 1):.2f} ms ({med(on, 1) / med(off, 1):.2f}x), "
          f"p99 {med(on, 2) / med(off, 2):.2f}x, rate {med(on, 0) / med(off, 0):.2f}x")
PY
