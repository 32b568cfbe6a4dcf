#!/usr/bin/env python3
"""Heap a client can make one connection hold: starts a weir binary, opens N connections of
one kind, and prints the growth of the server's RSS per connection (KiB).

    memory-per-connection.py BINARY KIND [N]

KIND:
  idle-plain      one GET /ping, then idle (keep-alive), plain TCP
  stalled-head    16 KiB of a request head, never finished
  idle-tls        one GET /ping over TLS, then idle
  stalled-hello   a ClientHello announced as 65,000 bytes, all but the last 100 sent
                  (HELLO_SEND=N: only its first N bytes)
  unread-pipeline GET /ping pipelined (4 MB) by a client that never reads
  idle-h2         HTTP/2 with prior knowledge: the preface, SETTINGS, one GET /ping, then idle
  h2-streams      HTTP/2, 10 streams open per connection (GET /api/v1/sleep?ms=60000 each);
                  the growth past idle-h2, divided by 10, is what an open stream holds

The TLS kinds make a self-signed certificate with openssl. Loopback only; the server is
stopped at the end."""
import os, socket, ssl, subprocess, sys, tempfile, time

def h2_frame(kind, flags, stream, payload):
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload

def h2_get(stream, path):
    """HEADERS (END_STREAM | END_HEADERS), literal fields without indexing, no Huffman."""
    lit = lambda n, v: bytes([0, len(n)]) + n + bytes([len(v)]) + v
    block = lit(b":method", b"GET") + lit(b":scheme", b"http") + lit(b":authority", b"t") + lit(b":path", path)
    return h2_frame(1, 0x5, stream, block)

H2_HELLO = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + h2_frame(4, 0, 0, b"")

def rss_kib(pid):
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * 4

def main():
    binary, kind = sys.argv[1], sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 500
    tls = kind in ("idle-tls", "stalled-hello")
    env = dict(os.environ, SERVER_PORT="127.0.0.1:0", ACCESS_LOG="false", RATE_LIMIT="0",
               HEADER_TIMEOUT="60s", IDLE_TIMEOUT="60s", WRITE_TIMEOUT="60s", IO_THREADS="1")
    tmp = tempfile.mkdtemp()
    if tls:
        cert, key = f"{tmp}/c.pem", f"{tmp}/k.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
                        "-days", "1", "-subj", "/CN=localhost"], check=True,
                       capture_output=True)
        env.update(TLS_CERT=cert, TLS_KEY=key)
    srv = subprocess.Popen([binary], env=env, stdout=subprocess.PIPE, stderr=(None if os.environ.get("SERVER_STDERR") else subprocess.DEVNULL))
    try:
        line = srv.stdout.readline().decode()
        host, port = line.strip().removeprefix("listening on ").rsplit(":", 1)
        addr = (host, int(port))
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        def connect():
            s = socket.create_connection(addr)
            return ctx.wrap_socket(s, server_hostname="localhost") if tls and kind == "idle-tls" else s
        # Warm up threads and allocator with a few connections of the same kind.
        warm = [connect() for _ in range(10)]
        for w in warm:
            if kind in ("idle-plain", "idle-tls"):
                w.sendall(b"GET /ping HTTP/1.1\r\nHost: t\r\n\r\n"); w.recv(4096)
            elif kind in ("idle-h2", "h2-streams"):
                w.sendall(H2_HELLO + h2_get(1, b"/ping")); time.sleep(0.01); w.recv(65536)
        time.sleep(2)
        before = rss_kib(srv.pid)
        conns = []
        burst = b"GET /ping HTTP/1.1\r\nHost: t\r\n\r\n" * (4_000_000 // 32)
        for _ in range(n):
            c = connect()
            if kind in ("idle-plain", "idle-tls"):
                c.sendall(b"GET /ping HTTP/1.1\r\nHost: t\r\n\r\n")
                c.recv(4096)
            elif kind == "idle-h2":
                c.sendall(H2_HELLO + h2_get(1, b"/ping"))
                time.sleep(0.002)
                c.recv(65536)
            elif kind == "h2-streams":
                c.sendall(H2_HELLO + b"".join(h2_get(2 * i + 1, b"/api/v1/sleep?ms=60000") for i in range(10)))
            elif kind == "stalled-head":
                c.sendall(b"GET /ping HTTP/1.1\r\nHost: t\r\nX: " + b"a" * (16 * 1024 - 40))
            elif kind == "stalled-hello":
                body = bytes([1]) + (65000).to_bytes(3, "big") + b"\x03\x03" + b"\x00" * 64996
                sent, end = 0, min(len(body) - 100, int(os.environ.get("HELLO_SEND", "65000")))
                try:
                    while sent < end:
                        chunk = body[sent:min(sent + 16384, end)]
                        c.sendall(b"\x16\x03\x01" + len(chunk).to_bytes(2, "big") + chunk)
                        sent += len(chunk)
                except OSError:
                    pass  # closed by the server: what it held is freed
            elif kind == "unread-pipeline":
                c.setblocking(False)
                try:
                    c.sendall(burst)
                except (BlockingIOError, ssl.SSLWantWriteError):
                    pass
            conns.append(c)
        # Idle connections shrink after a second; give every kind the same settle time.
        time.sleep(3)
        alive = 0
        for c in conns:
            try:
                raw = socket.socket(fileno=os.dup(c.fileno()))
                raw.setblocking(False)
                try:
                    alive += 1 if raw.recv(1, socket.MSG_PEEK) != b"" else 0
                finally:
                    raw.close()
            except BlockingIOError:
                alive += 1
            except OSError:
                pass
        after = rss_kib(srv.pid)
        print(f"{os.path.basename(binary)} {kind}: {n} connections ({alive} still open), "
              f"RSS {before} -> {after} KiB, {(after - before) / n:.1f} KiB per connection")
    finally:
        srv.terminate()
        srv.wait()

if __name__ == "__main__":
    main()
