#!/usr/bin/env bash
# Side-by-side figures of the DTM HTTP API, in one session: seata-tc (memory, file with fsync,
# db on MySQL/MariaDB) and, when DTMRS points at a `dtmrs` binary, dtmrs on sqlite and Redis.
# Each run gets a fresh server and a fresh store; every server listens on 127.0.0.1 only and is
# stopped by its PID. Prints one line per run and the medians, with the CPU time the server
# (and the store process: redis-server, mariadbd) spent per saga, warm-up included.
#
#   cargo build --release -p seata-tc -p seata-bench
#   DTMRS=<dtmrs binary> bench/dtm-compare.sh [RUNS=3] [SECS=10] [CONFIGS...]
#
# CONFIGS (default): tc-memory tc-file tc-db dtmrs-sqlite dtmrs-redis; also dtmrs-mysql
# Env: TARGET (default <repo>/target/release), MYSQL_URL (default mysql://root@127.0.0.1:3306),
#      REDIS_URL (default redis://127.0.0.1:6379/11), CONCURRENCY (default 64), BENCH_ARGS (to
#      dtm-bench, e.g. "--wait poll"), TC_DB_PARAMS (appended to tc-db's URL, e.g.
#      "?reset_connection=false&pool_min=32&pool_max=32"). The fresh databases of tc-db and
#      dtmrs-mysql are created and dropped with the mysql client as root on 127.0.0.1; Redis
#      runs use a key prefix per run and delete their keys afterwards.
set -euo pipefail
runs=${1:-3}; secs=${2:-10}; shift $(( $# > 2 ? 2 : $# ))
configs=("$@"); [ ${#configs[@]} -gt 0 ] || configs=(tc-memory tc-file tc-db dtmrs-sqlite dtmrs-redis)
repo=$(cd "$(dirname "$0")/.." && pwd)
target=${TARGET:-$repo/target/release}
mysql_url=${MYSQL_URL:-mysql://root@127.0.0.1:3306}
redis_url=${REDIS_URL:-redis://127.0.0.1:6379/11}
work=$(mktemp -d)
server_pid=""
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Waits (≤ 20 s) for a line matching $2 in file $1 and prints its last field.
wait_line() {
  for _ in $(seq 200); do
    if line=$(grep -m1 "$2" "$1" 2>/dev/null); then echo "${line##* }"; return 0; fi
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "server did not start:" >&2; cat "$1" "$1.err" >&2 2>/dev/null; return 1
}

wait_http() {
  for _ in $(seq 200); do
    curl -fs "$1" >/dev/null 2>&1 && return 0
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "server did not answer $1" >&2; return 1
}

# Starts one server for config $1, run number $2; sets server_pid and base.
start() {
  local dir="$work/$1-$2"; mkdir -p "$dir"
  case $1 in
    tc-*)
      local store=${1#tc-} extra=()
      case $store in
        file) extra=(--data-dir "$dir/data" --sync fsync) ;;
        db) dbname="dtmbench_$$_$2"; mysql -h127.0.0.1 -uroot -e "CREATE DATABASE $dbname"
            extra=(--db-url "$mysql_url/$dbname${TC_DB_PARAMS:-}" --init-db) ;;
      esac
      RUST_LOG=warn "$target/seata-tc" --listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --grpc-listen off \
        --store "$store" "${extra[@]}" >"$dir/out" 2>"$dir/out.err" &
      server_pid=$!
      base="http://$(wait_line "$dir/out" '^http listening on')/api/dtmsvr" ;;
    dtmrs-*)
      local port db; port=$(free_port)
      case $1 in
        dtmrs-sqlite) db="sqlite:$dir/dtmrs.db" ;;
        dtmrs-redis) prefix="dtmbench$$r$2:"; db="$redis_url?key_prefix=$prefix" ;;
        dtmrs-mysql) dbname="dtmbench_rs_$$_$2"; mysql -h127.0.0.1 -uroot -e "CREATE DATABASE $dbname"
                     db="$mysql_url/$dbname" ;;
      esac
      DTMRS_DB=$db DTMRS_ADDR=127.0.0.1:$port DTMRS_GRPC_ADDR=127.0.0.1:$(free_port) RUST_LOG=warn \
        "$DTMRS" >"$dir/out" 2>&1 &
      server_pid=$!
      wait_http "http://127.0.0.1:$port/health"
      base="http://127.0.0.1:$port/api/dtmsvr" ;;
  esac
}

