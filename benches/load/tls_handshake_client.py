#!/usr/bin/env python3
"""TLS handshake load client for bench.py (Python 3 standard library only).

Closed loop, like wrk: `--threads` threads, each in a loop of
  new TCP connection -> full TLS handshake (a fresh SSL object, no session
  resumption) -> one HTTP/1.1 `GET /` with `Connection: close` -> read the
  response until the server closes -> close.
So every request costs the server one full handshake. wrk and h2load cannot
do that: both keep the TLS session of a connection and resume it (TLS 1.3
PSK) when they reconnect, which measures session resumption instead, and
that depends on each server's ticket / session-cache design.

bench.py starts several of these processes (the GIL limits one process to
about one core of client work); they start together at --start-at
(CLOCK_MONOTONIC, shared by all processes) and stop starting new
connections --duration seconds later. One JSON line on stdout:
  {"ok": N, "errors": {...}, "elapsed_s": S, "cpu_s": S, "latency_us": [...],
   "tls": {"version": ..., "cipher": ..., "alpn": ...}}
latency_us = time for connect + handshake + request + response, per request.
"""

from __future__ import annotations

import argparse
import json
import resource
import socket
import ssl
import sys
import threading
import time


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--sni", default="bench.test", help="server name (SNI and Host header)")
    ap.add_argument("--threads", type=int, default=25, help="concurrent connections of this process")
    ap.add_argument("--duration", type=float, required=True, help="seconds to keep starting connections")
    ap.add_argument("--start-at", type=float, default=0.0, help="time.monotonic() value to start at")
    ap.add_argument("--header", action="append", default=[], help="extra request header 'Name: value'")
    ap.add_argument("--expect-prefix", default="", help="the body must start with this")
    a = ap.parse_args()

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # The certificate is checked once by bench.py's smoke test; here the
    # client skips chain verification to spend less CPU per handshake.
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    extra = "".join(f"{h}\r\n" for h in a.header)
    req = (f"GET / HTTP/1.1\r\nHost: {a.sni}\r\n{extra}Connection: close\r\n\r\n").encode()
    expect = a.expect_prefix.encode()

    if a.start_at:
        delay = a.start_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    start = time.monotonic()
    end = start + a.duration
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    lock = threading.Lock()
    total = {"ok": 0, "connect": 0, "tls": 0, "read": 0, "status": 0}
    lat_all: list[int] = []
    tls_info: dict = {}
    last_done = [start]

    def worker() -> None:
        ok = 0
        errs = {"connect": 0, "tls": 0, "read": 0, "status": 0}
        lat: list[int] = []
        info: dict = {}
        while time.monotonic() < end:
            t0 = time.perf_counter()
            stage = "connect"
            try:
                with socket.create_connection((a.host, a.port), timeout=10) as raw:
                    stage = "tls"
                    with ctx.wrap_socket(raw, server_hostname=a.sni) as s:
                        if not info:
                            info = {"version": s.version(), "cipher": s.cipher()[0],
                                    "alpn": s.selected_alpn_protocol(), "resumed": s.session_reused}
                        stage = "read"
                        s.sendall(req)
                        chunks = []
                        while True:
                            d = s.recv(65536)
                            if not d:
                                break
                            chunks.append(d)
                resp = b"".join(chunks)
                head, _, body = resp.partition(b"\r\n\r\n")
                if head.startswith((b"HTTP/1.1 200 ", b"HTTP/1.0 200 ")) and body.startswith(expect):
                    ok += 1
                    lat.append(int((time.perf_counter() - t0) * 1e6))
                else:
                    errs["status"] += 1
            except (OSError, ssl.SSLError):
                errs[stage] += 1
        with lock:
            total["ok"] += ok
            for k, v in errs.items():
                total[k] += v
            lat_all.extend(lat)
            if info and not tls_info:
                tls_info.update(info)
            last_done[0] = max(last_done[0], time.monotonic())

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(a.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    out = {
        "ok": total["ok"],
        "errors": {k: total[k] for k in ("connect", "tls", "read", "status")},
        "elapsed_s": last_done[0] - start,
        "cpu_s": cpu,
        "latency_us": lat_all,
        "tls": tls_info,
    }
    sys.stdout.write("HSJSON " + json.dumps(out, separators=(",", ":")) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
