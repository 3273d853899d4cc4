#!/usr/bin/env bash
# The member API for other services, beside what the database underneath gives, in one
# run, as other services call it: 10,000 members (one in twenty withdrawn; 5% of the ids
# read do not exist), 1,000 sessions' tokens, 2 HTTP/2 connections x 16 calls in flight
# (32 at once), each call a random member or token.
#   PostgreSQL: GetMember beside pgbench -M prepared -c 32 point selects of the same rows;
#   BatchGetMembers of 100 ids beside pgbench selects of 100 rows; VerifyAccessToken
#   beside GetMember, and beside grpc.health.v1.Health/Check on the same server (a call
#   that does no work: what the HTTP/2 and gRPC stack costs, the ceiling of any call).
#   SQLite: GetMember and BatchGetMembers beside plain reads of the same rows on the same
#   file (member-load sqlite-reads, the same concurrency).
#   The change stream: members renamed at 500/s through one replica, followed on it and
#   on a second replica of the same database; each change's lag from its commit to its
#   arrival, beside PostgreSQL's own NOTIFY -> LISTEN at the same rate.
#   REST GET /api/v1/users/me (wrk, 64 connections, 1,000 members' tokens drawn at
#   random, 200,000 past sessions in each side's table) while migrating (each request also reads its legacy session and member on
#   the legacy's PostgreSQL database) beside the same service standing alone on the same
#   identity database.
# Each pair runs twice, interleaved (baseline, ours, baseline, ours), on one machine: the
# ratio is the figure. A missing baseline (pgbench, initdb) stops the run.
# A benchmark reports; it does not assert. Goal lines say MET or NOT MET.
# Usage: bench/member-reads.sh [seconds per measurement, default 10]
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-10}"
case "$secs" in '' | *[!0-9]*) echo "usage: bench/member-reads.sh [seconds]" >&2; exit 64 ;; esac
members=10000
work=$(mktemp -d /tmp/member-reads.XXXXXX)
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
for tool in "${pgbin}initdb" "${pgbin}pg_ctl" pgbench psql; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is missing: no baseline, no figures" >&2; exit 1; }
done
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 1 150); do curl -s -o /dev/null "$1" && return 0; sleep 0.2; done; echo "bench: no answer at $1" >&2; exit 1; }

echo "== building (release)"
cargo build --release --locked -q -p identity -p member-load
bin="${CARGO_TARGET_DIR:-target}/release"

echo "== PostgreSQL from the machine's binaries"
pg_port=$(free_port)
mkdir -p "$work/pg"
as_pg() { if [ "$(id -u)" = 0 ]; then chown -R postgres:postgres "$work/pg"; su postgres -s /bin/sh -c "$1"; else sh -c "$1"; fi; }
as_pg "${pgbin}initdb -D '$work/pg/data' -U postgres --auth=trust --no-sync -E UTF8 --locale=C.UTF-8 >/dev/null"
as_pg "${pgbin}pg_ctl -D '$work/pg/data' -l '$work/pg/log' -o \"-p $pg_port -k '$work/pg' -c listen_addresses=127.0.0.1 -c max_connections=200 -c shared_buffers=256MB\" -w start >/dev/null"
pg_stop="as_pg \"${pgbin}pg_ctl -D '$work/pg/data' -m fast -w stop >/dev/null\""
pg="postgres://postgres@127.0.0.1:$pg_port"
psql "$pg/postgres" -qc "CREATE DATABASE identity" >/dev/null

start_identity() { # name, database url -> sets http, grpc
  http=$(free_port); grpc=$(free_port)
  "$bin/identity" serve --database-url "$2" --data-dir "$work/$1" --http-addr "127.0.0.1:$http" --grpc-addr "127.0.0.1:$grpc" \
    --argon2-memory-kib 1024 --argon2-iterations 1 --log-format text >"$work/$1.log" 2>&1 &
  pids+=($!); wait_http "http://127.0.0.1:$http/healthz"
}
results="$work/results.tsv"; : >"$results"
record() { # label file: the member-load line -> "label rps p99"
  awk -v l="$1" '{ for (i = 1; i <= NF; i++) { if ($i == "req/s,") rps = $(i-1); if ($i == "p99") p99 = $(i+1) } } END { print l "\t" rps "\t" p99 }' "$2" >>"$results"
  cat "$2"
}
pgbench_run() { # label script
  pgbench -n -M prepared -c 32 -j 2 -T "$secs" -f "$2" "$pg/identity" >"$work/pgbench.txt" 2>&1 || { cat "$work/pgbench.txt" >&2; exit 1; }
  awk -v l="$1" '/^tps/ {tps = $3} /latency average/ {avg = $4} END { print l "\t" tps "\t-" }' "$work/pgbench.txt" >>"$results"
  printf '%s: %s selects/s\n' "$1" "$(awk '/^tps/ {printf "%.0f", $3}' "$work/pgbench.txt")"
}

