# Sourced by the Python suites' run.sh scripts. `venv_for NAME REQUIREMENTS` sets $venv
# (and $cache) to a virtualenv holding REQUIREMENTS under the cache directory
# ($IDENTITY_TEST_CACHE, else $XDG_CACHE_HOME/identity-tests, else
# ~/.cache/identity-tests), installing it from PyPI on first use. It is keyed by the
# requirements file and the interpreter (PYTHON, default python3), and installs are
# locked against concurrent runs.
venv_for() {
  local name="$1" req="$2"
  local python="${PYTHON:-python3}"
  cache="${IDENTITY_TEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/identity-tests}"
  local digest
  digest="$({ cat "$req"; "$python" -c 'import sys; print(sys.version)'; } | sha256sum | cut -c1-16)"
  venv="$cache/$name-$digest"
  mkdir -p "$cache"
  (
    if command -v flock >/dev/null 2>&1; then flock 9; fi
    if [ ! -f "$venv/.complete" ]; then
      echo "installing $req into $venv" >&2
      rm -rf "$venv"
      "$python" -m venv "$venv"
      "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
      touch "$venv/.complete"
    fi
  ) 9>"$cache/.$name.lock"
}
