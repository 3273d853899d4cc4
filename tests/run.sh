#!/usr/bin/env bash
# The whole test suite, as `.ci/run` runs it and as a developer runs it locally:
#   1. cargo test (unit, property and integration tests; SQLite and a PostgreSQL
#      cluster started here from the machine's binaries);
#   2. the parity suite against the real Rails app, the Rust legacy simulator and the
#      identity service (on SQLite and on PostgreSQL), transcripts compared; then a whole
#      rollout rehearsed with the Rails app on PostgreSQL as the legacy;
#   3. the fault rehearsal at cluster shape (tests/fault-rehearsal); the hostile-client
#      suite's cutover cases against the Rails app; the Python gRPC client and
#      schemathesis against the identity service;
#   4. a short fuzzing run of the proxy's manifest and config parsers, the manifests'
#      validation (the PodMonitors and PrometheusRule against prometheus-operator's
#      CRDs too), the alert rules' promtool unit tests, and the proxy's dashboard in
#      headless Chromium.
# Every process it starts is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
work=$(mktemp -d /tmp/member-tests.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ -n "${pg_stop:-}" ]; then eval "$pg_stop" || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

section() { printf '\n=== %s ===\n' "$*"; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_http() { # url, name, pid
  for _ in $(seq 1 150); do
    if curl -fs -o /dev/null "$1" 2>/dev/null || curl -s -o /dev/null -w '%{http_code}' "$1" 2>/dev/null | grep -q '^[1-5]'; then return 0; fi
    kill -0 "$3" 2>/dev/null || { echo "$2 exited before answering" >&2; return 1; }
    sleep 0.2
  done
  echo "$2 did not answer at $1" >&2
  return 1
}

tests/setup.sh

section "PostgreSQL for the test binaries"
pg_port=$(free_port)
pg_dir="$work/pg"
mkdir -p "$pg_dir"
as_pg() { if [ "$(id -u)" = 0 ]; then chown -R postgres:postgres "$pg_dir"; su postgres -s /bin/sh -c "$1"; else sh -c "$1"; fi; }
pgbin=""
command -v initdb >/dev/null 2>&1 || pgbin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)/"
as_pg "${pgbin}initdb -D '$pg_dir/data' -U postgres --auth=trust --no-sync -E UTF8 --locale=C.UTF-8 >/dev/null"
as_pg "${pgbin}pg_ctl -D '$pg_dir/data' -l '$pg_dir/log' -o \"-p $pg_port -k '$pg_dir' -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300\" -w start >/dev/null"
pg_stop="as_pg \"${pgbin}pg_ctl -D '$pg_dir/data' -m fast -w stop >/dev/null\""
export TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$pg_port/postgres"
echo "PostgreSQL on port $pg_port"

section "cargo test"
cargo test --workspace --locked

section "manifests: Kubernetes and Istio schemas, checkov, Dockerfiles against the binaries"
cargo build --locked -q -p migration-proxy
tests/manifests/run.sh

section "alert rules: promtool check and a unit test firing and silent for every alert"
python3 tests/observability/rules.py

section "fuzzing the VirtualService and proxy config parsers (20 s)"
cargo run --locked -q -p proxy-routing --example fuzz_parse -- --seconds 20

section "parity suite"
cargo build --locked -p identity -p legacy-sim -p parity
bin="${CARGO_TARGET_DIR:-$root/target}/debug"

rails_port=$(free_port)
BCRYPT_COST=4 tests/legacy-rails/start.sh --port "$rails_port" --database-url "sqlite3:$work/rails.sqlite3" >"$work/rails.log" 2>&1 &
pids+=($!); wait_http "http://127.0.0.1:$rails_port/api/v1/users/0" rails $! || { cat "$work/rails.log"; exit 1; }

sim_port=$(free_port)
"$bin/legacy-sim" --addr "127.0.0.1:$sim_port" --database-url "sqlite://$work/sim.sqlite3?mode=rwc" --bcrypt-cost 4 >"$work/sim.log" 2>&1 &
pids+=($!); wait_http "http://127.0.0.1:$sim_port/api/v1/users/0" legacy-sim $!

start_identity() { # name, database url -> sets id_http, id_grpc
  id_http=$(free_port); id_grpc=$(free_port)
  "$bin/identity" serve --database-url "$2" --data-dir "$work/$1" --http-addr "127.0.0.1:$id_http" --grpc-addr "127.0.0.1:$id_grpc" \
    --argon2-memory-kib 4096 --argon2-iterations 1 --refresh-reuse-grace-secs 1 >"$work/$1.log" 2>&1 &
  pids+=($!); wait_http "http://127.0.0.1:$id_http/healthz" "identity ($1)" $!
}
start_identity identity-sqlite "sqlite://$work/identity.sqlite3?mode=rwc"
sqlite_http=$id_http; sqlite_grpc=$id_grpc
psql "$TEST_POSTGRES_URL" -qc "CREATE DATABASE identity_parity" >/dev/null
start_identity identity-postgres "postgres://postgres@127.0.0.1:$pg_port/identity_parity"
pg_http=$id_http

