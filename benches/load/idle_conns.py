#!/usr/bin/env python3
"""Memory per idle kept-alive client connection: portcullis vs nginx.

For each target it starts the proxy (the same configs as bench.py, one
worker, in front of the same nginx upstream), sends a warm-up, reads the
proxy's resident memory (VmRSS of its whole process tree), opens N client
connections that each send one request, read its answer and then stay open
and idle (HTTP/1.1 keep-alive, plain or over TLS), reads the resident memory
again once it stops moving, and reports the growth divided by N.

    benches/load/idle_conns.py                      # 10,000 connections, plain and TLS:
                                                    # nginx, pingora-bare (as released), portcullis
    benches/load/idle_conns.py -n 2000 --modes plain

Each proxy is allowed the file descriptors it needs (nginx: worker_connections
and worker_rlimit_nofile; portcullis: the soft RLIMIT_NOFILE it inherits).
Python 3 standard library only; targets 127.0.0.1 only and stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import bench  # noqa: E402  (config generators, process helpers)

REQUEST = f"GET / HTTP/1.1\r\nHost: {bench.TLS_NAME}\r\nX-Api-Key: {bench.API_KEY}\r\n\r\n".encode()


def rss_kib(pid: int) -> int:
    """VmRSS of `pid` and its children, in KiB."""
    total = 0
    pids = [pid] + [int(p) for p in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True,
                                                   text=True).stdout.split()]
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def settled_rss(pid: int, deadline_s: float = 30.0) -> int:
    """The proxy's RSS once two readings 0.5 s apart agree within 0.5%."""
    last = rss_kib(pid)
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        time.sleep(0.5)
        now = rss_kib(pid)
        if abs(now - last) <= max(last // 200, 64):
            return now
        last = now
    return last


async def one(port: int, tls: ssl.SSLContext | None, held: list) -> None:
    reader, writer = await asyncio.open_connection(bench.HOST, port, ssl=tls,
                                                   server_hostname=bench.TLS_NAME if tls else None)
    writer.write(REQUEST)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    if b" 200 " not in head.split(b"\r\n", 1)[0]:
        raise RuntimeError(f"unexpected answer: {head[:80]!r}")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)
    held.append(writer)


async def open_idle(port: int, n: int, tls: ssl.SSLContext | None, batch: int = 200) -> list:
    held: list = []
    for start in range(0, n, batch):
        await asyncio.gather(*(one(port, tls, held) for _ in range(min(batch, n - start))))
    return held


def start(target: str, tmp: Path, backends: list[int], cert: Path, key: Path, n: int):
    port, admin = bench.free_port(), bench.free_port()
    tls = target.endswith("-tls")
    if target.startswith("nginx"):
        conf = (bench.nginx_h2tls_conf(tmp, port, backends, 1, cert, key, 64) if tls
                else bench.nginx_proxy_conf(tmp, port, backends, 1, False))
        conf = conf.replace("events { worker_connections 4096; }",
                            f"worker_rlimit_nofile {n + 1000};\nevents {{ worker_connections {n + 1000}; }}")
        path = tmp / f"{target}.conf"
        path.write_text(conf)
        p = bench.spawn(["nginx", "-p", str(tmp), "-e", str(tmp / f"{target}-error.log"), "-c", str(path)])
    elif target.startswith("pingora-bare"):
        binary = (bench.REPO / "benches" / "bare-unpatched" / "target" / "release" / "bare_pingora_unpatched")
        tls_args = ["--tls-cert", str(cert), "--tls-key", str(key)] if tls else []
        p = bench.spawn([str(binary), "--listen", f"{bench.HOST}:{port}", "--threads", "1"] + tls_args
                        + [f"{bench.HOST}:{b}" for b in backends])
    else:
        path = tmp / f"{target}.toml"
        path.write_text(bench.portcullis_conf(port, admin, backends, 1, (cert, key) if tls else None,
                                              mode="plain", log_path=tmp / f"{target}-access.log"))
        p = bench.spawn([str(bench.REPO / "target" / "release" / "portcullis"), "run", "-c", str(path)])
    bench.wait_port(port, p, timeout=30)
    return p, port, tls


def measure(target: str, tmp: Path, backends: list[int], cert: Path, key: Path, n: int) -> dict:
    p, port, tls = start(target, tmp, backends, cert, key, n)
    ctx = None
    if tls:
        ctx = ssl.create_default_context(cafile=str(cert))
        ctx.set_alpn_protocols(["http/1.1"])
    loop = asyncio.new_event_loop()
    try:
        # Warm-up: allocator, pools and the upstream connections settle first.
        for w in loop.run_until_complete(open_idle(port, 200, ctx)):
            w.close()
        before = settled_rss(p.pid)
        held = loop.run_until_complete(open_idle(port, n, ctx))
        after = settled_rss(p.pid)
        for w in held:
            w.close()
        return {"target": target, "before_kib": before, "after_kib": after,
                "per_conn_bytes": (after - before) * 1024 / n}
    finally:
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()
        bench.stop(p)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=10_000, help="idle client connections")
    ap.add_argument("--modes", default="plain,tls", help="plain, tls or both")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = args.n + 1000  # each process holds the n connections (client side or proxy side) and a few more
    try:  # inherited by the proxies; raising the hard limit needs root
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, max(hard, need)))
    except (ValueError, OSError):
        sys.exit(f"RLIMIT_NOFILE hard limit {hard} < {need}: raise it (ulimit -Hn) or lower -n")
    tmp = Path(tempfile.mkdtemp(prefix="portcullis-idle-"))
    cert, key = bench.make_cert(tmp)
    upstream, backends = bench.start_upstream(tmp, 1)
    rows = []
    try:
        for mode in args.modes.split(","):
            suffix = "-tls" if mode == "tls" else ""
            for target in (f"nginx{suffix}", f"pingora-bare{suffix}", f"portcullis{suffix}"):
                rows.append(measure(target, tmp, backends, cert, key, args.n))
                print(f"  {rows[-1]}", file=sys.stderr)
    finally:
        bench.stop(upstream)
    print(f"{args.n} idle kept-alive HTTP/1.1 client connections, one worker, loopback")
    print("| target | RSS before | RSS with the connections | per connection | vs nginx |")
    print("|---|---:|---:|---:|---:|")
    base = {}
    for r in rows:
        kind = "tls" if r["target"].endswith("-tls") else "plain"
        if r["target"].startswith("nginx"):
            base[kind] = r["per_conn_bytes"]
        ratio = r["per_conn_bytes"] / base[kind] if base.get(kind) else float("nan")
        print(f"| {r['target']} | {r['before_kib'] / 1024:.1f} MiB | {r['after_kib'] / 1024:.1f} MiB "
              f"| {r['per_conn_bytes'] / 1024:.1f} KiB | {ratio:.2f}× |")


if __name__ == "__main__":
    main()
