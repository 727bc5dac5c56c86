#!/usr/bin/env python3
"""Soak: minutes of mixed traffic, with faults and reloads, against a
release portcullis on loopback. Not run in CI.

What runs (everything on 127.0.0.1, stopped at the end or on Ctrl-C):
- two nginx backends (the load bench's upstream) and a flaky backend
  (Python) that cycles through: ok, 503, connection reset, stall past the
  read timeout, garbage, closing kept-alive connections after a response;
- portcullis (target/release/portcullis) with four routes: plain, API key
  with a per-consumer rate limit (some 429s) and the JSON access log, a
  caching route with many keys, and a pool mixing nginx with the flaky
  backend behind outlier detection, a breaker, retries and a retry budget;
- wrk in 30 s slices with a Lua script mixing those routes, POSTs with
  bodies and 404s;
- chaos alongside: the flaky backend's mode changes every 10 s, the config
  is rewritten and reloaded every 20 s (a rate limit changes), and every
  5 s 20 slow clients send half a request head (header_timeout 2 s: 408).

Every 5 s it samples the gateway's RSS, open fds, alive proxy tasks and
its /metrics. The report: RSS over time (flat is the target), fds and
tasks at the start and the end, requests and errors by kind (status codes,
upstream failures, refused connections, wrk socket errors), p50/p99 per
slice, reloads. The JSON goes to bench-results/soak-*.json.

    cargo build --release --bins
    python3 benches/soak/soak.py --minutes 10
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "load"))
import bench  # noqa: E402  (the load bench's process and nginx helpers)
from bench import HOST, free_port, log, spawn, stop_all, wait_port  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
KEY = "soak-key-1"
MODES = ["ok", "503", "reset", "stall", "garbage", "close"]


# --------------------------------------------------------------------------
# The flaky backend: raw HTTP/1.1, keep-alive, mode shared by all connections.
# --------------------------------------------------------------------------

class Flaky:
    def __init__(self) -> None:
        self.mode = "ok"
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((HOST, 0))
        self.sock.listen(512)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        conn.settimeout(30)
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                head, _, buf = buf.partition(b"\r\n\r\n")
                m = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
                need = int(m.group(1)) if m else 0
                while len(buf) < need:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                buf = buf[need:]
                mode = self.mode
                if mode == "reset":
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    return
                if mode == "stall":
                    time.sleep(3)  # past the pool's 1 s read timeout
                    return
                if mode == "garbage":
                    conn.sendall(b"SSH-2.0-not-http\r\n\r\n")
                    return
                status = "503 Unavailable" if mode == "503" else "200 OK"
                body = b"flaky\n"
                conn.sendall(b"HTTP/1.1 " + status.encode() + b"\r\ncontent-length: "
                             + str(len(body)).encode() + b"\r\n\r\n" + body)
                if mode == "close":
                    return
        except OSError:
            return
        finally:
            conn.close()


# --------------------------------------------------------------------------
# Config, traffic, chaos
# --------------------------------------------------------------------------

def config(port: int, admin: int, nginx: list[int], flaky: int, log_path: Path, rate: int) -> str:
    digest = hashlib.sha256(KEY.encode()).hexdigest()
    up = ", ".join(f'{{ address = "{HOST}:{p}" }}' for p in nginx)
    return f"""[server]
threads = 2
watch_config = false

[server.client]
header_timeout = "2s"
body_timeout = "5s"

[access_log]
path = "{log_path}"

[[listeners]]
address = "{HOST}:{port}"

[admin]
address = "{HOST}:{admin}"

[cache]
max_size = "16MiB"

[pools.up]
backends = [ {up} ]

[pools.mixed]
backends = [ {{ address = "{HOST}:{nginx[0]}" }}, {{ address = "{HOST}:{flaky}" }} ]
retries = 1
timeouts = {{ read = "1s" }}
[pools.mixed.outlier]
consecutive_failures = 3
base_ejection = "5s"
[pools.mixed.breaker]
consecutive_failures = 50
open_for = "5s"
[pools.mixed.retry_budget]

[[routes]]
id = "plain"
path = "/"
pool = "up"

