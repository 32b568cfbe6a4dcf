#!/usr/bin/env bash
# TLS side by side in one run: weir-tokio and nginx (one worker) with the same ECDSA P-256
# certificate; server on core 0, wrk -t1 on core 1. Two measures: CPU per keep-alive request
# over TLS (50 connections), and full handshakes per second (wrk with `Connection: close`:
# every request is a new TLS 1.3 connection, X25519; neither server resumes sessions).
# usage: benches/scripts/tls-vs-nginx.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-8}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$dir/key.pem" \
  -out "$dir/cert.pem" -days 2 -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 2>/dev/null
cargo build --release -q -p weir-tokio
weir="env TLS_CERT=$dir/cert.pem TLS_KEY=$dir/key.pem ACCESS_LOG=false SERVER_PORT=127.0.0.1:\$PORT IO_THREADS=1 WORKER_COUNT=1 RATE_LIMIT=0 ./target/release/weir-tokio"
sed -e "s#@CERT@#$dir/cert.pem#; s#@KEY@#$dir/key.pem#; s#@DIR@#$dir#g" benches/nginx/tls.conf >"$dir/nginx.conf.in"
nginx="bash -c 'sed s/@PORT@/\$PORT/ $dir/nginx.conf.in > $dir/nginx.conf && exec nginx -c $dir/nginx.conf'"
echo "| server | connections | requests/s | p50 | p99 | CPU µs/req | user | system |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for pass in 1 2; do
  SCHEME=https benches/scripts/wrk-cpu.sh "weir-tokio keep-alive" "$weir" 50 "$secs"
  SCHEME=https benches/scripts/wrk-cpu.sh "nginx keep-alive" "$nginx" 50 "$secs"
done
for pass in 1 2; do
  SCHEME=https benches/scripts/wrk-cpu.sh "weir-tokio handshake per request" "$weir" 50 "$secs" /ping -H "Connection: close"
  SCHEME=https benches/scripts/wrk-cpu.sh "nginx handshake per request" "$nginx" 50 "$secs" /ping -H "Connection: close"
done
