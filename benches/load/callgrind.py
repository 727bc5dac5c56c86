#!/usr/bin/env python3
"""Instructions per request of portcullis, counted by callgrind.

Instruction counts are repeatable where wall-clock time is not (a busy or
shared machine moves them by well under 1%), so this is how to compare two
configurations or two builds of portcullis. For each mode it starts an nginx
upstream, runs `target/release/portcullis` under `valgrind --tool=callgrind`
with the same config `bench.py` generates for that mode, sends a warm-up,
zeroes the counters, sends N requests (h2load --h1, keep-alive, X-Api-Key on
every request), dumps the counters and divides.

    benches/load/callgrind.py                       # plain, auth, gateway; N=20000
    benches/load/callgrind.py --modes plain,auth -n 50000
    benches/load/callgrind.py --h2 --modes bare,plain   # HTTP/2 over TLS (-m 10 streams),
                                                        # bare Pingora vs portcullis

Needs valgrind, nginx and h2load (`benches/load/run.sh` installs the last
two). Takes about a minute per mode. Python 3 standard library only.
"""

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).parent))
import bench  # noqa: E402  (the config generators and helpers)


def total_ir(out_file: Path) -> int:
    text = out_file.read_text(errors="replace")
    m = re.search(r"^summary:\s+(\d+)", text, re.M) or re.search(r"^totals:\s+(\d+)", text, re.M)
    if not m:
        raise RuntimeError(f"no totals in {out_file}")
    return int(m.group(1))


def load(port: int, n: int, clients: int, h2: bool = False, streams: int = 10) -> None:
    if h2:
        target = ["-m", str(streams), f"--connect-to={bench.HOST}:{port}", f"https://{bench.TLS_NAME}:{port}/"]
    else:
        target = ["--h1", f"http://{bench.HOST}:{port}/"]
    r = subprocess.run(["h2load", "-n", str(n), "-c", str(clients), "-H",
                        f"X-Api-Key: {bench.API_KEY}"] + target,
                       capture_output=True, text=True, timeout=600)
    m = re.search(r"(\d+) succeeded", r.stdout)
    ok = int(m.group(1)) if m else 0
    m2 = re.search(r"status codes: (\d+) 2xx", r.stdout)
    if ok < n or (m2 and int(m2.group(1)) < n):
        raise RuntimeError(f"h2load: not all {n} requests succeeded with 2xx:\n{r.stdout}")


def measure(mode: str, binary: Path, bare: Path, bare_patched: Path, backends: list[int], tmp: Path, n: int, clients: int,
            tls: Optional[tuple[Path, Path]], streams: int) -> float:
    # Idle upstream connections kept: at least the requests in flight, as in bench.py.
    keepalive = max(128, clients * (streams if tls else 1))
    port, admin = bench.free_port(), bench.free_port()
    if mode.startswith("bare"):
        patched = mode.endswith("-patched")
        mode_base = mode.removesuffix("-patched")
        tls_args = ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])] if tls else []
        tls_args += ["--respond"] if mode_base == "bare-respond" else []
        cmd = [str(bare_patched if patched else bare), "--listen", f"{bench.HOST}:{port}", "--threads", "1",
               "--keepalive-pool", str(keepalive)] + tls_args \
            + [f"{bench.HOST}:{b}" for b in backends]
    else:
        conf = tmp / f"cg-{mode}.toml"
        conf.write_text(bench.portcullis_conf(port, admin, backends, 1, tls, mode=mode,
                                              log_path=tmp / f"cg-{mode}-access.log", keepalive=keepalive))
        cmd = [str(binary), "run", "-c", str(conf)]
    out = tmp / f"callgrind.{mode}.out"
    p = bench.spawn(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"] + cmd,
                    stdout=open(tmp / f"cg-{mode}.log", "wb"), stderr=subprocess.STDOUT)
    try:
        bench.wait_port(port, p, timeout=120)
        load(port, 2_000, clients, h2=tls is not None, streams=streams)  # warm-up: connections, allocator, caches
        subprocess.run(["callgrind_control", "-z", str(p.pid)], check=True, capture_output=True)
        load(port, n, clients, h2=tls is not None, streams=streams)
        for f in tmp.glob(f"callgrind.{mode}.out*"):
            f.unlink()
        subprocess.run(["callgrind_control", "-d", str(p.pid)], check=True, capture_output=True)
        deadline = time.time() + 60
        dumps = []
        while time.time() < deadline and not dumps:
            time.sleep(0.2)
            dumps = [f for f in tmp.glob(f"callgrind.{mode}.out*") if f.stat().st_size > 0]
        if not dumps:
            raise RuntimeError("callgrind wrote no dump")
        time.sleep(0.5)  # let every thread's part be written
        return sum(total_ir(f) for f in tmp.glob(f"callgrind.{mode}.out*")) / n
    finally:
        bench.stop(p, timeout=20)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    root = Path(__file__).resolve().parents[2]
    ap.add_argument("--bin", type=Path, default=root / "target" / "release" / "portcullis")
    ap.add_argument("--bare-bin", type=Path,
                    default=root / "benches" / "bare-unpatched" / "target" / "release" / "bare_pingora_unpatched",
                    help="bare Pingora as released (modes bare, bare-respond)")
    ap.add_argument("--bare-patched-bin", type=Path, default=root / "target" / "release" / "examples" / "bare_pingora",
                    help="bare Pingora with patches/ (modes bare-patched, bare-respond-patched)")
    ap.add_argument("--modes", default="plain,auth,gateway",
                    help="comma list of plain, auth, gateway, resilient (gateway with outlier, breaker, retry budget, max_in_flight), cache (portcullis configs; cache: all hits), bare (bare Pingora as released), bare-respond (bare Pingora answering itself, no upstream), "
                         "bare-patched and bare-respond-patched (the same built with patches/)")
    ap.add_argument("--h2", action="store_true", help="HTTP/2 over TLS (generated certificate) instead of HTTP/1.1")
    ap.add_argument("-n", type=int, default=20_000, help="measured requests per mode")
    ap.add_argument("-c", type=int, default=10, help="client connections")
    ap.add_argument("-m", type=int, default=10, help="with --h2: concurrent streams per connection")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="portcullis-callgrind-"))
    upstream, backends = bench.start_upstream(tmp, 1)
    tls = bench.make_cert(tmp) if args.h2 else None
    try:
        results = {m: measure(m, args.bin, args.bare_bin, args.bare_patched_bin, backends, tmp, args.n, args.c, tls, args.m)
                   for m in args.modes.split(",")}
    finally:
        bench.stop(upstream)
    base_name = "bare" if "bare" in results else "plain"
    base = results.get(base_name)
    print(f"{'HTTP/2 over TLS' if args.h2 else 'HTTP/1.1'}, {args.n} requests, {args.c} connections"
          + (f" x {args.m} streams" if args.h2 else ""))
    print(f"| mode | instructions/request | vs {base_name} |\n|---|---:|---:|")
    for m, ir in results.items():
        ratio = f"{ir / base:.3f}×" if base else "—"
        print(f"| {m} | {ir:,.0f} | {ratio} |")


if __name__ == "__main__":
    main()