[[routes]]
id = "api"
path = "/api"
pool = "up"
auth = "api_key"
rate_limits = [{{ rate = "{rate}/s", burst = {rate}, per = "consumer" }}]

[[routes]]
id = "cached"
path = "/cached"
pool = "up"
[routes.cache]
ttl = "2s"

[[routes]]
id = "mixed"
path = "/mixed"
pool = "mixed"
retry_on = ["reset", "timeout", "5xx"]

[[consumers]]
id = "soak"
keys = [{{ prefix = "soak-key", digest = "{digest}" }}]
scopes = [{{ routes = ["*"] }}]
"""


WRK_LUA = r"""
local paths = {"/", "/api/x", "/cached?i=", "/mixed", "/missing/x", "/api/post"}
local weights = {30, 25, 20, 15, 5, 5}
local total = 0
for _, w in ipairs(weights) do total = total + w end
request = function()
  local r = math.random(total)
  local i = 1
  while r > weights[i] do r = r - weights[i]; i = i + 1 end
  local p = paths[i]
  if p == "/cached?i=" then
    return wrk.format("GET", p .. math.random(500))
  elseif p == "/api/post" then
    return wrk.format("POST", "/api/post", {["X-Api-Key"] = "soak-key-1", ["Content-Type"] = "application/json"}, string.rep("x", 2048))
  elseif p == "/api/x" then
    return wrk.format("GET", p, {["X-Api-Key"] = "soak-key-1"})
  end
  return wrk.format("GET", p)
