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

sys.path.insert(0, str(Path(__file__).parent))
import bench  # noqa: E402  (the config generators and helpers)


def total_ir(out_file: Path) -> int:
    text = out_file.read_text(errors="replace")
    m = re.search(r"^summary:\s+(\d+)", text, re.M) or re.search(r"^totals:\s+(\d+)", text, re.M)
    if not m:
        raise RuntimeError(f"no totals in {out_file}")
    return int(m.group(1))


def load(port: int, n: int, clients: int) -> None:
    r = subprocess.run(["h2load", "--h1", "-n", str(n), "-c", str(clients), "-H",
                        f"X-Api-Key: {bench.API_KEY}", f"http://{bench.HOST}:{port}/"],
                       capture_output=True, text=True, timeout=600)
    m = re.search(r"(\d+) succeeded", r.stdout)
    ok = int(m.group(1)) if m else 0
    m2 = re.search(r"status codes: (\d+) 2xx", r.stdout)
    if ok < n or (m2 and int(m2.group(1)) < n):
        raise RuntimeError(f"h2load: not all {n} requests succeeded with 2xx:\n{r.stdout}")


def measure(mode: str, binary: Path, backends: list[int], tmp: Path, n: int, clients: int) -> float:
    port, admin = bench.free_port(), bench.free_port()
    conf = tmp / f"cg-{mode}.toml"
    conf.write_text(bench.portcullis_conf(port, admin, backends, 1, None, mode=mode,
                                          log_path=tmp / f"cg-{mode}-access.log"))
    out = tmp / f"callgrind.{mode}.out"
    p = bench.spawn(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                     str(binary), "run", "-c", str(conf)],
                    stdout=open(tmp / f"cg-{mode}.log", "wb"), stderr=subprocess.STDOUT)
    try:
        bench.wait_port(port, p, timeout=120)
        load(port, 2_000, clients)  # warm-up: connections, allocator, caches
        subprocess.run(["callgrind_control", "-z", str(p.pid)], check=True, capture_output=True)
        load(port, n, clients)
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
    ap.add_argument("--modes", default="plain,auth,gateway")
    ap.add_argument("-n", type=int, default=20_000, help="measured requests per mode")
    ap.add_argument("-c", type=int, default=10, help="client connections")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="portcullis-callgrind-"))
    upstream, backends = bench.start_upstream(tmp, 1)
    try:
        results = {m: measure(m, args.bin, backends, tmp, args.n, args.c) for m in args.modes.split(",")}
    finally:
        bench.stop(upstream)
    base = results.get("plain")
    print(f"| mode | instructions/request | vs plain |\n|---|---:|---:|")
    for m, ir in results.items():
        ratio = f"{ir / base:.3f}×" if base else "—"
        print(f"| {m} | {ir:,.0f} | {ratio} |")


if __name__ == "__main__":
    main()
