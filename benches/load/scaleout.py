#!/usr/bin/env python3
"""Scale-out, measured: N = 1, 2, 3 portcullis processes behind HAProxy as
the L4 balancer (`mode tcp`, `send-proxy-v2`; the gateways read the PROXY
header), sharing one redis-server for their limits.

For each N it reports, with wrk `-c50 --latency` through HAProxy:
- throughput and p50/p99 latency on an unlimited route (whose approximate
  rate limit lives in Redis, so every request pays what the shared store
  costs);
- limit accuracy: a route limited to RATE/s (burst = RATE, approximate,
  sync_interval 100 ms) driven well past its limit for the run's
  duration; requests let through against the ideal burst + RATE × T and
  the published bound (+ N × RATE × sync_interval);
- Redis's calls per request and CPU, and the gateways' CPU per request.

On a 2-core machine every process shares the same two cores, so the
throughput column shows the cost of more instances, not a fleet's gain;
the per-request figures (Redis calls, CPU, accuracy) are what carry over
to a fleet. Targets 127.0.0.1 only; stops by itself. Not run in CI.

    benches/load/scaleout.py target/release/portcullis [--duration 10] [--rate 2000]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402


def gateway_conf(port: int, admin: int, backends: list[int], redis_port: int, rate: int,
                 instances: int) -> str:
    bl = ", ".join(f'{{ address = "{bench.HOST}:{b}" }}' for b in backends)
    return f"""[server]
threads = 1
[server.trusted_proxies]
cidrs = ["127.0.0.1"]

[access_log]
enabled = false

[limit_store]
kind = "redis"
url = "redis://{bench.HOST}:{redis_port}/0"
timeout = "100ms"
instances = {instances}

[[listeners]]
address = "{bench.HOST}:{port}"
proxy_protocol = "v2"

[admin]
address = "{bench.HOST}:{admin}"

[pools.up]
backends = [ {bl} ]

[[routes]]
id = "open"
path = "/open"
pool = "up"
rate_limits = [{{ rate = "100000000/s", burst = 100000000, per = "route" }}]

[[routes]]
id = "limited"
path = "/limited"
pool = "up"
rate_limits = [{{ rate = "{rate}/s", burst = {rate}, per = "route" }}]
"""


def haproxy_conf(port: int, gateways: list[int]) -> str:
    servers = "\n".join(f"  server g{i} {bench.HOST}:{p} send-proxy-v2"
                        for i, p in enumerate(gateways))
    return f"""global
  maxconn 5000
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend f
  bind {bench.HOST}:{port}
  default_backend gw
backend gw
  balance roundrobin
{servers}
"""


def wrk(url: str, duration: int) -> dict:
    out = subprocess.run(["wrk", "-t2", "-c50", f"-d{duration}s", "--latency", url],
                         capture_output=True, text=True, check=True).stdout
    total = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    def latency(p: str) -> str:
        m = re.search(rf"\s{p}%\s+(\S+)", out)
        return m.group(1) if m else "?"
    return {"total": total, "ok": total - (int(non2xx.group(1)) if non2xx else 0),
            "rps": float(re.search(r"Requests/sec:\s+(\S+)", out).group(1)),
            "p50": latency("50"), "p99": latency("99")}


def redis_calls(port: int) -> int:
    info = subprocess.run(["redis-cli", "-p", str(port), "info", "stats"],
                          capture_output=True, text=True, check=True).stdout
    return int(re.search(r"total_commands_processed:(\d+)", info).group(1))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("binary")
    ap.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    ap.add_argument("--rate", type=int, default=2000, help="the limited route's rate per second")
    ap.add_argument("--max", type=int, default=3, help="largest N")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="scaleout-"))
    upstream, backends = bench.start_upstream(tmp, 1)
    redis_pid, redis_port = bench.redis()
    rows = []
    try:
        for n in range(1, args.max + 1):
            subprocess.run(["redis-cli", "-p", str(redis_port), "flushall"], capture_output=True, check=True)
            gws, ports = [], []
            for i in range(n):
                port, admin = bench.free_port(), bench.free_port()
                conf = tmp / f"gw{n}-{i}.toml"
                conf.write_text(gateway_conf(port, admin, backends, redis_port, args.rate, n))
                p = bench.spawn([args.binary, "run", "-c", str(conf)])
                bench.wait_port(port, p, timeout=60)
                gws.append(p)
                ports.append(port)
            lb_port = bench.free_port()
            (tmp / "haproxy.cfg").write_text(haproxy_conf(lb_port, ports))
            lb = bench.spawn(["haproxy", "-db", "-f", str(tmp / "haproxy.cfg")])
            try:
                bench.wait_port(lb_port, lb, timeout=15)
                base = f"http://{bench.HOST}:{lb_port}"
                wrk(base + "/open", 2)  # warm-up
                pids = [pid for g in gws for pid in bench.proc_tree(g.pid)]
                cpu0, calls0 = bench.cpu_ticks(pids), redis_calls(redis_port)
                redis_cpu0 = bench.cpu_ticks([redis_pid])
                open_run = wrk(base + "/open", args.duration)
                gw_cpu = bench.cpu_delta_seconds(cpu0, bench.cpu_ticks(pids))
                redis_cpu = bench.cpu_delta_seconds(redis_cpu0, bench.cpu_ticks([redis_pid]))
                calls = redis_calls(redis_port) - calls0
                started = time.monotonic()
                limited = wrk(base + "/limited", args.duration)
                elapsed = time.monotonic() - started
                ideal = args.rate + args.rate * elapsed
                bound = ideal + n * args.rate * 0.1
                rows.append({
                    "n": n, "rps": open_run["rps"], "p50": open_run["p50"], "p99": open_run["p99"],
                    "gw_us": gw_cpu / open_run["total"] * 1e6,
                    "redis_us": redis_cpu / open_run["total"] * 1e6,
                    "calls": calls / open_run["total"],
                    "allowed": limited["ok"], "ideal": ideal, "bound": bound,
                })
                print(f"N={n}: {rows[-1]}", file=sys.stderr, flush=True)
            finally:
                bench.stop(lb)
                for g in gws:
                    bench.stop(g)
    finally:
        bench.stop(upstream)
    print(f"\nScale-out behind HAProxy (L4, PROXY v2), shared limits in Redis; wrk -c50, "
          f"{args.duration} s per run; limited route {args.rate}/s burst {args.rate}, approximate, sync 100 ms\n")
    print("| N | req/s (open route) | p50 | p99 | gateway CPU/request | Redis CPU/request | Redis commands/request "
          "| limited route: let through | ideal (burst + rate×T) | published bound | over ideal |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['n']} | {r['rps']:.0f} | {r['p50']} | {r['p99']} | {r['gw_us']:.1f} µs | {r['redis_us']:.1f} µs "
              f"| {r['calls']:.3f} | {r['allowed']} | {r['ideal']:.0f} | {r['bound']:.0f} "
              f"| {100 * (r['allowed'] / r['ideal'] - 1):+.1f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
