#!/usr/bin/env bash
# weir-uring against weir-tokio and the hyper reference, in one run: CPU per request (total,
# user, system) and latency under wrk at 50 and 500 connections (PASSES interleaved passes,
# the median pass per server shown), system calls per request under strace at 50 connections,
# and heap allocations per request. Server on core 0 (1 I/O thread, 1 worker), wrk on core 1.
# usage: benches/scripts/uring-vs-readiness.sh [SECONDS] [PASSES]
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-8}; passes=${2:-3}
cargo build --release -q -p weir-uring -p weir-tokio -p weir-bench
servers=(weir-uring weir-tokio hyper-ref)
cmd() { echo "env ACCESS_LOG=false SERVER_PORT=127.0.0.1:\$PORT IO_THREADS=1 WORKER_COUNT=1 HYPER_FLAVOR=current ./target/release/$1"; }
rows=$(mktemp)
for conns in 50 500; do
  for _ in $(seq 1 "$passes"); do
    for s in "${servers[@]}"; do
      benches/scripts/wrk-cpu.sh "$s" "$(cmd "$s")" "$conns" "$secs" >>"$rows"
    done
  done
done
echo "CPU per request under wrk (median of $passes passes by total CPU; ${secs} s each):"
echo
echo "| server | connections | requests/s | p50 | p99 | CPU µs/req | user | system |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
python3 - "$rows" <<'PY'
import sys, collections
groups = collections.defaultdict(list)
for line in open(sys.argv[1]):
    f = [c.strip() for c in line.strip().strip('|').split('|')]
    groups[(int(f[1]), f[0])].append(f)
for (conns, name), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1])):
    rs.sort(key=lambda f: float(f[5]))
    m = rs[len(rs) // 2]
    print("| %s | %s | %s | %s | %s | %s | %s | %s |" % tuple(m[:8]))
PY
rm -f "$rows"
echo
echo "System calls per request (strace -c -f, 50 connections, 5 s):"
echo
echo "| server | connections | requests | system calls | per request | most frequent |"
echo "|---|---:|---:|---:|---:|---|"
for s in "${servers[@]}"; do benches/scripts/syscalls-per-request.sh "$s" "$(cmd "$s")" 50 5; done
echo
echo "Heap allocations (uprobes on malloc/calloc/realloc; the count includes the 50 connections' set-up):"
echo
echo "| server | connections | requests | allocations | per request |"
echo "|---|---:|---:|---:|---:|"
for s in weir-uring weir-tokio; do benches/scripts/allocs-per-request.sh "$s" "$(cmd "$s")" 50 5; done
