#!/usr/bin/env bash
# Instructions per keep-alive request in the core alone (no runtime, no system calls):
# callgrind counts only `hot_path::serve`, which feeds N requests pipelined 16 per read
# through one Session with the default limiter, metrics and request IDs on.
#
# usage: benches/scripts/core-instr-per-request.sh ping|fast|users [N]
set -euo pipefail
kind=${1:-ping}; n=${2:-16000}
cd "$(dirname "$0")/../.."
cargo build -q --release -p weir-core --example hot_path
out=$(mktemp -d)
valgrind --tool=callgrind --collect-atstart=no --toggle-collect='hot_path::serve' \
  --callgrind-out-file="$out/cg" ./target/release/examples/hot_path "$kind" "$n" >/dev/null 2>"$out/log"
total=$(awk '/^summary:/ {print $2}' "$out/cg")
python3 -c "print(round($total / ($n // 16 * 16)))"
if [ -n "${ANNOTATE:-}" ]; then
  callgrind_annotate --inclusive="${INCLUSIVE:-no}" "$out/cg" | head -"${ANNOTATE}"
fi
rm -rf "$out"
