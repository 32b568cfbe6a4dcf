#!/usr/bin/env bash
# User-space instructions per keep-alive request, counted by callgrind (stable across runs,
# unlike timings). Two whole server runs serve N1 and N2 requests on one keep-alive connection
# (pipelined 16 at a time, after the same warm-up); the difference of their totals over
# N2 - N1 is the cost of one request, start-up and shutdown cancelling out.
#
# usage: benches/scripts/instr-per-request.sh ping|fast|fast-log 'SERVER COMMAND'
#   With TLS=1 the client speaks TLS (start the server with TLS_CERT and TLS_KEY).
#   SERVER COMMAND listens on 127.0.0.1:$PORT, e.g.
#   'env ACCESS_LOG=false SERVER_PORT=127.0.0.1:$PORT IO_THREADS=1 ./target/release/weir-tokio'
set -euo pipefail
kind=$1; cmd=$2; N1=${N1:-2000}; N2=${N2:-12000}
client() {  # port count kind: sends and checks `count` requests, 16 per batch
python3 - "$@" <<'PY'
import os, socket, ssl, sys
port, n, kind = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
if kind == "ping":
    req = b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n"
else:
    body = b'{"number": 42}'
    req = (b"POST /api/v1/compute/fast HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
s = socket.create_connection(("127.0.0.1", port), 10)
if os.environ.get("TLS") == "1":  # the server was started with TLS_CERT/TLS_KEY
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    s = ctx.wrap_socket(s, server_hostname="localhost")
buf, done = b"", 0
while done < n:
    k = min(16, n - done)
    s.sendall(req * k)
    for _ in range(k):
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                sys.exit("closed after %d responses" % done)
            buf += chunk
        head, _, rest = buf.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            sys.exit("bad response: %r" % head[:80])
        length = next(int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:"))
        while len(rest) < length:
            rest += s.recv(65536)
        buf = rest[length:]
        done += 1
PY
}
total() {  # requests -> total instructions of one whole server run
  export PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  local out; out=$(mktemp -d)
  valgrind --tool=callgrind --trace-children=yes --callgrind-out-file="$out/cg.%p" bash -c "exec $cmd" >"$out/log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 300); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1',$PORT),0.2)" 2>/dev/null && break; sleep 0.1
  done
  local k=${kind%-log}
  client "$PORT" 200 "$k"
  client "$PORT" "$1" "$k" || { kill "$pid"; echo "requests failed" >&2; return 1; }
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  cat "$out"/cg.* | awk '/^summary:/ {s += $2} END {print s}'
  rm -rf "$out"
}
a=$(total "$N1"); b=$(total "$N2")
python3 -c "print(round(($b - $a) / ($N2 - $N1)))"
