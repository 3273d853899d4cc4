#!/usr/bin/env bash
# Start the legacy Rails member API (the oracle) in the foreground.
#
#   tests/legacy-rails/start.sh --port PORT --database-url URL
#
# URL is sqlite3:/abs/path/file.sqlite3 or postgres://user@host:port/db.
# Prepares the database (create + migrate when needed), then execs Puma in
# production mode on 127.0.0.1:PORT. Env: BCRYPT_COST (default 12),
# RAILS_MAX_THREADS (default 3), SECRET_KEY_BASE (a fixed dummy if unset),
# LEGACY_RAILS_LOG=file to write logs to a file instead of stdout.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

usage() {
  echo "usage: $0 --port PORT --database-url URL" >&2
  exit 64
}

port="${PORT:-}"
database_url="${DATABASE_URL:-}"
while [ $# -gt 0 ]; do
  case "$1" in
    --port) [ $# -ge 2 ] || usage; port="$2"; shift 2 ;;
    --port=*) port="${1#*=}"; shift ;;
    --database-url) [ $# -ge 2 ] || usage; database_url="$2"; shift 2 ;;
    --database-url=*) database_url="${1#*=}"; shift ;;
    -h|--help) usage ;;
    *) echo "unknown argument: $1" >&2; usage ;;
  esac
done
[ -n "$port" ] || { echo "missing --port" >&2; usage; }
[ -n "$database_url" ] || { echo "missing --database-url" >&2; usage; }
case "$port" in
  ''|*[!0-9]*) echo "--port must be a number: $port" >&2; exit 64 ;;
esac

export PORT="$port"
export DATABASE_URL="$database_url"
export RAILS_ENV=production RACK_ENV=production
export SECRET_KEY_BASE="${SECRET_KEY_BASE:-legacy-rails-oracle-dummy-secret-key-base-not-a-secret-0123456789abcdef}"
export RAILS_MAX_THREADS="${RAILS_MAX_THREADS:-3}"
export BCRYPT_COST="${BCRYPT_COST:-12}"
export BUNDLE_GEMFILE="$here/Gemfile"
export PIDFILE="$here/tmp/pids/server.$port.pid"

mkdir -p "$here/tmp/pids" "$here/log"

# SQLite: the file's directory must exist.
case "$DATABASE_URL" in
  sqlite3:*)
    db_path="${DATABASE_URL#sqlite3:}"
    db_path="${db_path%%\?*}"
    case "$db_path" in
      //*) db_path="${db_path#//}" ;;
    esac
    mkdir -p "$(dirname "$db_path")"
    ;;
esac

if [ -n "${LEGACY_RAILS_LOG:-}" ]; then
  exec >>"$LEGACY_RAILS_LOG" 2>&1
fi

cd "$here"
bundle exec rake db:prepare
exec bundle exec puma -C config/puma.rb config.ru
