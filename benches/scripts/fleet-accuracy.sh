#!/usr/bin/env bash
# The fleet limit's accuracy: three weir-tokio instances share RATE_LIMIT through a local
# redis-server; weir-load offers 3x the limit at constant rates split unevenly (70/20/10 %)
# for SECS seconds; prints what each instance admitted against the fleet's budget
# (RATE_LIMIT x SECS + RATE_BURST). With KILL=1 the busiest instance is killed halfway.
# usage: [KILL=1] benches/scripts/fleet-accuracy.sh [RATE_LIMIT] [SECS]
set -euo pipefail
cd "$(dirname "$0")/../.."
rate=${1:-3000}; secs=${2:-10}; lease=${LEASE_PERIOD:-100ms}
cargo build --release -q -p weir-tokio -p weir-bench
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT
rport=$(free_port)
redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.05; done
addrs=()
for i in 0 1 2; do
  REDIS_URL="redis://127.0.0.1:$rport" RATE_LIMIT=$rate LEASE_PERIOD=$lease CLUSTER_SIZE=3 \
    ACCESS_LOG=false IO_THREADS=1 WORKER_COUNT=1 SERVER_PORT=127.0.0.1:0 \
    ./target/release/weir-tokio >"$tmp/out$i" 2>"$tmp/err$i" &
  pids+=($!); srv[$i]=$!
  for _ in $(seq 1 100); do grep -q "listening on" "$tmp/out$i" && break; sleep 0.05; done
  addrs[$i]=$(sed -n 's/^listening on //p' "$tmp/out$i")
done
sleep 1
offered=$((3 * rate))
shares=(70 20 10)
for i in 0 1 2; do
  r=$((offered * ${shares[$i]} / 100))
  ./target/release/weir-load --rate "$r" -c 16 -t 1 -z "${secs}s" --json --max-error-rate 1 \
    "http://${addrs[$i]}/ping" >"$tmp/load$i.json" 2>/dev/null &
  loads[$i]=$!
done
if [ "${KILL:-0}" = 1 ]; then
  sleep $((secs / 2)); kill -9 "${srv[0]}"
fi
for i in 0 1 2; do wait "${loads[$i]}" || true; done
python3 - "$tmp" "$rate" "$secs" "${KILL:-0}" <<'PY'
import json, sys
tmp, rate, secs, kill = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
rows = [json.load(open(f"{tmp}/load{i}.json")) for i in range(3)]
ok = [r["status_counts"].get("200", 0) for r in rows]
budget = rate * secs
print(f"RATE_LIMIT={rate}/s for {secs} s (+ burst {rate}), offered 3x split 70/20/10"
      + (", the 70 % instance killed halfway" if kill else ""))
for i, (r, n) in enumerate(zip(rows, ok)):
    print(f"  instance {i}: offered {r['requests']:>7}  admitted {n:>6}  ({100*n/max(1,sum(ok)):.1f} % of admitted)")
total = sum(ok)
print(f"  fleet admitted {total} against a budget of {budget} (+ burst {rate}): "
      f"{100*(total-budget)/budget:+.1f} % of the budget, {100*(total-budget-rate)/budget:+.1f} % beyond budget + burst")
PY
