#!/usr/bin/env bash
# Server CPU per request (total, user, system) and latency under wrk: the server pinned to
# core 0, wrk -t1 to core 1. Prints a Markdown table row.
# usage: benches/scripts/wrk-cpu.sh NAME 'SERVER COMMAND (listens on 127.0.0.1:$PORT)' CONNS [SECONDS] [PATH] [WRK ARGS...]
set -euo pipefail
name=$1; cmd=$2; conns=$3; secs=${4:-10}; path=${5:-/ping}; shift 5 2>/dev/null || shift $#
export PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
taskset -c 0 bash -c "exec $cmd" >/dev/null 2>&1 &
pid=$!
for _ in $(seq 1 100); do python3 -c "import socket; socket.create_connection(('127.0.0.1',$PORT),0.2)" 2>/dev/null && break; sleep 0.05; done
ticks() { awk '{print $14, $15}' /proc/$pid/stat; }
read -r u0 s0 < <(ticks)
out=$(taskset -c 1 wrk -t1 -c"$conns" -d"${secs}s" --latency "$@" "${SCHEME:-http}://127.0.0.1:$PORT$path")
read -r u1 s1 < <(ticks)
kill -TERM $pid; wait $pid 2>/dev/null || true
reqs=$(echo "$out" | awk '/requests in/ {print $1}')
rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
p50=$(echo "$out" | awk '$1=="50%" {print $2}')
p99=$(echo "$out" | awk '$1=="99%" {print $2}')
errs=$(echo "$out" | awk '/Non-2xx|Socket errors/' | tr '\n' ' ')
per_req() { python3 -c "print(round(($1)/100*1e6/max($reqs,1), 2))"; }
cpu_us=$(per_req "$u1-$u0+$s1-$s0"); user_us=$(per_req "$u1-$u0"); sys_us=$(per_req "$s1-$s0")
echo "| $name | $conns | $rps | $p50 | $p99 | $cpu_us | $user_us | $sys_us | $errs|"
