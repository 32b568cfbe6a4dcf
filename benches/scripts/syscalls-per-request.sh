#!/usr/bin/env bash
# System calls per request, counted by `strace -c -f` over every thread of the server while
# wrk drives it (server on core 0, wrk -t1 on core 1). strace slows the server down, so the
# throughput it prints is not a benchmark; the count per request is what this measures.
# usage: benches/scripts/syscalls-per-request.sh NAME 'SERVER COMMAND (listens on 127.0.0.1:$PORT)' CONNS [SECONDS] [PATH]
set -euo pipefail
name=$1; cmd=$2; conns=$3; secs=${4:-5}; path=${5:-/ping}
export PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
out=$(mktemp)
taskset -c 0 strace -f -c -o "$out" bash -c "exec $cmd" >/dev/null 2>&1 &
pid=$!
for _ in $(seq 1 200); do python3 -c "import socket; socket.create_connection(('127.0.0.1',$PORT),0.2)" 2>/dev/null && break; sleep 0.05; done
sleep 0.5
# Start-up syscalls are counted too; a long enough run makes them negligible per request.
reqs=$(taskset -c 1 wrk -t1 -c"$conns" -d"${secs}s" "http://127.0.0.1:$PORT$path" | awk '/requests in/ {print $1}')
pkill -TERM -P $pid 2>/dev/null || kill -TERM $pid
wait $pid 2>/dev/null || true
calls=$(awk '$NF=="total" {print $(NF-2)}' "$out")
top=$(awk 'NR>2 && $1 ~ /^[0-9.]+$/ && $NF!="total" {print $4, $NF}' "$out" | sort -rn | head -4 | awk '{printf "%s %s, ", $2, $1}')
echo "| $name | $conns | $reqs | $calls | $(python3 -c "print(round($calls/max($reqs,1), 3))") | ${top%, } |"
rm -f "$out"
