#!/usr/bin/env bash
# The backfill benchmark on SQLite and on PostgreSQL: N legacy members (default one
# million) copied by `identity migrate backfill`'s code, beside a plain read of the same
# rows in the same run (the baseline), then verified.
# Usage: bench/backfill.sh [members]
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-1000000}"
work=$(mktemp -d /tmp/backfill-bench.XXXXXX)
chmod 755 "$work"
pg_stop=""
cleanup() { [ -n "$pg_stop" ] && eval "$pg_stop" || true; rm -rf "$work"; }
trap cleanup EXIT
cargo build --release --locked -q -p member-load
bin="${CARGO_TARGET_DIR:-target}/release/member-load"

echo "== SQLite"
"$bin" backfill --members "$n" --legacy-url "sqlite://$work/legacy.sqlite3?mode=rwc" --identity-url "sqlite://$work/identity.sqlite3?mode=rwc"

echo "== PostgreSQL"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
pgbin=""; command -v initdb >/dev/null 2>&1 || pgbin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)/"
as_pg() { if [ "$(id -u)" = 0 ]; then chown -R postgres:postgres "$work"; su postgres -s /bin/sh -c "$1"; else sh -c "$1"; fi; }
as_pg "${pgbin}initdb -D '$work/pg' -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null"
as_pg "${pgbin}pg_ctl -D '$work/pg' -l '$work/pg.log' -o \"-p $port -k '$work' -c listen_addresses=127.0.0.1\" -w start >/dev/null"
pg_stop="as_pg \"${pgbin}pg_ctl -D '$work/pg' -m fast -w stop >/dev/null\""
psql "postgres://postgres@127.0.0.1:$port/postgres" -qc "CREATE DATABASE legacy" -c "CREATE DATABASE identity"
"$bin" backfill --members "$n" --legacy-url "postgres://postgres@127.0.0.1:$port/legacy" --identity-url "postgres://postgres@127.0.0.1:$port/identity"
