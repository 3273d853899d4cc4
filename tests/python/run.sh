#!/usr/bin/env bash
# Runs the Python gRPC client tests against a running identity service.
#
#   IDENTITY_GRPC_ADDR=127.0.0.1:50051 IDENTITY_HTTP_URL=http://127.0.0.1:8080 tests/python/run.sh [pytest args]
#
# On first use (and whenever requirements.txt or the interpreter changes) it installs
# requirements.txt from PyPI into a virtualenv under the cache directory: $IDENTITY_TEST_CACHE,
# else $XDG_CACHE_HOME/identity-tests, else ~/.cache/identity-tests. PYTHON picks the
# interpreter (default python3; 3.11 is what the pins were checked with).
# Extra arguments go to pytest (e.g. --collect-only, -k refresh, -x). Exits with pytest's status.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-python3}"
cache="${IDENTITY_TEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/identity-tests}"
req="$here/requirements.txt"
digest="$({ cat "$req"; "$python" -c 'import sys; print(sys.version)'; } | sha256sum | cut -c1-16)"
venv="$cache/python-client-$digest"

ensure_venv() {
  [ -f "$venv/.complete" ] && return 0
  echo "run.sh: installing $req into $venv" >&2
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
  touch "$venv/.complete"
}

mkdir -p "$cache"
if command -v flock >/dev/null 2>&1; then
  exec 9>"$cache/.python-client.lock"
  flock 9
  ensure_venv
  flock -u 9
else
  ensure_venv
fi

export IDENTITY_GRPC_ADDR="${IDENTITY_GRPC_ADDR:-}"
export IDENTITY_HTTP_URL="${IDENTITY_HTTP_URL:-}"
export PYTHONDONTWRITEBYTECODE=1
cd "$here"
exec "$venv/bin/python" -m pytest -p no:cacheprovider -ra -v "$here/test_grpc_client.py" "$@"