echo "== PostgreSQL: $members members, 1000 tokens"
start_identity postgres "$pg/identity"
"$bin/member-load" seed-members --database-url "$pg/identity" --members "$members" --password benchmark-pw
"$bin/member-load" tokens --base-url "http://127.0.0.1:$http" --members "$members" --count 1000 --password benchmark-pw >"$work/tokens.txt"
cols="id, email, password_hash, nickname, phone_number, profile_image_url, created_at, updated_at, deleted_at"
space=$((members + members / 20))
printf '\\set id random(1, %d)\nSELECT %s FROM members WHERE id = :id;\n' "$space" "$cols" >"$work/get.sql"
python3 - "$work/batch.sql" "$space" "$cols" <<'EOF'
import sys
path, space, cols = sys.argv[1], int(sys.argv[2]), sys.argv[3]
lines = [f"\\set id{i} random(1, {space})" for i in range(100)]
ids = ",".join(f":id{i}" for i in range(100))
lines.append(f"SELECT {cols} FROM members WHERE deleted_at IS NULL AND id IN ({ids}) ORDER BY id;")
open(path, "w").write("\n".join(lines) + "\n")
EOF
grpc_run() { # method label
  "$bin/member-load" grpc-reads --addr "http://127.0.0.1:$grpc" --method "$1" --members "$members" \
    --tokens "$work/tokens.txt" --connections 2 --in-flight 16 --seconds "$secs" >"$work/ml.txt"
  record "$2" "$work/ml.txt"
}
for round in 1 2; do
  pgbench_run "pg point select #$round" "$work/get.sql"
  grpc_run get "GetMember (PostgreSQL) #$round"
  pgbench_run "pg 100-row select #$round" "$work/batch.sql"
  grpc_run batch "BatchGetMembers (PostgreSQL) #$round"
  grpc_run verify "VerifyAccessToken (PostgreSQL) #$round"
  grpc_run health "Health/Check (PostgreSQL) #$round"
done
echo "== the change stream: 500 renames/s, followed on two replicas"
first_grpc=$grpc
mkdir -p "$work/postgres-b"
cp "$work/postgres/jwt-signing-key.pem" "$work/postgres-b/"
start_identity postgres-b "$pg/identity"
"$bin/member-load" change-lag --write-addr "http://127.0.0.1:$first_grpc" \
  --watch-addr "http://127.0.0.1:$first_grpc" --watch-addr "http://127.0.0.1:$grpc" \
  --tokens "$work/tokens.txt" --database-url "$pg/identity" --rate 500 --seconds "$secs" | tee "$work/lag.txt"
kill "${pids[-1]}" "${pids[-2]}"; wait "${pids[-1]}" "${pids[-2]}" 2>/dev/null || true

echo "== GET /api/v1/users/me: migrating beside standing alone (PostgreSQL both sides)"
command -v wrk >/dev/null || { echo "bench: wrk is missing (apt-get install wrk): no figures" >&2; exit 1; }
psql "$pg/postgres" -qc "CREATE DATABASE legacy" -c "CREATE DATABASE identity_me" >/dev/null
"$bin/member-load" seed-legacy --database-url "$pg/legacy" --members 5000 --password benchmark-pw
mhttp=$(free_port); mgrpc=$(free_port)
"$bin/identity" serve --database-url "$pg/identity_me" --legacy-database-url "$pg/legacy" --legacy-bcrypt-cost 4 \
  --data-dir "$work/migrating" --http-addr "127.0.0.1:$mhttp" --grpc-addr "127.0.0.1:$mgrpc" \
  --argon2-memory-kib 1024 --argon2-iterations 1 --log-format text >"$work/migrating.log" 2>&1 &
pids+=($!); wait_http "http://127.0.0.1:$mhttp/healthz"
"$bin/member-load" tokens --base-url "http://127.0.0.1:$mhttp" --members 5000 --count 1000 --password benchmark-pw >"$work/me-tokens.txt"
# Sessions tables of a service that has run a while: 200,000 past sessions on each side.
psql "$pg/identity_me" -qc "INSERT INTO sessions (id, member_id, access_jti, created_at, access_expires_at, refresh_expires_at, ended_at, end_reason)
  SELECT 'past-' || g, 1 + g % 5000, 'past', 0, 0, 0, 1, 'logout' FROM generate_series(1, 200000) g" -c "ANALYZE sessions"
psql "$pg/legacy" -qc "INSERT INTO sessions (user_id, token, refresh_token, expires_at, refresh_expires_at, created_at, updated_at)
  SELECT 1 + g % 5000, 'past-' || g, 'past-r-' || g, now() - interval '1 day', now() - interval '1 day', now() - interval '2 days', now() - interval '2 days'
  FROM generate_series(1, 200000) g" -c "ANALYZE sessions"
