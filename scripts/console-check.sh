#!/usr/bin/env bash
# Checks the console page in a real browser (Debian's headless Chromium, installed if missing):
# starts a TC, puts transactions in several states into it (console-demo: Seata transactions in
# phase one, rolling back, timed out and RollbackFailed after a dirty rollback; DTM sagas),
# loads /console, checks the page lists them, does an action in the page (clicks "Give up" on
# the dirty branch, with the token and a reason: scripts/console_action.py over DevTools),
# checks the page and the audit show its outcome, and saves screenshots as
# target/console.png (list and a transaction's detail), target/console-action.png (the
# page's notice of the action) and target/console-after.png.
#
# Usage: scripts/console-check.sh   (from anywhere; builds what it needs)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

browser=$(command -v chromium || command -v chromium-browser || true)
if [[ -z "$browser" ]]; then
  echo "console-check: installing Debian's chromium"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  browser=$(command -v chromium)
fi

cargo build -q -p seata-tc --bin seata-tc -p seata-it --bin console-demo
target=${CARGO_TARGET_DIR:-$root/target}
tc_bin="$target/debug/seata-tc"
demo_bin="$target/debug/console-demo"

work=$(mktemp -d)
token="console-check-$$"
printf '[admin]\ntoken = "%s"\n' "$token" >"$work/tc.toml"
tc_pid=""
demo_pid=""
cleanup() {
  [[ -n "$demo_pid" ]] && kill "$demo_pid" 2>/dev/null || true
  [[ -n "$tc_pid" ]] && kill "$tc_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "console-check: FAILED: $*" >&2
  echo "--- TC log (tail)" >&2
  tail -20 "$work/tc.err" >&2 || true
  exit 1
}

"$tc_bin" --config "$work/tc.toml" --listen 127.0.0.1:0 --http-listen 127.0.0.1:0 \
  --grpc-listen off --data-dir "$work/data" >"$work/tc.out" 2>"$work/tc.err" &
tc_pid=$!
for _ in $(seq 100); do
  grep -q '^http listening on ' "$work/tc.out" 2>/dev/null && break
  sleep 0.1
done
addr=$(sed -n 's/^listening on //p' "$work/tc.out")
http=$(sed -n 's/^http listening on //p' "$work/tc.out")
[[ -n "$addr" && -n "$http" ]] || fail "the TC printed no addresses"

# The demo keeps its connections while its stdin (a fifo we hold open) stays open.
mkfifo "$work/demo.in"
"$demo_bin" "$addr" "$http" <"$work/demo.in" >"$work/demo.out" 2>"$work/demo.err" &
demo_pid=$!
exec 3>"$work/demo.in"
for _ in $(seq 300); do
  grep -q '^ready ' "$work/demo.out" 2>/dev/null && break
  kill -0 "$demo_pid" 2>/dev/null || fail "console-demo exited: $(cat "$work/demo.err")"
  sleep 0.1
done
read -r _ dirty open <"$work/demo.out" || fail "console-demo is not ready"
[[ -n "$dirty" ]] || fail "console-demo is not ready"

# Let the DTM saga with the unreachable branch server record a failed call.
sleep 2

shot() { # url file
  "$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1400,900 \
    --virtual-time-budget=4000 --screenshot="$2" "$1" >/dev/null 2>&1 || fail "chromium could not load $1"
}
dom() { # url
  "$browser" --headless --no-sandbox --disable-gpu --virtual-time-budget=4000 --dump-dom "$1" 2>/dev/null
}

page="http://$http/console"
dom "$page" >"$work/list.html"
grep -q 'data-loaded="1"' "$work/list.html" || fail "the page's script did not load the API"
for want in "$dirty" "$open" RollbackFailed RollbackRetrying TimeoutRollbackRetrying Begin \
  demo-saga-ok demo-saga-fail demo-saga-down succeed failed submitted; do
  grep -q -- "$want" "$work/list.html" || fail "the list does not show $want"
done
dom "$page#xid=$dirty" >"$work/detail.html"
for want in "waits for an operator" '"current"' "account-service" "Give up"; do
  grep -q -- "$want" "$work/detail.html" || fail "the detail of $dirty does not show $want"
done
mkdir -p "$target"
shot "$page#xid=$dirty" "$target/console.png"

# The action, through the page: a DevTools-driven Chromium clicks "Give up" on the dirty
# branch, enters the token and a reason, confirms, and reads the page's notice.
"$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --remote-debugging-port=0 \
  --user-data-dir="$work/profile" about:blank 2>"$work/chromium.err" &
chromium_pid=$!
port=""
for _ in $(seq 100); do
  port=$(sed -n 's#^DevTools listening on ws://127.0.0.1:\([0-9]*\)/.*#\1#p' "$work/chromium.err")
  [[ -n "$port" ]] && break
  sleep 0.1
done
[[ -n "$port" ]] || fail "chromium did not open its DevTools port"
python3 scripts/console_action.py "$port" "$page#xid=$dirty" "$token" "$target/console-action.png" \
  >"$work/action.out" 2>&1 || { kill "$chromium_pid"; fail "$(cat "$work/action.out")"; }
kill "$chromium_pid" 2>/dev/null || true
wait "$chromium_pid" 2>/dev/null || true
echo "console-check: $(cat "$work/action.out")"
dom "$page" >"$work/after.html"
grep -q -- "$dirty" "$work/after.html" && fail "the list still shows $dirty after the give-up"
shot "$page" "$target/console-after.png"
curl -sf "http://$http/admin/v1/audit" | grep -q 'restored by hand (console-check)' ||
  fail "the audit has no record of the give-up"

echo "console-check: ok (screenshots target/console.png, console-action.png, console-after.png)"
