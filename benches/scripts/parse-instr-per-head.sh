#!/usr/bin/env bash
# Instructions per head: weir's whole parse (`ParsedHead::parse`: the syntax, the framing
# rules, the field index) beside httparse alone on the same bytes, counted by callgrind in
# one run of `core/examples/parse_instr.rs` (the criterion pair `parse/…` without the timing
# noise).
#
# usage: benches/scripts/parse-instr-per-head.sh browser|post [N]
set -euo pipefail
kind=${1:-browser}; n=${2:-10000}
cd "$(dirname "$0")/../.."
cargo build -q --release -p weir-core --example parse_instr
out=$(mktemp -d)
count() {  # function -> instructions per head
  valgrind --tool=callgrind --collect-atstart=no --toggle-collect="parse_instr::$1" \
    --callgrind-out-file="$out/$1" ./target/release/examples/parse_instr "$kind" "$n" >/dev/null 2>"$out/log"
  awk -v n="$n" '/^summary:/ {print int($2 / n + 0.5)}' "$out/$1"
}
weir=$(count weir_parse); theirs=$(count httparse_parse)
echo "$kind: weir $weir, httparse $theirs, ratio $(python3 -c "print(round($weir / $theirs, 2))")"
rm -rf "$out"
