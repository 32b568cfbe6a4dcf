#!/usr/bin/env bash
# What a /metrics scrape costs with N idle keep-alive connections open: its cost must not grow
# with N (process figures are sampled off the I/O path, never per scrape).
# usage: benches/scripts/metrics-under-idle.sh BINARY [IDLE...]   (default IDLE: 0 10000)
# Prints, per N: median and p99 of 500 sequential scrapes on one keep-alive connection.
# 10,000 idle connections need 10,000 descriptors in this script and in the server.
set -euo pipefail
bin=$1; shift; counts=("${@:-0 10000}"); [ $# -eq 0 ] && counts=(0 10000)
for n in "${counts[@]}"; do
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  SERVER_PORT=127.0.0.1:$port ACCESS_LOG=false IO_THREADS=1 RATE_LIMIT=0 taskset -c 0 "$bin" >/dev/null 2>&1 &
  pid=$!
  python3 - "$port" "$n" <<'PY'
import resource, socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
for _ in range(100):
    try:
        socket.create_connection(("127.0.0.1", port), 0.2).close(); break
    except OSError:
        time.sleep(0.05)
idle = []
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port), 10)
    s.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
    s.recv(4096)
    idle.append(s)
time.sleep(1.5)  # let the sampler see them
c = socket.create_connection(("127.0.0.1", port), 10)
req = b"GET /metrics?format=prometheus HTTP/1.1\r\nHost: x\r\n\r\n"
times = []
for i in range(520):
    t = time.perf_counter()
    c.sendall(req)
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += c.recv(65536)
    head, _, body = buf.partition(b"\r\n\r\n")
    length = next(int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:"))
    while len(body) < length:
        body += c.recv(65536)
    if i >= 20:
        times.append(time.perf_counter() - t)
times.sort()
fds = [l for l in body.decode().splitlines() if l.startswith("process_open_fds")]
print(f"idle={n:>6}  scrape median {times[len(times)//2]*1e6:8.0f} us  p99 {times[int(len(times)*0.99)]*1e6:8.0f} us  ({fds[0] if fds else ''})")
PY
  kill -TERM $pid; wait $pid 2>/dev/null || true
done
