#!/usr/bin/env bash
# Heap allocations per request of a running server, counted with uprobes on libc's malloc,
# calloc and realloc (`perf probe`, needs root) while wrk drives it after a warm-up. Works for
# any runtime, io_uring included (valgrind does not run weir-uring). The probes are removed
# on exit.
# usage: benches/scripts/allocs-per-request.sh NAME 'SERVER COMMAND (listens on 127.0.0.1:$PORT)' [CONNS] [SECONDS] [PATH] [WRK ARGS...]
set -euo pipefail
name=$1; cmd=$2; conns=${3:-50}; secs=${4:-5}; path=${5:-/ping}; shift 5 2>/dev/null || shift $#
libc=$(ldconfig -p | awk '/libc\.so\.6 .*x86-64/ {print $NF; exit}')
probes=()
for f in malloc calloc realloc; do
  ev=$(perf probe -q -x "$libc" "weir_$f=$f" 2>&1 | awk '/probe_libc/ {print $1}' || true)
  probes+=("probe_libc:weir_$f")
done
trap 'perf probe -q -d "probe_libc:weir_*" >/dev/null 2>&1 || true' EXIT
export PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
taskset -c 0 bash -c "exec $cmd" >/dev/null 2>&1 &
pid=$!
for _ in $(seq 1 100); do python3 -c "import socket; socket.create_connection(('127.0.0.1',$PORT),0.2)" 2>/dev/null && break; sleep 0.05; done
taskset -c 1 wrk -t1 -c"$conns" -d1s "$@" "${SCHEME:-http}://127.0.0.1:$PORT$path" >/dev/null  # warm-up
stat=$(mktemp)
perf stat -x, -o "$stat" -e "$(IFS=,; echo "${probes[*]}")" -p $pid &
perf_pid=$!
sleep 0.2
reqs=$(taskset -c 1 wrk -t1 -c"$conns" -d"${secs}s" "$@" "${SCHEME:-http}://127.0.0.1:$PORT$path" | awk '/requests in/ {print $1}')
kill -INT $perf_pid; wait $perf_pid 2>/dev/null || true
kill -TERM $pid; wait $pid 2>/dev/null || true
allocs=$(awk -F, '/probe_libc/ {s += $1} END {print s+0}' "$stat")
rm -f "$stat"
echo "| $name | $conns | $reqs | $allocs | $(python3 -c "print(round($allocs/max($reqs,1), 4))") |"