stop() {
  kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; server_pid=""
  case $1 in
    tc-db|dtmrs-mysql) mysql -h127.0.0.1 -uroot -e "DROP DATABASE IF EXISTS $dbname" ;;
    dtmrs-redis) redis-cli -u "$redis_url" --scan --pattern "$prefix*" \
                   | xargs -r -n 500 redis-cli -u "$redis_url" del >/dev/null ;;
  esac
}

median() { sort -g | awk '{a[NR]=$1} END {if (!NR) print "-"; else print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# Runs are interleaved (run 1 of every config, then run 2, ...) so that a load that comes and
# goes on the machine touches every config alike; the 1-min load average is printed per run.
active=()
for c in "${configs[@]}"; do
  case $c in dtmrs-*) [ -n "${DTMRS:-}" ] || { echo "skip $c: DTMRS not set" >&2; continue; } ;; esac
  active+=("$c"); : >"$work/$c.lines"
done
# CPU time (utime+stime, in clock ticks) of a process.
ticks() { awk '{print $14+$15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
hz=$(getconf CLK_TCK)
for r in $(seq "$runs"); do
  for c in "${active[@]}"; do
    start "$c" "$r"
    # The store's own process, where it has one (shared with whatever else uses it).
    case $c in *redis) spid=$(pgrep -x redis-server | head -1) ;; *db|*mysql) spid=$(pgrep -x mariadbd | head -1) ;; *) spid="" ;; esac
    t0=$(ticks "$server_pid"); s0=$([ -n "$spid" ] && ticks "$spid" || echo 0)
    # shellcheck disable=SC2086
    line=$("$target/dtm-bench" --dtm "$base" --duration "$secs" \
           --concurrency "${CONCURRENCY:-64}" ${BENCH_ARGS:-} 2>"$work/$c-$r.bench.err") || true
    t1=$(ticks "$server_pid"); s1=$([ -n "$spid" ] && ticks "$spid" || echo 0)
    stop "$c"
    n=$(grep -o 'sagas_total=[0-9]*' <<<"$line" | cut -d= -f2); n=${n:-0}
    cpu=""; [ "$n" -gt 0 ] && cpu=" server_cpu_us=$(( (t1 - t0) * 1000000 / hz / n ))"
    [ "$n" -gt 0 ] && [ -n "$spid" ] && cpu+=" store_cpu_us=$(( (s1 - s0) * 1000000 / hz / n ))"
    line="${line:+$line$cpu}"
    echo "$c run $r: ${line:-FAILED $(tail -3 "$work/$c-$r.bench.err")} load1=$(cut -d' ' -f1 /proc/loadavg)"
    echo "$line" >>"$work/$c.lines"
  done
done
echo "== medians of $runs x ${secs}s, concurrency ${CONCURRENCY:-64} =="
for c in "${active[@]}"; do
  get() { grep -o "$1=[0-9.]*" "$work/$c.lines" | cut -d= -f2 | median; }
  errs=$(grep -o 'errors=[0-9]*' "$work/$c.lines" | cut -d= -f2 | paste -sd+ | bc)
  printf '%-13s tx_per_s=%-7s p50_ms=%-7s p99_ms=%-7s errors=%-3s runs=%s server_cpu_us/saga=%s store_cpu_us/saga=%s\n' \
    "$c" "$(get tx_per_s)" "$(get p50_ms)" "$(get p99_ms)" "${errs:-?}" \
    "$(grep -c tx_per_s "$work/$c.lines")" "$(get server_cpu_us)" "$(get store_cpu_us)"
done
