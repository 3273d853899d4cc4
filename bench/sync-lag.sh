#!/usr/bin/env bash
# The continuous sync's lag on SQLite and on PostgreSQL: legacy members changed at a
# steady rate (50/s, then 500/s) while the sync runs with the service's defaults
# (500 ms interval, 30 s look-back); each change timed from the legacy's commit until
# the identity database shows it, beside the same changes made there directly (the
# baseline: what watching alone costs). The goal: p99 under 2 s.
# Usage: bench/sync-lag.sh [seconds per run]
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-20}"
work=$(mktemp -d /tmp/sync-lag-bench.XXXXXX)
chmod 755 "$work"
pg_stop=""
cleanup() { [ -n "$pg_stop" ] && eval "$pg_stop" || true; rm -rf "$work"; }
trap cleanup EXIT
cargo build --release --locked -q -p member-load
bin="${CARGO_TARGET_DIR:-target}/release/member-load"

for rate in 50 500; do
  echo "== SQLite, $rate changes/s"
  "$bin" sync-lag --rate "$rate" --seconds "$secs" \
    --legacy-url "sqlite://$work/legacy-$rate.sqlite3?mode=rwc" --identity-url "sqlite://$work/identity-$rate.sqlite3?mode=rwc"
done

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
pgbin=""; command -v initdb >/dev/null 2>&1 || pgbin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)/"
as_pg() { if [ "$(id -u)" = 0 ]; then chown -R postgres:postgres "$work"; su postgres -s /bin/sh -c "$1"; else sh -c "$1"; fi; }
as_pg "${pgbin}initdb -D '$work/pg' -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null"
as_pg "${pgbin}pg_ctl -D '$work/pg' -l '$work/pg.log' -o \"-p $port -k '$work' -c listen_addresses=127.0.0.1\" -w start >/dev/null"
pg_stop="as_pg \"${pgbin}pg_ctl -D '$work/pg' -m fast -w stop >/dev/null\""
for rate in 50 500; do
  echo "== PostgreSQL, $rate changes/s"
  psql "postgres://postgres@127.0.0.1:$port/postgres" -qc "CREATE DATABASE legacy_$rate" -c "CREATE DATABASE identity_$rate"
  "$bin" sync-lag --rate "$rate" --seconds "$secs" \
    --legacy-url "postgres://postgres@127.0.0.1:$port/legacy_$rate" --identity-url "postgres://postgres@127.0.0.1:$port/identity_$rate"
done
