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
# shellcheck source=../venv.sh
source "$here/../venv.sh"
venv_for python-client "$here/requirements.txt"

export IDENTITY_GRPC_ADDR="${IDENTITY_GRPC_ADDR:-}"
export IDENTITY_HTTP_URL="${IDENTITY_HTTP_URL:-}"
export PYTHONDONTWRITEBYTECODE=1
cd "$here"
exec "$venv/bin/python" -m pytest -p no:cacheprovider -ra -v "$here/test_grpc_client.py" "$@"
