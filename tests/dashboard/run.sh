#!/usr/bin/env bash
# The proxy's dashboard in a real browser: Debian's headless Chromium, driven by
# playwright-core (which downloads no browser here), against the real local stack
# (`local-stack` on free ports and a temp dir). Checks that the page loads, asks for the
# token and says so on a 401, shows a planted mismatch with masked values only, and
# follows a weight change without a reload; writes tests/dashboard/screenshot.png.
#
#   bash tests/dashboard/run.sh
#
# Installs what it lacks: chromium and sqlite3 with apt-get (as root), playwright-core
# with npm into a cache dir. Every process the test starts is stopped by the test.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)

PLAYWRIGHT_VERSION=1.65.1
node_dir=${DASHBOARD_NODE_DIR:-$HOME/.cache/identity-tests/dashboard-node}

need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v sqlite3 >/dev/null 2>&1 || need+=(sqlite3)
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  need+=(nodejs npm)
fi
if [ "${#need[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "dashboard: installing ${need[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "dashboard: missing Debian packages: ${need[*]} (run as root: apt-get install ${need[*]})" >&2
    exit 1
  fi
fi

installed=$(node -p "try { require('$node_dir/node_modules/playwright-core/package.json').version } catch (e) { '' }")
if [ "$installed" != "$PLAYWRIGHT_VERSION" ]; then
  echo "dashboard: installing playwright-core $PLAYWRIGHT_VERSION into $node_dir" >&2
  mkdir -p "$node_dir"
  # playwright-core has no install script and fetches no browser; the variable makes
  # sure of it.
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --prefix "$node_dir" --no-audit --no-fund \
    --loglevel=error "playwright-core@$PLAYWRIGHT_VERSION" >&2
fi

cargo build --locked -q -p local-stack
target=${CARGO_TARGET_DIR:-$root/target}
case "$target" in /*) ;; *) target="$root/$target" ;; esac

export LOCAL_STACK_BIN="$target/debug/local-stack"
export DASHBOARD_NODE_DIR="$node_dir"
export CHROMIUM_BIN=${CHROMIUM_BIN:-$(command -v chromium)}
export DASHBOARD_SCREENSHOT=${DASHBOARD_SCREENSHOT:-$root/tests/dashboard/screenshot.png}
exec node --test --test-reporter=spec tests/dashboard/dashboard.test.mjs
