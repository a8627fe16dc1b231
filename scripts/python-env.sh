#!/usr/bin/env bash
# Makes the Python environment of the tests that drive seata-tc with real Python clients
# (tests/py/, run by tests/tests/it/dtm_python.rs): a venv in target/pyenv with the pinned
# packages of tests/py/requirements.txt. Idempotent and quick when nothing changed (a stamp
# holds the requirements it was made from); safe to run from several processes at once.
# Prints the venv's python on its last line of stdout; everything else goes to stderr.
#   SEATA_PYENV_PYTHON=python3.x scripts/python-env.sh  makes the venv from that interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/pyenv
req=tests/py/requirements.txt
python="${SEATA_PYENV_PYTHON:-python3}"
mkdir -p target

install() {
  local want
  want="$(cat "$req")"
  if [[ -x "$venv/bin/python" && -f "$venv/.stamp" && "$(cat "$venv/.stamp")" == "$want" ]]; then
    return 0
  fi
  if ! command -v "$python" >/dev/null; then
    echo "python-env: $python not found; install Python 3 (with venv) or set SEATA_PYENV_PYTHON" >&2
    exit 1
  fi
  echo "python-env: creating $venv from $req" >&2
  rm -rf "$venv"
  if ! "$python" -m venv "$venv" >&2; then
    echo "python-env: '$python -m venv' failed (on Debian: apt-get install python3-venv)" >&2
    exit 1
  fi
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    -r "$req" >&2
  printf '%s' "$want" >"$venv/.stamp"
}

if command -v flock >/dev/null; then
  exec 9>target/pyenv.lock
  flock 9
fi
install
echo "$PWD/$venv/bin/python"
