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
if ! command -v kubectl >/dev/null 2>&1 && ! command -v kustomize >/dev/null 2>&1; then
  echo "run.sh: kubectl (or kustomize) is needed to render k8s/overlays" >&2
  exit 1
fi

# shellcheck source=../venv.sh
source "$here/../venv.sh"
venv_for manifests "$here/requirements.txt"

export PYTHONDONTWRITEBYTECODE=1
# checkov keeps a download cache; keep it out of the shared /tmp.
export CKV_CACHE_DIR="$cache/checkov-cache"
cd "$here"
exec "$venv/bin/python" -m pytest -p no:cacheprovider -ra -v "$here" "$@"
