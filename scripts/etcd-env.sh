#!/usr/bin/env bash
# Makes sure an etcd server is installed for the tests of seata-tc's etcd registration and
# `etcd://` branch URLs (tests/tests/it/dtm_grpc.rs; each test starts its own etcd on free
# ports with a temporary data directory). Installs Debian's etcd-server when no etcd is found.
# Idempotent and quick when etcd is there; safe to run from several processes at once.
# Prints the etcd binary's path on its last line of stdout; everything else goes to stderr.
#   SEATA_TEST_ETCD=/path/to/etcd scripts/etcd-env.sh  uses that binary.
set -euo pipefail
cd "$(dirname "$0")/.."

find_etcd() {
  local c
  for c in "${SEATA_TEST_ETCD:-}" "$(command -v etcd 2>/dev/null || true)" /usr/bin/etcd; do
    if [[ -n "$c" && -x "$c" ]]; then
      echo "$c"
      return 0
    fi
  done
  return 1
}

if bin="$(find_etcd)"; then
  echo "$bin"
  exit 0
fi

mkdir -p target
if command -v flock >/dev/null; then
  exec 9>target/etcd-env.lock
  flock 9
  # Another process may have installed it while this one waited.
  if bin="$(find_etcd)"; then
    echo "$bin"
    exit 0
  fi
fi

if ! command -v apt-get >/dev/null; then
  echo "etcd-env: no etcd found and no apt-get here; install etcd 3.x and set SEATA_TEST_ETCD" >&2
  exit 1
fi
as_root=()
if [[ "$(id -u)" != 0 ]]; then
  if command -v sudo >/dev/null; then
    as_root=(sudo)
  else
    echo "etcd-env: installing etcd-server needs root (or set SEATA_TEST_ETCD)" >&2
    exit 1
  fi
fi
echo "etcd-env: installing Debian's etcd-server" >&2
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq >&2
"${as_root[@]}" apt-get install -y -qq etcd-server >&2
if ! bin="$(find_etcd)"; then
  echo "etcd-env: etcd-server installed but no etcd binary found" >&2
  exit 1
fi
echo "$bin"
