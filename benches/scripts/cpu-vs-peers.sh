#!/usr/bin/env bash
# CPU per request of weir's runtimes beside hyper, may_minihttp and actix-web, in one run:
# each server in turn under `wrk-cpu.sh` (server on core 0 with one worker, wrk -t1 on core
# 1, keep-alive `GET /ping`), at each connection count. Prints one Markdown table.
#
# usage: benches/scripts/cpu-vs-peers.sh [SECONDS] [CONNS...]   (default 10 s, 50 and 500)
#   Build first: `cargo build --release` and `benches/scripts/build-peers.sh /tmp/peers`
#   (PEERS=DIR for another folder); a missing peer binary is skipped with a note.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-10}; shift || true
conns=("$@"); [ ${#conns[@]} -gt 0 ] || conns=(50 500)
peers=${PEERS:-/tmp/peers}
weir='env IO_THREADS=1 WORKER_COUNT=1 RATE_LIMIT=100000000 ACCESS_LOG=false SERVER_PORT=127.0.0.1:$PORT'
servers=(
  "weir-tokio|$weir ./target/release/weir-tokio"
  "weir-smol|$weir ./target/release/weir-smol"
  "weir-std|$weir ./target/release/weir-std"
  "hyper-ref (current-thread)|env SERVER_PORT=127.0.0.1:\$PORT ./target/release/hyper-ref"
  "may_minihttp 0.1|env PORT=\$PORT $peers/may/target/release/may-peer"
  "actix-web 4|env PORT=\$PORT $peers/actix/target/release/actix-peer"
)
echo "| server | conns | req/s | p50 | p99 | CPU µs/req | user | system |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for c in "${conns[@]}"; do
  for entry in "${servers[@]}"; do
    name=${entry%%|*}; cmd=${entry#*|}
    bin=$(echo "$cmd" | grep -o '[^ ]*/release/[^ ]*' | head -1)
    if [ ! -x "$bin" ]; then echo "| $name | $c | (not built: $bin) | | | | | |"; continue; fi
    benches/scripts/wrk-cpu.sh "$name" "$cmd" "$c" "$secs" /ping
  done
done
