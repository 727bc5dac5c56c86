#!/usr/bin/env python3
"""Before/after CPU per request of two portcullis builds, alternated.

Starts one portcullis at a time with the config `bench.py` generates for a
mode (plain, cache, auth, gateway, resilient), proxy pinned to CPU 0 and
the load and upstream to CPU 1, sends a warm-up, then a fixed number of
requests with `h2load --h1 -c50` (with `--h2`: `h2load -c50 -m10` over
TLS), and reads the proxy's CPU time (utime +
stime from /proc) around them. The two builds alternate, round after round,
so a drift of the machine falls on both; the report gives each round, the
medians, and in how many rounds the first build was cheaper. On a noisy VM
this told a 6-9% change apart where `bench.py --before-bin` could not.

    benches/load/ab.py --mode cache --rounds 8 NEW_BINARY OLD_BINARY

A binary may be a wrapper script (e.g. one that sets an environment
variable before exec'ing portcullis). Targets 127.0.0.1 only; stops by
itself. Python 3 standard library only; needs nginx, h2load and taskset.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (configs, process and upstream helpers)


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of these processes, in seconds."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def one_run(binary: str, mode: str, tmp: Path, backends: list[int], requests: int,
            tls: Optional[tuple[Path, Path]] = None, paths: int = 1) -> float:
    """CPU µs per request of `binary` serving `requests` requests (over
    HTTP/2 and TLS, `h2load -c50 -m10`, when `tls` is a certificate and key)."""
    port, admin = bench.free_port(), bench.free_port()
    conf = tmp / f"ab-{mode}.toml"
    conf.write_text(bench.portcullis_conf(port, admin, backends, 1, tls, mode=mode,
                                          log_path=tmp / "ab-access.log", keepalive=128))
    p = bench.spawn(["taskset", "-c", "0", binary, "run", "-c", str(conf)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        bench.wait_port(port, p, timeout=60)
        proto = ["-m", "10", f"--connect-to={bench.HOST}:{port}"] if tls else ["--h1"]
        header = bench.auth_header(mode, Path(tempfile.gettempdir()))
        load = ["taskset", "-c", "1", "h2load", *proto, "-c", "50", "-H", header]
        url = f"https://{bench.TLS_NAME}:{port}/" if tls else f"http://{bench.HOST}:{port}/"
        if paths > 1:
            # h2load cycles through the URIs of its input file.
            listing = tmp / f"ab-urls-{port}.txt"
            listing.write_text("".join(f"{url}p{i}\n" for i in range(paths)))
            url = "-i" + str(listing)
        subprocess.run(load + ["-n", "20000", url], capture_output=True, check=True)
        pids = bench.proc_tree(p.pid)
        redis_pids = [bench.redis()[0]] if mode.endswith("-redis") else []
        before, redis_before = cpu_seconds(pids), cpu_seconds(redis_pids)
        out = subprocess.run(load + ["-n", str(requests), url], capture_output=True, text=True, check=True).stdout
        after, redis_after = cpu_seconds(pids), cpu_seconds(redis_pids)
        if redis_pids:
            print(f"  {mode}: redis-server {(redis_after - redis_before) / requests * 1e6:.2f} µs CPU per request",
                  flush=True)
        if f"{requests} succeeded" not in out:
            raise RuntimeError(f"not every request succeeded:\n{out}")
        return (after - before) / requests * 1e6
    finally:
        bench.stop(p)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("new", help="portcullis build (or wrapper) after the change")
    ap.add_argument("old", help="portcullis build (or wrapper) before the change")
    ap.add_argument("--mode", default="plain",
                    help="bench.py config mode: plain, origin, cors, split, mirror, cache, cache-redis, auth, gateway, resilient, jwt, limits, limits-redis, auth-redis")
    ap.add_argument("--old-mode", help="the mode of OLD (default: --mode): compare two configs of one build")
    ap.add_argument("--paths", type=int, default=1,
                    help="request this many distinct paths (/p0, /p1, …) in turn instead of /")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("-n", type=int, default=300_000, help="measured requests per run")
    ap.add_argument("--h2", action="store_true",
                    help="HTTP/2 over TLS (h2load -c50 -m10, a certificate made by openssl) instead of HTTP/1.1")
    args = ap.parse_args()
    for b in (args.new, args.old):
        if not Path(b).exists():
            sys.exit(f"{b} not found")
    tmp = Path(tempfile.mkdtemp(prefix="portcullis-ab-"))
    tls = bench.make_cert(tmp) if args.h2 else None
    upstream, backends = bench.start_upstream(tmp, 1, ["taskset", "-c", "1"])
    runs: dict[str, list[float]] = {"new": [], "old": []}
    try:
        for r in range(1, args.rounds + 1):
            for side, b, mode in (("new", args.new, args.mode), ("old", args.old, args.old_mode or args.mode)):
                runs[side].append(one_run(b, mode, tmp, backends, args.n, tls, args.paths))
            print(f"round {r}: new {runs['new'][-1]:.2f} µs, old {runs['old'][-1]:.2f} µs", flush=True)
    finally:
        bench.stop(upstream)
    new, old = statistics.median(runs["new"]), statistics.median(runs["old"])
    wins = sum(n < o for n, o in zip(runs["new"], runs["old"]))
    modes = args.mode if not args.old_mode else f"{args.mode} (new) against {args.old_mode} (old)"
    print(f"mode {modes}{' over h2' if args.h2 else ''}, {args.n} requests per run, {args.rounds} rounds: CPU per request, median "
          f"new {new:.2f} µs, old {old:.2f} µs ({new / old - 1:+.1%}); new cheaper in {wins} of {args.rounds} rounds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
