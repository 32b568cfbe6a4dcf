#!/usr/bin/env bash
# Runs schemathesis (PyPI) with every check against weir-tokio's own /openapi.json and fails
# on any finding. CI runs it on the debug binary with a fixed seed (reproducible); run it
# without SEED to explore new cases.
# `/api/v1/sleep` is left out: by its contract it may hold an answer for 60 s, beyond the
# tool's request timeout.
# usage: [BIN=path/to/weir-tokio] [SEED=n] benches/scripts/schemathesis.sh [MAX_EXAMPLES]
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${BIN:-}
if [ -z "$bin" ]; then
  cargo build --release -q -p weir-tokio
  bin=./target/release/weir-tokio
fi
out=$(mktemp)
ACCESS_LOG=false SERVER_PORT=127.0.0.1:0 "$bin" >"$out" 2>/dev/null &
pid=$!
trap 'kill $pid 2>/dev/null; rm -f "$out"' EXIT
for _ in $(seq 1 100); do grep -q "listening on" "$out" && break; sleep 0.05; done
addr=$(sed -n 's/^listening on //p' "$out")
seed=()
if [ -n "${SEED:-}" ]; then seed=(--seed "$SEED"); fi
schemathesis run "http://$addr/openapi.json" --checks all --max-examples "${1:-25}" \
  --exclude-path /api/v1/sleep "${seed[@]}"
