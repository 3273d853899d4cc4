#!/usr/bin/env bash
# Installs what the tests need and the machine may lack: Debian's Rails packages (the
# legacy oracle), Prometheus (promtool, for the alert rules' unit tests), HAProxy (the
# fault rehearsal's balancer, standing for the Kubernetes Services) and PyYAML;
# Python is already there (the other Python suites make their own venvs).
# Idempotent; as root it installs with apt-get, otherwise it only checks.
set -euo pipefail

need=()
for pkg in ruby-rails ruby-bcrypt ruby-sqlite3 ruby-pg puma prometheus python3-yaml haproxy; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ "${#need[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing ${need[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "setup: missing Debian packages: ${need[*]} (run as root: apt-get install ${need[*]})" >&2
    exit 1
  fi
fi
if ! command -v kubectl >/dev/null 2>&1 && ! command -v kustomize >/dev/null 2>&1; then
  echo "setup: kubectl (or kustomize) is missing: the manifest checks render overlays with it" >&2
  exit 1
fi
for bin in initdb postgres psql; do
  if ! command -v "$bin" >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/"$bin" >/dev/null 2>&1; then
    echo "setup: PostgreSQL's $bin is missing" >&2
    exit 1
  fi
done
