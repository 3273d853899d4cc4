#!/usr/bin/env bash
# Checks the cluster manifests (k8s/, istio/) and the Dockerfiles without a cluster or a
# Docker engine: every overlay rendered with `kubectl kustomize`, every object against the
# Kubernetes schemas (kubernetes-validate) or Istio's CRD schemas (istio-crds.yaml here),
# the manifests against the Dockerfiles and the binaries' flags, and checkov's scan.
#
#   tests/manifests/run.sh [pytest args]
#
# Needs kubectl (or kustomize) on the PATH. On first use (and whenever requirements.txt or
# the interpreter changes) it installs requirements.txt from PyPI into a virtualenv under
# the cache directory: $IDENTITY_TEST_CACHE, else $XDG_CACHE_HOME/identity-tests, else
# ~/.cache/identity-tests. PYTHON picks the interpreter (default python3; the pins were
# checked with 3.11). Extra arguments go to pytest (-k checkov, -x). Exits with pytest's
# status.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-python3}"
cache="${IDENTITY_TEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/identity-tests}"
req="$here/requirements.txt"
digest="$({ cat "$req"; "$python" -c 'import sys; print(sys.version)'; } | sha256sum | cut -c1-16)"
venv="$cache/manifests-$digest"

ensure_venv() {
  [ -f "$venv/.complete" ] && return 0
  echo "run.sh: installing $req into $venv" >&2
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
  touch "$venv/.complete"
}

if ! command -v kubectl >/dev/null 2>&1 && ! command -v kustomize >/dev/null 2>&1; then
  echo "run.sh: kubectl (or kustomize) is needed to render k8s/overlays" >&2
  exit 1
fi

mkdir -p "$cache"
if command -v flock >/dev/null 2>&1; then
  exec 9>"$cache/.manifests.lock"
  flock 9
  ensure_venv
  flock -u 9
else
  ensure_venv
fi

export PYTHONDONTWRITEBYTECODE=1
# checkov keeps a download cache; keep it out of the shared /tmp.
export CKV_CACHE_DIR="$cache/checkov-cache"
cd "$here"
exec "$venv/bin/python" -m pytest -p no:cacheprovider -ra -v "$here" "$@"