mkdir -p "$work/alone"
cp "$work/migrating/jwt-signing-key.pem" "$work/alone/"
start_identity alone "$pg/identity_me"
me_run() { # label port
  TOKENS="$work/me-tokens.txt" wrk -t2 -c64 -d"${secs}s" --latency -s bench/random-token.lua "http://127.0.0.1:$2" >"$work/wrk.txt"
  grep -q "Non-2xx" "$work/wrk.txt" && { cat "$work/wrk.txt" >&2; echo "bench: /users/me answered errors" >&2; exit 1; }
  awk -v l="$1" '/Requests\/sec/ {rps = $2} $1 == "99%" {p = $2; if (p ~ /us$/) p = p / 1000; else if (p ~ /ms$/) p = p + 0; else if (p ~ /s$/) p = p * 1000}
    END { print l "\t" rps "\t" p }' "$work/wrk.txt" >>"$results"
  printf '%s: %s req/s\n' "$1" "$(awk '/Requests\/sec/ {print $2}' "$work/wrk.txt")"
}
for round in 1 2; do
  me_run "/users/me standing alone #$round" "$http"
  me_run "/users/me migrating #$round" "$mhttp"
done
kill "${pids[-1]}" "${pids[-2]}"; wait "${pids[-1]}" "${pids[-2]}" 2>/dev/null || true

echo "== SQLite: the same members"
sqlite="sqlite://$work/identity.sqlite3?mode=rwc"
start_identity sqlite "$sqlite"
"$bin/member-load" seed-members --database-url "$sqlite" --members "$members" --password benchmark-pw
for round in 1 2; do
  "$bin/member-load" sqlite-reads --database-url "$sqlite" --members "$members" --concurrency 32 --seconds "$secs" >"$work/sq.txt"
  head -1 "$work/sq.txt" >"$work/sq1.txt"; tail -1 "$work/sq.txt" >"$work/sq2.txt"
  record "sqlite point read #$round" "$work/sq1.txt"
  grpc_run get "GetMember (SQLite) #$round"
  record "sqlite 100-row read #$round" "$work/sq2.txt"
  grpc_run batch "BatchGetMembers (SQLite) #$round"
done

echo
python3 - "$results" <<'EOF'
import sys, statistics
rows = {}
for line in open(sys.argv[1]):
    label, rate, p99 = line.rstrip("\n").split("\t")
    name, _, _ = label.rpartition(" #")
    rows.setdefault(name, []).append((float(rate), p99))
def rate(name): return statistics.median(r for r, _ in rows[name])
def p99(name): return max(float(p) for _, p in rows[name] if p != "-")
print(f"{'call':<34} {'per second (median of 2)':>24} {'p99 ms (worst)':>15}  baseline")
pairs = [
    ("GetMember (PostgreSQL)", "pg point select"),
    ("BatchGetMembers (PostgreSQL)", "pg 100-row select"),
    ("VerifyAccessToken (PostgreSQL)", "GetMember (PostgreSQL)"),
    ("VerifyAccessToken (PostgreSQL)", "Health/Check (PostgreSQL)"),
    ("/users/me migrating", "/users/me standing alone"),
    ("GetMember (SQLite)", "sqlite point read"),
    ("BatchGetMembers (SQLite)", "sqlite 100-row read"),
]
for ours, base in pairs:
    print(f"{ours:<34} {rate(ours):>24,.0f} {p99(ours):>15.2f}  {rate(ours) / rate(base):.2f}x {base} ({rate(base):,.0f}/s)")
print()
def goal(ok, text): print(f"  {'MET    ' if ok else 'NOT MET'}  {text}")
g, pg = rate("GetMember (PostgreSQL)"), rate("pg point select")
goal(g >= 0.5 * pg, f"GetMember >= 0.5x pgbench point selects: {g / pg:.2f}x")
goal(p99("GetMember (PostgreSQL)") <= 5.0, f"GetMember p99 <= 5 ms at 32 in flight: {p99('GetMember (PostgreSQL)'):.2f} ms")
b, pb = rate("BatchGetMembers (PostgreSQL)"), rate("pg 100-row select")
goal(b >= 0.5 * pb, f"BatchGetMembers(100) >= 0.5x pgbench 100-row selects: {b / pb:.2f}x")
v = rate("VerifyAccessToken (PostgreSQL)")
goal(v >= 2 * g, f"VerifyAccessToken >= 2x GetMember: {v / g:.2f}x")
m, a = rate("/users/me migrating"), rate("/users/me standing alone")
goal(m >= 0.8 * a, f"/users/me while migrating >= 0.8x standing alone: {m / a:.2f}x")
EOF
awk '/^WatchMemberChanges on/ { for (i = 1; i <= NF; i++) if ($i == "p99") p = $(i+1); if (p + 0 > worst) worst = p + 0; n++ }
     END { printf "  %s  WatchMemberChanges p99 lag <= 100 ms at 500 changes/s (both replicas): %.2f ms\n", (n == 2 && worst <= 100) ? "MET    " : "NOT MET", worst }' "$work/lag.txt"
