#!/usr/bin/env python3
"""Where a proxy copies memory per request: every memmove, by size and caller.

Callgrind counts glibc's `rep movsb` copies byte by byte, so its instruction
counts overstate large copies; this measures the copies themselves. It starts
the proxy in front of the bench's nginx upstream (one worker, CPU 0), puts a
uprobe on glibc's memmove (`perf probe`, needs root and uprobes), records
N requests with a DWARF call graph, and prints copies and bytes per request
and the largest copies by caller.

    benches/load/memcpy_probe.py                               # portcullis, plain route
    benches/load/memcpy_probe.py --mode gateway -n 2000
    benches/load/memcpy_probe.py --bare target/release/examples/bare_pingora

The probe's symbol is the memmove variant this CPU's glibc picks
(`--symbol`, default __memmove_avx512_unaligned_erms; `perf probe -x
/lib/x86_64-linux-gnu/libc.so.6 --funcs | grep memmove` lists them).
"""

from __future__ import annotations

import argparse
import collections
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import bench  # noqa: E402

LIBC = "/lib/x86_64-linux-gnu/libc.so.6"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", type=Path, default=bench.REPO / "target" / "release" / "portcullis")
    ap.add_argument("--bare", type=Path, help="measure this bare_pingora binary instead of portcullis")
    ap.add_argument("--mode", default="plain", help="portcullis config (bench.py's modes)")
    ap.add_argument("-n", type=int, default=1000, help="recorded requests")
    ap.add_argument("--symbol", default="__memmove_avx512_unaligned_erms")
    ap.add_argument("--min-size", type=int, default=512, help="list copies of at least this many bytes")
    args = ap.parse_args()
    event = f"probe_libc:{args.symbol}"
    subprocess.run(["perf", "probe", "-q", "-d", event], capture_output=True)
    add = subprocess.run(["perf", "probe", "-x", LIBC, "--add", f"{args.symbol} len=%dx:u64"],
                         capture_output=True, text=True)
    if add.returncode != 0:
        sys.exit(f"perf probe failed (root and uprobes needed):\n{add.stderr}")
    tmp = Path(tempfile.mkdtemp(prefix="portcullis-memcpy-"))
    data = tmp / "perf.data"
    upstream, backends = bench.start_upstream(tmp, 1)
    try:
        port, admin = bench.free_port(), bench.free_port()
        if args.bare:
            cmd = [str(args.bare), "--listen", f"{bench.HOST}:{port}", "--threads", "1"] \
                + [f"{bench.HOST}:{b}" for b in backends]
        else:
            conf = tmp / "c.toml"
            conf.write_text(bench.portcullis_conf(port, admin, backends, 1, None, mode=args.mode,
                                                  log_path=tmp / "access.log", keepalive=128))
            cmd = [str(args.bin), "run", "-c", str(conf)]
        p = bench.spawn(["taskset", "-c", "0"] + cmd)
        bench.wait_port(port, p, timeout=30)
        load = ["h2load", "--h1", "-c", "10", "-H", f"X-Api-Key: {bench.API_KEY}", f"http://{bench.HOST}:{port}/"]
        subprocess.run(load[:2] + ["-n", "2000"] + load[2:], capture_output=True)  # warm-up
        rec = subprocess.Popen(["perf", "record", "-e", event, "--call-graph", "dwarf,8192", "-p", str(p.pid),
                                "-o", str(data)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.5)  # perf attaches asynchronously; it records nothing before this
        subprocess.run(load[:2] + ["-n", str(args.n)] + load[2:], capture_output=True)
        rec.send_signal(2)
        rec.wait()
        bench.stop(p)
    finally:
        bench.stop(upstream)
        subprocess.run(["perf", "probe", "-q", "-d", event], capture_output=True)
    out = subprocess.run(["perf", "script", "-i", str(data), "-F", "trace,ip,sym"],
                         capture_output=True, text=True).stdout
    big: collections.Counter = collections.Counter()
    count = total = 0
    for block in out.split("\n\n"):
        lines = [line for line in block.strip().split("\n") if line.strip()]
        m = re.search(r"len=(\d+)", lines[0]) if lines else None
        if not m:
            continue
        size = int(m.group(1))
        count += 1
        total += size
        caller = "?"
        for line in lines[1:]:
            parts = line.strip().split(None, 1)
            if len(parts) == 2 and "memmove" not in parts[1] and "memcpy" not in parts[1]:
                caller = parts[1][:110]
                break
        if size >= args.min_size:
            big[(size, caller)] += 1
    print(f"{count / args.n:.1f} copies and {total / args.n:,.0f} bytes per request ({args.n} requests)")
    for (size, caller), k in sorted(big.items(), key=lambda x: -x[0][0] * x[1])[:25]:
        print(f"{k / args.n:6.2f}/req {size:7,d} B  {caller}")


if __name__ == "__main__":
    main()