"$bin/parity" run --scenarios "$root/tests/parity/scenarios" --base-url "http://127.0.0.1:$rails_port" --out "$work/rails.json"
"$bin/parity" run --scenarios "$root/tests/parity/scenarios" --base-url "http://127.0.0.1:$sim_port" --out "$work/sim.json"
"$bin/parity" run --scenarios "$root/tests/parity/scenarios" --base-url "http://127.0.0.1:$sqlite_http" --out "$work/identity-sqlite.json"
"$bin/parity" run --scenarios "$root/tests/parity/scenarios" --base-url "http://127.0.0.1:$pg_http" --out "$work/identity-postgres.json"
status=0
echo "--- Rails vs legacy simulator"
"$bin/parity" compare --left "$work/rails.json" --right "$work/sim.json" || status=1
echo "--- Rails vs identity (SQLite)"
"$bin/parity" compare --left "$work/rails.json" --right "$work/identity-sqlite.json" --right-kind identity || status=1
echo "--- Rails vs identity (PostgreSQL)"
"$bin/parity" compare --left "$work/rails.json" --right "$work/identity-postgres.json" --right-kind identity || status=1
[ "$status" = 0 ] || { echo "parity: divergences (see above)" >&2; exit 1; }

section "rollout rehearsal: the Rails app on PostgreSQL as the legacy, the identity service, the proxy"
# The whole rollout under traffic (0% shadowed, the autopilot along the plan to 100% on
# evidence alone and its decommission report, abort, 100%, verify, cutover, identity
# alone), with the real Rails app writing to PostgreSQL.
psql "$TEST_POSTGRES_URL" -qc "CREATE DATABASE rails_rollout" -qc "CREATE DATABASE identity_rollout" >/dev/null
rollout_port=$(free_port)
BCRYPT_COST=4 tests/legacy-rails/start.sh --port "$rollout_port" --database-url "postgres://postgres@127.0.0.1:$pg_port/rails_rollout" >"$work/rails-rollout.log" 2>&1 &
pids+=($!); wait_http "http://127.0.0.1:$rollout_port/api/v1/users/0" "rails (PostgreSQL)" $! || { cat "$work/rails-rollout.log"; exit 1; }
cargo build --locked -q -p local-stack
any=127.0.0.1:0
"$bin/local-stack" --rehearse --data-dir "$work/rollout" \
  --legacy-addr "127.0.0.1:$rollout_port" --legacy-database-url "postgres://postgres@127.0.0.1:$pg_port/rails_rollout" \
  --identity-database-url "postgres://postgres@127.0.0.1:$pg_port/identity_rollout" \
  --identity-http-addr $any --identity-grpc-addr $any --proxy-addr $any --admin-addr $any \
  --seed-members 100 --bcrypt-cost 4 --fast-hashing --clients 6 --pace-ms 20 --phase-secs 4

section "fault rehearsal at cluster shape: two identity replicas, two proxies, HAProxy, the Rails app on PostgreSQL"
# Every fault once, each at a random moment of its own step of the rollout: replicas
# killed and stopped, both databases crashed, the identity service cut off from the
# legacy's database; then every acknowledged write on both sides, verify and cutover.
# The long variant, by hand: fault-rehearsal --rounds 2 --step-secs 40
cargo build --locked -q -p fault-rehearsal -p identity -p migration-proxy
"$bin/fault-rehearsal"
# The same with one proxy beside each Rails replica (k8s/components/proxy-sidecar).
"$bin/fault-rehearsal" --placement sidecar

section "hostile clients: sessions across the cutover, with the Rails app on PostgreSQL as the legacy"
# The same cases `cargo test` ran on the simulator, now with the real Rails app (the
# one the rehearsal used): a session ended there before the cutover stays ended after;
# a member's whole life, served by the Rails app then by the identity service, leaves
# no write whose effect differs.
# One at a time: they share the Rails app's database.
HOSTILE_LEGACY_URL="http://127.0.0.1:$rollout_port" \
  HOSTILE_LEGACY_DATABASE_URL="postgres://postgres@127.0.0.1:$pg_port/rails_rollout" \
  cargo test --locked -q -p hostile -- cutover:: write_effects::a_members_whole_life write_effects::two_writes_of_one_member --test-threads=1

section "Python gRPC client"
IDENTITY_GRPC_ADDR="127.0.0.1:$sqlite_grpc" IDENTITY_HTTP_URL="http://127.0.0.1:$sqlite_http" tests/python/run.sh -q

section "schemathesis"
tests/schemathesis/run.sh "http://127.0.0.1:$pg_http"

section "dashboard in headless Chromium"
tests/dashboard/run.sh

section "all suites passed"
