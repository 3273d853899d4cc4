#!/usr/bin/env bash
# Identity service benchmarks, every figure beside its baseline from the same run:
#   - log-ins per second through REST against the raw argon2id hash rate (same parameters);
#   - authenticated GET /api/v1/users/me (wrk, each request a token drawn at random from
#     many members' sessions) against the legacy Rails app on this machine, and the same
#     while migrating (write-through and read-through to a legacy simulator on SQLite)
#     against the service standing alone;
#   - gRPC GetMember and VerifyAccessToken over those members and tokens (the member API
#     at scale, beside PostgreSQL's own figures: bench/member-reads.sh).
# A missing baseline (wrk, the Rails app) stops the run: no figure without its baseline.
# Usage: bench/identity.sh [seconds per measurement, default 10]
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-10}"
work=$(mktemp -d /tmp/identity-bench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
command -v wrk >/dev/null || { echo "bench: wrk is missing (apt-get install wrk)" >&2; exit 1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 1 150); do curl -s -o /dev/null "$1" && return 0; sleep 0.2; done; echo "no answer at $1" >&2; return 1; }
token_for() { # base url, email
  curl -s -o /dev/null -X POST "$1/api/v1/users" -H 'content-type: application/json' \
    -d "{\"user\":{\"email\":\"$2\",\"password\":\"benchmark-pw\",\"nickname\":\"bench\"}}"
  curl -s -X POST "$1/api/v1/sessions" -H 'content-type: application/json' \
    -d "{\"email\":\"$2\",\"password\":\"benchmark-pw\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])'
}
tokens_for() { # base url, email prefix, count: one member and session each, a token per line
  for i in $(seq 1 "$3"); do token_for "$1" "$2-$i@example.com"; done
}
wrk_me() { # label, base url, tokens file, connections, result name
  local threads=2; [ "$4" -lt 2 ] && threads=1
  TOKENS="$3" wrk -t"$threads" -c"$4" -d"${secs}s" --latency -s bench/random-token.lua "$2" > "$work/wrk.txt"
  if grep -q "Non-2xx" "$work/wrk.txt"; then cat "$work/wrk.txt" >&2; echo "bench: $1 answered errors" >&2; exit 1; fi
  local rps p50 p99
  rps=$(awk '/Requests\/sec/ {print $2}' "$work/wrk.txt")
  p50=$(awk '$1=="50%" {print $2}' "$work/wrk.txt")
  p99=$(awk '$1=="99%" {print $2}' "$work/wrk.txt")
  printf '%-40s %10s req/s  p50 %8s  p99 %8s  (%s connections)\n' "$1" "$rps" "$p50" "$p99" "$4"
  echo "$rps" > "$work/$5.rps"
}

cargo build --release --locked -p identity -p member-load -p legacy-sim >/dev/null
bin="${CARGO_TARGET_DIR:-target}/release"

http=$(free_port); grpc=$(free_port)
"$bin/identity" serve --data-dir "$work/identity" --http-addr "127.0.0.1:$http" --grpc-addr "127.0.0.1:$grpc" --log-format text >"$work/identity.log" 2>&1 &
pids+=($!); wait_http "http://127.0.0.1:$http/healthz"

echo "== passwords (argon2id m=19456 KiB, t=2, p=1)"
"$bin/member-load" argon2 --seconds "$secs" | tee "$work/argon2.txt"
"$bin/member-load" login --base-url "http://127.0.0.1:$http" --seconds "$secs" --concurrency 4 | tee "$work/login.txt"
raw=$(awk '{print $3}' "$work/argon2.txt"); logins=$(awk '{print $3}' "$work/login.txt")
python3 -c "print(f'log-in rate / raw hash rate: {float($logins)/float($raw):.2f}x (goal >= 0.9x)')"

echo "== GET /api/v1/users/me (200 members' tokens for the service, 20 for Rails, drawn at random)"
[ -f tests/legacy-rails/start.sh ] && command -v ruby >/dev/null || {
  echo "bench: the Rails app (ruby, tests/legacy-rails; tests/setup.sh installs it) is missing: no baseline, no figures" >&2; exit 1; }
tokens_for "http://127.0.0.1:$http" bench-me 200 >"$work/tokens.txt"
wrk_me "identity (SQLite), 64 connections" "http://127.0.0.1:$http" "$work/tokens.txt" 64 identity64
wrk_me "identity (SQLite), 1 connection" "http://127.0.0.1:$http" "$work/tokens.txt" 1 identity1
rails=$(free_port)
tests/legacy-rails/start.sh --port "$rails" --database-url "sqlite3:$work/rails.sqlite3" >"$work/rails.log" 2>&1 &
pids+=($!); wait_http "http://127.0.0.1:$rails/api/v1/users/0"
tokens_for "http://127.0.0.1:$rails" bench-me 20 >"$work/rails-tokens.txt"
wrk_me "legacy Rails (SQLite), 1 connection" "http://127.0.0.1:$rails" "$work/rails-tokens.txt" 1 rails1
wrk_me "legacy Rails (SQLite), 64 connections" "http://127.0.0.1:$rails" "$work/rails-tokens.txt" 64 rails64
python3 -c "print(f'identity / Rails throughput: {float(open(\"$work/identity64.rps\").read())/float(open(\"$work/rails1.rps\").read()):.1f}x of Rails one-client (goal 30x), {float(open(\"$work/identity64.rps\").read())/float(open(\"$work/rails64.rps\").read()):.1f}x of Rails at 64 connections')"

echo "== GET /api/v1/users/me while migrating (each request also reads its legacy session and member)"
sim=$(free_port)
"$bin/legacy-sim" --addr "127.0.0.1:$sim" --database-url "sqlite://$work/legacy.sqlite3?mode=rwc" --bcrypt-cost 4 >"$work/sim.log" 2>&1 &
pids+=($!); wait_http "http://127.0.0.1:$sim/api/v1/users/0"
mhttp=$(free_port); mgrpc=$(free_port)
"$bin/identity" serve --data-dir "$work/migrating" --http-addr "127.0.0.1:$mhttp" --grpc-addr "127.0.0.1:$mgrpc" \
  --legacy-database-url "sqlite://$work/legacy.sqlite3?mode=rwc" --legacy-bcrypt-cost 4 --log-format text >"$work/migrating.log" 2>&1 &
pids+=($!); wait_http "http://127.0.0.1:$mhttp/healthz"
tokens_for "http://127.0.0.1:$mhttp" bench-migrating 100 >"$work/migrating-tokens.txt"
wrk_me "identity (SQLite) again, 64 connections" "http://127.0.0.1:$http" "$work/tokens.txt" 64 standalone64
wrk_me "identity migrating, 64 connections" "http://127.0.0.1:$mhttp" "$work/migrating-tokens.txt" 64 migrating64
python3 -c "print(f'migrating / standing alone: {float(open(\"$work/migrating64.rps\").read())/float(open(\"$work/standalone64.rps\").read()):.2f}x')"

echo "== gRPC over the 200 members and their tokens (2 connections x 16 calls in flight)"
for method in get verify; do
  "$bin/member-load" grpc-reads --addr "http://127.0.0.1:$grpc" --method "$method" --members 200 \
    --tokens "$work/tokens.txt" --seconds "$secs"
done
