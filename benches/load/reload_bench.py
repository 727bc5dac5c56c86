#!/usr/bin/env python3
"""Reload under load: a config of --routes routes (default 10,000) reloaded
again and again while wrk drives keep-alive traffic through the gateway.

Reports, per round and as medians:
- time from trigger to swap: the gateway's own `took_ms` (prepare + commit,
  from the admin API's reload answer) and the admin POST's round trip as the
  operator sees it;
- wrk p50/p99 latency and requests/s *with* reloads vs *without* (the same
  process, the same config, alternating rounds), and the errors wrk saw.

Every reload switches between two tables that differ in one route, so each
one is a real change (not reported `unchanged`). Loopback only; everything
stops by itself. Python 3 standard library only; reuses bench.py's helpers.

    SKIP_BUILD=1 benches/load/reload_bench.py --duration 10 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (the load benchmark's process and wrk helpers)

HOST = bench.HOST


def config(port: int, admin: int, backends: list[int], routes: int, variant: int) -> str:
    """`routes` prefix routes to one pool, plus `/` for the load; `variant`
    (0 or 1) names the last route differently, so the two tables differ."""
    bl = ", ".join(f'"{HOST}:{p}"' for p in backends)
    parts = [f"""[server]
threads = 1
watch_config = false

[access_log]
enabled = false

[[listeners]]
address = "{HOST}:{port}"

[admin]
address = "{HOST}:{admin}"

[pools.up]
backends = [{bl}]

[[routes]]
id = "load"
path = "/"
pool = "up"
"""]
    for i in range(routes - 1):
        name = f"r{i}" if i < routes - 2 else f"r{i}-v{variant}"
        parts.append(f'[[routes]]\nid = "{name}"\npath = "/{name}"\npool = "up"\n')
    return "\n".join(parts)


def post_reload(admin: int) -> tuple[int, dict, float]:
    req = urllib.request.Request(f"http://{HOST}:{admin}/-/reload", method="POST", data=b"")
    t0 = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            body = json.loads(r.read())
            status = r.status
    except urllib.error.HTTPError as e:
        status, body = e.code, json.loads(e.read() or b"{}")
    return status, body, (time.monotonic() - t0) * 1e3


def wrk(port: int, duration: float, connections: int) -> dict:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency", f"http://{HOST}:{port}/"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60).stdout
    return bench.parse_wrk(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--routes", type=int, default=10_000)
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of load per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--interval", type=float, default=0.5, help="seconds between two reloads")
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()

    binary = bench.REPO / "target/release/portcullis"
    tmp = Path(tempfile.mkdtemp(prefix="portcullis-reload-bench-"))
    upstream, backends = bench.start_upstream(tmp, 1)
    port, admin = bench.free_port(), bench.free_port()
    path = tmp / "portcullis.toml"
    texts = [config(port, admin, backends, args.routes, v) for v in (0, 1)]
    path.write_text(texts[0])
    log = open(tmp / "portcullis.log", "wb")
    gw = bench.spawn([str(binary), "run", "-c", str(path)], stdout=log, stderr=log)
    bench.wait_port(port, gw, timeout=60)
    bench.wait_port(admin, gw, timeout=60)
    bench.log(f"reload bench: {args.routes} routes, config {path.stat().st_size // 1024} KiB, "
              f"{args.rounds} rounds x {args.duration}s each way, reload every {args.interval}s")

    results = {"quiet": [], "reloading": [], "took_ms": [], "round_trip_ms": [], "failed_reloads": 0}
    variant = 0
    try:
        for rnd in range(args.rounds):
            results["quiet"].append(wrk(port, args.duration, args.connections))
            stop = threading.Event()

            def reloader():
                nonlocal variant
                while not stop.is_set():
                    variant ^= 1
                    path.write_text(texts[variant])
                    status, body, rtt = post_reload(admin)
                    if status == 200 and body.get("status") == "reloaded":
                        results["took_ms"].append(body["took_ms"])
                        results["round_trip_ms"].append(rtt)
                    else:
                        results["failed_reloads"] += 1
                    stop.wait(args.interval)

            t = threading.Thread(target=reloader)
            t.start()
            results["reloading"].append(wrk(port, args.duration, args.connections))
            stop.set()
            t.join()
            bench.log(f"round {rnd + 1}: quiet p99 {results['quiet'][-1]['latency_us'].get('p99')} us, "
                      f"reloading p99 {results['reloading'][-1]['latency_us'].get('p99')} us")
    finally:
        bench.stop(gw)
        bench.stop(upstream)

    def med(runs, key):
        return statistics.median(r["latency_us"][key] for r in runs)

    def errors(runs):
        return sum(sum(r["errors"].values()) + r["non_2xx_3xx"] for r in runs)

    took, rtt = sorted(results["took_ms"]), sorted(results["round_trip_ms"])
    pct = lambda xs, q: xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")  # noqa: E731
    summary = {
        "routes": args.routes,
        "reloads": len(took),
        "failed_reloads": results["failed_reloads"],
        "took_ms_p50": pct(took, 0.5), "took_ms_p99": pct(took, 0.99), "took_ms_max": took[-1] if took else None,
        "round_trip_ms_p50": pct(rtt, 0.5), "round_trip_ms_max": rtt[-1] if rtt else None,
        "quiet": {"rps": statistics.median(r["rps"] for r in results["quiet"]),
                  "p50_us": med(results["quiet"], "p50"), "p99_us": med(results["quiet"], "p99"),
                  "errors": errors(results["quiet"])},
        "reloading": {"rps": statistics.median(r["rps"] for r in results["reloading"]),
                      "p50_us": med(results["reloading"], "p50"), "p99_us": med(results["reloading"], "p99"),
                      "errors": errors(results["reloading"])},
    }
    q, r = summary["quiet"], summary["reloading"]
    print(f"""
| {args.routes} routes | requests/s | p50 | p99 | errors |
|---|---|---|---|---|
| no reloads | {q['rps']:.0f} | {q['p50_us']:.0f} µs | {q['p99_us']:.0f} µs | {q['errors']} |
| reload every {args.interval}s | {r['rps']:.0f} | {r['p50_us']:.0f} µs | {r['p99_us']:.0f} µs | {r['errors']} |
| ratio | {r['rps'] / q['rps']:.2f}x | {r['p50_us'] / q['p50_us']:.2f}x | {r['p99_us'] / q['p99_us']:.2f}x | |

{summary['reloads']} reloads ({summary['failed_reloads']} failed); trigger to swap (gateway): \
p50 {summary['took_ms_p50']:.1f} ms, p99 {summary['took_ms_p99']:.1f} ms, max {summary['took_ms_max']:.1f} ms; \
admin POST round trip p50 {summary['round_trip_ms_p50']:.1f} ms, max {summary['round_trip_ms_max']:.1f} ms""")
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "runs": results}, indent=1))
    return 0 if summary["failed_reloads"] == 0 and r["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
