#!/usr/bin/env python3
"""CPU per request of HTTP/2 in cleartext from clients (a plain listener
with `h2c = true`) against nginx `http2 on` on a plain port, and of
HTTP/1.1 on that same listener against a listener without `h2c`.

An nginx upstream (CPU 1) answers a short body; in front of it, one
proxy at a time, pinned to CPU 0 with one worker, keep-alive upstream:

  nginx-h2c        `listen PORT; http2 on;` (older nginx: `listen PORT http2;`)
  portcullis-h2c   `[[listeners]] h2c = true`
                   (both loaded by `h2load -c50 -m10`, h2c prior knowledge)
  portcullis-h1    a listener without h2c
  portcullis-h2c-h1  the h2c listener, spoken to in HTTP/1.1
                   (both loaded by `h2load --h1 -c50`)

The proxy's CPU time (utime + stime from /proc) around N requests gives
microseconds per request. Rounds alternate the targets. Targets
127.0.0.1 only; stops by itself.

    benches/load/h2c.py --bin target/release/portcullis --rounds 3

Needs nginx, h2load and taskset. Python 3 standard library only.
"""

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402
from ab import cpu_seconds  # noqa: E402  (utime + stime from /proc)

TARGETS = "nginx-h2c,portcullis-h2c,portcullis-h1,portcullis-h2c-h1"


def nginx_h2c_conf(tmp: Path, port: int, backends: list[int]) -> str:
    """bench.py's plain nginx proxy, its listener speaking h2c (before
    nginx 1.25.1, `listen … http2`: h2c only, no HTTP/1 on that port)."""
    conf = bench.nginx_proxy_conf(tmp, port, backends, 1, gateway=False)
    listen = f"        listen {bench.HOST}:{port};\n"
    assert listen in conf
    if bench.nginx_version() >= (1, 25, 1):
        return conf.replace(listen, listen + "        http2 on;\n")
    return conf.replace(listen, f"        listen {bench.HOST}:{port} http2;\n")


def start(target: str, args, tmp: Path, backends: list[int]) -> tuple[subprocess.Popen, int]:
    port = bench.free_port()
    if target.startswith("nginx"):
        conf = tmp / "nginx-h2c.conf"
        conf.write_text(nginx_h2c_conf(tmp, port, backends))
        cmd = ["nginx", "-p", str(tmp), "-e", str(tmp / "nginx-h2c-error.log"), "-c", str(conf)]
    else:
        mode = "h2c" if target.startswith("portcullis-h2c") else "plain"
        text = bench.portcullis_conf(port, bench.free_port(), backends, 1, mode=mode, keepalive=128)
        conf = tmp / f"{target}.toml"
        conf.write_text(text)
        cmd = [args.bin, "run", "-c", str(conf)]
    p = bench.spawn(["taskset", "-c", "0", *cmd])
    bench.wait_port(port, p, timeout=60)
    return p, port


def run(target: str, args, tmp: Path, backends: list[int]) -> float:
    """CPU µs per request of one target."""
    p, port = start(target, args, tmp, backends)
    try:
        h1 = target in ("portcullis-h1", "portcullis-h2c-h1")
        proto = ["--h1"] if h1 else ["-m", "10"]
        load = ["taskset", "-c", "1", "h2load", *proto, "-c", "50"]
        url = f"http://{bench.HOST}:{port}/"
        subprocess.run(load + ["-n", "20000", url], capture_output=True, check=True)
        pids = bench.proc_tree(p.pid)
        before = cpu_seconds(pids)
        out = subprocess.run(load + ["-n", str(args.n), url], capture_output=True, text=True,
                             check=True).stdout
        after = cpu_seconds(pids)
        if f"{args.n} succeeded" not in out:
            raise RuntimeError(f"{target}: not every request succeeded:\n{out}")
        if not h1 and "h2c" not in out:
            raise RuntimeError(f"{target}: h2load did not speak h2c:\n{out}")
        return (after - before) / args.n * 1e6
    finally:
        bench.stop(p)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default="target/release/portcullis")
    ap.add_argument("-n", type=int, default=200_000, help="measured requests per run")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--targets", default=TARGETS)
    args = ap.parse_args()
    targets = args.targets.split(",")
    with tempfile.TemporaryDirectory(prefix="h2c-bench-") as d:
        tmp = Path(d)
        upstream, backends = bench.start_upstream(tmp, 1, prefix=["taskset", "-c", "1"])
        try:
            results: dict[str, list[float]] = {t: [] for t in targets}
            for r in range(args.rounds):
                for t in targets:
                    results[t].append(run(t, args, tmp, backends))
                    bench.log(f"round {r + 1} {t}: {results[t][-1]:.1f} µs CPU per request")
        finally:
            bench.stop(upstream)
    med = {t: bench.median(v) for t, v in results.items()}
    print(f"\n{args.n} requests per run, {args.rounds} rounds, medians\n")
    print("| target | CPU µs per request | runs |")
    print("|---|---:|---|")
    for t in targets:
        print(f"| {t} | {med[t]:.1f} | {', '.join(f'{x:.1f}' for x in results[t])} |")
    for a, b in (("portcullis-h2c", "nginx-h2c"), ("portcullis-h2c-h1", "portcullis-h1")):
        if a in med and b in med:
            print(f"\n{a} / {b}: {med[a] / med[b]:.2f}x")


if __name__ == "__main__":
    main()
