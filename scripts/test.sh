#!/usr/bin/env bash
# The whole test suite, as run by CI (.ci/run) and by developers on a fresh machine:
# formatting, lints, then every unit, conformance and integration test of the workspace.
# Integration tests start the real seata-tc binary and use the MariaDB on 127.0.0.1:3306,
# which this script starts if it is not running.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export SEATA_TEST_MYSQL_URL="${SEATA_TEST_MYSQL_URL:-mysql://root@127.0.0.1:3306}"

step() { printf '\n== %s\n' "$*"; }

step "toolchain"
if ! command -v cargo >/dev/null; then
  echo "cargo not found: install Rust (https://rustup.rs) and re-run" >&2
  exit 1
fi
cargo --version
rustup component list --installed 2>/dev/null | grep -qE '^(rustfmt|clippy)' || \
  rustup component add rustfmt clippy >/dev/null 2>&1 || true

step "mariadb"
scripts/ensure-mariadb.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "build binaries used by the integration tests"
cargo build --workspace --bins --locked

step "console page in headless Chromium (scripts/console-check.sh)"
scripts/console-check.sh

step "python environment (dtmcli, for the DTM HTTP tests)"
if [[ -z "${SEATA_TEST_PYTHON:-}" ]]; then
  SEATA_TEST_PYTHON="$(scripts/python-env.sh)"
fi
export SEATA_TEST_PYTHON
echo "$SEATA_TEST_PYTHON"

step "etcd (for the gRPC/etcd tests)"
if [[ -z "${SEATA_TEST_ETCD:-}" ]]; then
  SEATA_TEST_ETCD="$(scripts/etcd-env.sh | tail -n 1)"
fi
export SEATA_TEST_ETCD
echo "$SEATA_TEST_ETCD"

step "tools of the failure-path tests (strace)"
if ! command -v strace >/dev/null; then
  (apt-get update -qq && apt-get install -y -qq strace) >&2 || \
    echo "strace missing and could not be installed; the fdatasync failure test will fail" >&2
fi

step "cargo test"
cargo test --workspace --locked -- "$@"