end
"""


def slow_clients(port: int, n: int) -> int:
    """Open `n` connections that send half a request head; count those the
    gateway answered 408 and closed."""
    socks = []
    for _ in range(n):
        try:
            s = socket.create_connection((HOST, port), timeout=5)
            s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ")
            socks.append(s)
        except OSError:
            pass
    answered = 0
    for s in socks:
        try:
            s.settimeout(6)
            data = s.recv(4096)
            answered += data.startswith(b"HTTP/1.1 408")
        except OSError:
            pass
        finally:
            s.close()
    return answered


class Chaos(threading.Thread):
    def __init__(self, args, flaky: Flaky, cfg_path: Path, cfg, admin: int, port: int) -> None:
        super().__init__(daemon=True)
        self.args, self.flaky, self.cfg_path, self.cfg = args, flaky, cfg_path, cfg
        self.admin, self.port = admin, port
        self.stop = threading.Event()
        self.reloads = {"ok": 0, "failed": 0}
        self.slow = {"sent": 0, "answered_408": 0}
        self.modes: list[str] = []

    def run(self) -> None:
        tick = 0
        while not self.stop.wait(5):
            tick += 5
            if tick % 10 == 0:
                self.flaky.mode = MODES[(tick // 10) % len(MODES)]
                self.modes.append(self.flaky.mode)
            if tick % 20 == 0:
                rate = random.choice([500, 1000, 2000, 5000])
                self.cfg_path.write_text(self.cfg(rate))
                try:
                    req = urllib.request.Request(f"http://{HOST}:{self.admin}/-/reload", method="POST")
                    with urllib.request.urlopen(req, timeout=10) as r:
                        self.reloads["ok" if r.status == 200 else "failed"] += 1
                except Exception:
                    self.reloads["failed"] += 1
            self.slow["sent"] += 20
            self.slow["answered_408"] += slow_clients(self.port, 20)


# --------------------------------------------------------------------------
# Sampling
# --------------------------------------------------------------------------

def scrape(admin: int) -> str:
    with urllib.request.urlopen(f"http://{HOST}:{admin}/metrics", timeout=10) as r:
        return r.read().decode()


def metric_sums(text: str, name: str, label: str) -> dict[str, float]:
    """Sum of `name`'s samples by the value of `label`."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        m = re.search(label + r'="([^"]*)"', line)
        key = m.group(1) if m else ""
        out[key] = out.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def sample(pid: int, admin: int, t0: float) -> dict:
    rss_kb = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss_kb = int(line.split()[1])
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    text = scrape(admin)
    tasks = re.search(r"^portcullis_proxy_alive_tasks (\S+)$", text, re.M)
    return {"t": round(time.monotonic() - t0, 1), "rss_mib": round(rss_kb / 1024, 1), "fds": fds,
            "tasks": float(tasks.group(1)) if tasks else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--binary", default=str(REPO / "target/release/portcullis"))
    args = ap.parse_args()
    binary = Path(args.binary)
    if not binary.exists():
        log(f"soak: {binary} missing; run `cargo build --release --bins` first")
        return 1
    for tool in ("wrk", "nginx"):
        if subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True).returncode:
            log(f"soak: {tool} missing (benches/load/run.sh installs it)")
            return 1

    tmp = Path(tempfile.mkdtemp(prefix="portcullis-soak-"))
    try:
        _, nginx = bench.start_upstream(tmp, workers=1)
        flaky = Flaky()
        port, admin = free_port(), free_port()
        log_path = tmp / "access.log"
        cfg = lambda rate: config(port, admin, nginx, flaky.port, log_path, rate)  # noqa: E731
        cfg_path = tmp / "portcullis.toml"
        cfg_path.write_text(cfg(2000))
        with open(tmp / "portcullis.log", "ab") as lf:
            gw = spawn([str(binary), "run", "-c", str(cfg_path)], stdout=lf, stderr=lf,
                       env={**os.environ, "RUST_LOG": "warn"})
        wait_port(port, gw)
        wait_port(admin, gw)
        lua = tmp / "soak.lua"
        lua.write_text(WRK_LUA)
        before = scrape(admin)
        t0 = time.monotonic()
        samples = [sample(gw.pid, admin, t0)]
        chaos = Chaos(args, flaky, cfg_path, cfg, admin, port)
        chaos.start()
        stop_sampling = threading.Event()

        def sampler() -> None:
            while not stop_sampling.wait(5):
                try:
                    samples.append(sample(gw.pid, admin, t0))
                except Exception as e:  # the gateway died: reported below
                    log(f"soak: sampling failed: {e}")
                    return

        threading.Thread(target=sampler, daemon=True).start()
        slices = []
        end = t0 + args.minutes * 60
        while time.monotonic() < end and gw.poll() is None:
            d = max(5, min(30, int(end - time.monotonic())))
            p = spawn(["wrk", "-t2", f"-c{args.connections}", f"-d{d}s", "--latency", "-s", str(lua),
                       f"http://{HOST}:{port}/"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            out, _ = p.communicate(timeout=d + 60)
            r = bench.parse_wrk(out.decode("utf-8", "replace"))
            slices.append({"t": round(time.monotonic() - t0), "rps": round(r["rps"]),
                           "p50_ms": round(r["latency_us"].get("p50", 0) / 1000, 2),
                           "p99_ms": round(r["latency_us"].get("p99", 0) / 1000, 2),
                           "socket_errors": r["errors"], "non_2xx_3xx": r["non_2xx_3xx"]})
            log(f"soak: t={slices[-1]['t']}s {slices[-1]['rps']} req/s p99 {slices[-1]['p99_ms']} ms, "
                f"RSS {samples[-1]['rss_mib']} MiB, fds {samples[-1]['fds']}, tasks {samples[-1]['tasks']}")
        chaos.stop.set()
        chaos.join(timeout=30)
        time.sleep(6)  # let the slow clients and kept-alive connections close
        samples.append(sample(gw.pid, admin, t0))
        stop_sampling.set()
        alive = gw.poll() is None
        after = scrape(admin) if alive else before
        report = summarize(args, samples, slices, before, after, chaos, alive, tmp)
        out_dir = REPO / "bench-results"
        out_dir.mkdir(exist_ok=True)
        path = out_dir / f"soak-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
        path.write_text(json.dumps(report, indent=2))
        print_report(report)
        log(f"soak: JSON in {path}")
        return 0 if alive else 1
    finally:
        stop_all()


def delta(before: str, after: str, name: str, label: str) -> dict[str, int]:
    a, b = metric_sums(after, name, label), metric_sums(before, name, label)
    return {k: int(v - b.get(k, 0)) for k, v in sorted(a.items()) if v - b.get(k, 0)}


def summarize(args, samples, slices, before, after, chaos, alive, tmp) -> dict:
    warm = [s for s in samples if s["t"] >= 60] or samples
    minute = lambda lo, hi: [s["rss_mib"] for s in samples if lo <= s["t"] < hi]  # noqa: E731
    second = minute(60, 120) or [warm[0]["rss_mib"]]
    last_t = samples[-1]["t"]
    last = minute(last_t - 60, last_t + 1) or [samples[-1]["rss_mib"]]
    p99s = [s["p99_ms"] for s in slices]
    sock = {}
    for s in slices:
        for k, v in s["socket_errors"].items():
            sock[k] = sock.get(k, 0) + v
    return {
        "minutes": args.minutes,
        "alive_at_end": alive,
        "requests": sum(delta(before, after, "portcullis_http_requests_total", "code").values()),
        "by_code": delta(before, after, "portcullis_http_requests_total", "code"),
        "upstream_failures": delta(before, after, "portcullis_upstream_failures_total", "reason"),
        "upstream_retries": delta(before, after, "portcullis_upstream_retries_total", "reason"),
        "breaker_transitions": delta(before, after, "portcullis_upstream_breaker_transitions_total", "to"),
        "ejections": sum(delta(before, after, "portcullis_upstream_ejections_total", "pool").values()),
        "refused_connections": delta(before, after, "portcullis_downstream_refused_total", "reason"),
        "wrk_socket_errors": sock,
        "reloads": chaos.reloads,
        "slow_clients": chaos.slow,
        "flaky_modes": sorted(set(chaos.modes)),
        "rss_mib": {"start": samples[0]["rss_mib"], "second_minute_median": statistics.median(second),
                    "last_minute_median": statistics.median(last),
                    "max": max(s["rss_mib"] for s in samples), "end": samples[-1]["rss_mib"]},
        "fds": {"start": samples[0]["fds"], "max": max(s["fds"] for s in samples), "end": samples[-1]["fds"]},
        "tasks": {"start": samples[0]["tasks"], "max": max((s["tasks"] or 0) for s in samples),
                  "end": samples[-1]["tasks"]},
        "p99_ms": {"median": statistics.median(p99s) if p99s else None, "max": max(p99s) if p99s else None},
        "rps_median": statistics.median([s["rps"] for s in slices]) if slices else None,
        "slices": slices,
        "samples": samples,
        "panics_in_log": (tmp / "portcullis.log").read_text(errors="replace").count("panicked"),
    }


def print_report(r: dict) -> None:
    print(f"soak: {r['minutes']} min, gateway alive at the end: {r['alive_at_end']}, "
          f"panics in its log: {r['panics_in_log']}")
    print(f"requests {r['requests']:,} (median {r['rps_median']} req/s), by code: {r['by_code']}")
    print(f"p99 per 30 s slice: median {r['p99_ms']['median']} ms, max {r['p99_ms']['max']} ms")
    print(f"upstream failures {r['upstream_failures']}, retries {r['upstream_retries']}, "
          f"breaker {r['breaker_transitions']}, ejections {r['ejections']}")
    print(f"refused connections {r['refused_connections']}, slow clients {r['slow_clients']}, "
          f"wrk socket errors {r['wrk_socket_errors']}")
    print(f"reloads {r['reloads']}, flaky backend modes {r['flaky_modes']}")
    rss = r["rss_mib"]
    print(f"RSS MiB: start {rss['start']}, 2nd minute median {rss['second_minute_median']}, "
          f"last minute median {rss['last_minute_median']}, max {rss['max']}, end {rss['end']}")
    print(f"fds: start {r['fds']['start']}, max {r['fds']['max']}, end {r['fds']['end']}; "
          f"tasks: start {r['tasks']['start']}, max {r['tasks']['max']}, end {r['tasks']['end']}")
    print("RSS over time (MiB, every minute):",
          " ".join(f"{s['rss_mib']}" for s in r["samples"] if int(s["t"]) % 60 < 5))


if __name__ == "__main__":
    sys.exit(main())
