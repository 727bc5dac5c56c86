#!/usr/bin/env python3
"""Load benchmark: portcullis vs nginx, haproxy and a bare Pingora proxy.

Starts two nginx upstream backends on loopback, puts each proxy ("target") in
front of them in turn with the same resources, drives the same wrk load at it
and reports requests/s, p50/p99 latency and proxy CPU time per request, with
ratios to nginx measured in the same run. Python 3 standard library only.

With --tls (or naming nginx-h2tls / portcullis-h2tls in --targets) it also
compares TLS termination, nginx vs portcullis with the same generated
certificate: HTTP/2 throughput (h2load) and full TLS handshakes per second
(tls_handshake_client.py, next to this file), ratios against nginx-h2tls.

Usually run through run.sh (installs wrk/nginx/haproxy/h2load if missing and
builds the binaries); see README.md next to this file for options and how to
read the report.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import atexit
import datetime as dt
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

REPO = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"  # everything binds and targets loopback only
API_KEY = "bench-key-1"  # sent by every load run; checked by nginx-gateway
BODY_PREFIX = "portcullis-bench upstream "
TLS_NAME = "bench.test"  # CN/SAN of the generated certificate; SNI, Host and :authority of TLS runs
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------
# Process bookkeeping: every process started is stopped at the end, also on
# errors and Ctrl-C. Each process gets its own session/process group, so one
# killpg of *that* group reaches its workers (nginx master + workers) and
# nothing else.
# --------------------------------------------------------------------------

_STARTED: list[subprocess.Popen] = []


def spawn(cmd: list[str], *, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
          env: Optional[dict] = None, cwd: Optional[Path] = None) -> subprocess.Popen:
    p = subprocess.Popen(cmd, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL,
                         env=env, cwd=cwd, start_new_session=True)
    _STARTED.append(p)
    return p


def _proc_stats():
    """(pid, fields after the command name) for every readable /proc/PID/stat:
    fields[0] is the state, [1] the parent PID, [2] the process group."""
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
        except OSError:
            continue
        yield int(d), s[s.rindex(")") + 2:].split()


def _group_members(pgid: int) -> list[int]:
    """PIDs whose process group is pgid (a group we created with start_new_session)."""
    out = []
    for pid, fields in _proc_stats():
        if int(fields[2]) == pgid:
            out.append(pid)
    return out


def stop(p: Optional[subprocess.Popen], timeout: float = 5.0) -> None:
    """SIGINT (fast shutdown for nginx, haproxy and Pingora), then SIGKILL.

    Signals go only to the process group this script created for p."""
    if p is None:
        return
    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGINT)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                p.wait(2)
            except subprocess.TimeoutExpired:
                pass
    # The leader is gone; children of it (nginx workers) may linger in its group.
    for pid in _group_members(p.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if p in _STARTED:
        _STARTED.remove(p)


def stop_all() -> None:
    for p in list(reversed(_STARTED)):
        stop(p, timeout=3)


def _on_signal(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------

def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with code {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {HOST}:{port} after {timeout}s")


def http_get(port: int, headers: Optional[dict] = None, timeout: float = 3.0) -> tuple[int, str]:
    req = urllib.request.Request(f"http://{HOST}:{port}/", headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")


def proc_tree(root: int) -> list[int]:
    """PIDs of root and all its descendants (e.g. nginx master + workers)."""
    children: dict[int, list[int]] = {}
    for pid, fields in _proc_stats():
        children.setdefault(int(fields[1]), []).append(pid)
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def cpu_ticks(pids: list[int]) -> dict[int, int]:
    """utime+stime (clock ticks) of each pid, all threads included."""
    out = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                s = f.read()
        except OSError:
            continue
        fields = s[s.rindex(")") + 2:].split()
        # fields[0] is field 3 (state); utime is field 14, stime field 15.
        out[pid] = int(fields[11]) + int(fields[12])
    return out


def cpu_delta_seconds(before: dict[int, int], after: dict[int, int]) -> float:
    ticks = 0
    for pid, t in after.items():
        ticks += t - before.get(pid, 0)
    return ticks / CLK_TCK


def machine_busy_ticks() -> int:
    """user+nice+system ticks of all CPUs (/proc/stat), i.e. CPU used by any process."""
    with open("/proc/stat") as f:
        parts = f.readline().split()
    return int(parts[1]) + int(parts[2]) + int(parts[3])


def children_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_text(cmd: list[str]) -> str:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        return (r.stdout + r.stderr).strip()
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unavailable ({e})"


def median(xs: list[float]) -> Optional[float]:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


# --------------------------------------------------------------------------
# Config generators
# --------------------------------------------------------------------------

def nginx_common(tmp: Path, name: str, workers: int) -> str:
    user = "user root;\n" if os.geteuid() == 0 else ""
    t = tmp / f"{name}-temp"
    t.mkdir(exist_ok=True)
    return f"""{user}worker_processes {workers};
daemon off;
master_process on;
pid {tmp}/{name}.pid;
error_log {tmp}/{name}-error.log warn;
events {{ worker_connections 4096; }}
"""


def nginx_http_common(tmp: Path, name: str) -> str:
    t = tmp / f"{name}-temp"
    return f"""    access_log off;
    keepalive_timeout 75s;
    keepalive_requests 1000000;
    client_body_temp_path {t}/client;
    proxy_temp_path {t}/proxy;
    fastcgi_temp_path {t}/fastcgi;
    uwsgi_temp_path {t}/uwsgi;
    scgi_temp_path {t}/scgi;
"""


def upstream_conf(tmp: Path, ports: list[int], workers: int) -> str:
    servers = ""
    for i, port in enumerate(ports):
        body = f"{BODY_PREFIX}{chr(ord('a') + i)}\\n"
        servers += f"""    server {{
        listen {HOST}:{port};
        location / {{ default_type text/plain; return 200 "{body}"; }}
    }}
"""
    return nginx_common(tmp, "upstream", workers) + "http {\n" + nginx_http_common(tmp, "upstream") + servers + "}\n"


def start_upstream(tmp: Path, workers: int, prefix: Optional[list[str]] = None
                   ) -> tuple[subprocess.Popen, list[int]]:
    """The upstream nginx (two server blocks on free ports), once both listen."""
    backends = [free_port(), free_port()]
    (tmp / "upstream.conf").write_text(upstream_conf(tmp, backends, workers))
    with open(tmp / "upstream.stderr", "ab") as lf:
        upstream = spawn((prefix or []) + ["nginx", "-p", str(tmp), "-e", str(tmp / "upstream-error.log"),
                                           "-c", str(tmp / "upstream.conf")], stdout=lf, stderr=lf)
    for b in backends:
        wait_port(b, upstream)
    return upstream, backends


def nginx_upstream_block(backends: list[int], keepalive: int = 64) -> str:
    servers = "".join(f"        server {HOST}:{p};\n" for p in backends)
    return f"""    upstream up {{
{servers}        keepalive {keepalive};
        keepalive_requests 1000000;
    }}
"""


def nginx_proxy_conf(tmp: Path, port: int, backends: list[int], workers: int, gateway: bool) -> str:
    name = "nginx-gateway" if gateway else "nginx"
    if gateway:
        extra_http = f"""    log_format gw escape=json '{{"time":"$time_iso8601","request_id":"$request_id",'
        '"remote_addr":"$remote_addr","method":"$request_method","uri":"$request_uri",'
        '"status":$status,"bytes_sent":$body_bytes_sent,"duration_s":$request_time,'
        '"upstream":"$upstream_addr","upstream_status":"$upstream_status",'
        '"upstream_time_s":"$upstream_response_time","user_agent":"$http_user_agent"}}';
    map $http_x_api_key $key_ok {{
        default 0;
        "{API_KEY}" 1;
        "bench-key-2" 1;
    }}
"""
        location = f"""            if ($key_ok = 0) {{ return 401; }}
            proxy_pass http://up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Request-Id $request_id;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            add_header X-Request-Id $request_id always;
"""
        server_log = f"        access_log {tmp}/nginx-gateway-access.log gw buffer=64k flush=1s;\n"
    else:
        extra_http = ""
        location = """            proxy_pass http://up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
"""
        server_log = ""
    return (nginx_common(tmp, name, workers) + "http {\n" + nginx_http_common(tmp, name) + extra_http
            + nginx_upstream_block(backends)
            + f"""    server {{
        listen {HOST}:{port};
{server_log}        location / {{
{location}        }}
    }}
}}
""")


def nginx_cache_conf(tmp: Path, port: int, backends: list[int], workers: int) -> str:
    """nginx proxy_cache in front of the same upstream: the backend's 200 has no
    Cache-Control, so `proxy_cache_valid 200 1h` is the heuristic, like
    portcullis' `ttl = "1h"`; the key is host + path + query, like portcullis'
    (route, host, path, query). Objects live in files under the temp dir
    (the page cache serves them); the lock coalesces misses, like
    portcullis'. `Cache-Status`-like header for parity."""
    name = "nginx-cache"
    return (nginx_common(tmp, name, workers) + "http {\n" + nginx_http_common(tmp, name)
            + f"    proxy_cache_path {tmp}/nginx-cache-store levels=1:2 keys_zone=c:16m max_size=256m inactive=1h;\n"
            + nginx_upstream_block(backends)
            + f"""    server {{
        listen {HOST}:{port};
        location / {{
            proxy_cache c;
            proxy_cache_key $host$uri$is_args$args;
            proxy_cache_valid 200 1h;
            proxy_cache_lock on;
            add_header Cache-Status "nginx; $upstream_cache_status";
            proxy_pass http://up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
""")


def nginx_version() -> tuple[int, ...]:
    m = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", run_text(["nginx", "-v"]))
    return tuple(int(x) for x in m.groups()) if m else (0, 0, 0)


def nginx_h2tls_conf(tmp: Path, port: int, backends: list[int], workers: int, cert: Path, key: Path,
                     keepalive: int) -> str:
    """nginx terminating TLS (1.2 + 1.3) with HTTP/2, the same upstream block as `nginx`.

    `keepalive` (idle upstream connections kept per worker) is sized to the
    load: HTTP/2 puts connections x streams requests in flight (500 by
    default, vs 50 in the HTTP/1.1 runs), and nginx closes every upstream
    connection beyond `keepalive` after its response, so `keepalive 64` would
    open a new upstream connection for a large share of the requests.
    ssl_protocols is explicit: before 1.23.4 nginx's default leaves TLS 1.3 out,
    while portcullis (rustls) negotiates 1.3. `listen ... http2` became the
    `http2 on;` directive in 1.25.1."""
    name = "nginx-h2tls"
    if nginx_version() >= (1, 25, 1):
        listen = f"        listen {HOST}:{port} ssl;\n        http2 on;\n"
    else:
        listen = f"        listen {HOST}:{port} ssl http2;\n"
    return (nginx_common(tmp, name, workers) + "http {\n" + nginx_http_common(tmp, name)
            + nginx_upstream_block(backends, keepalive)
            + f"""    server {{
{listen}        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {{
            proxy_pass http://up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
""")


def make_cert(tmp: Path) -> tuple[Path, Path]:
    """EC P-256 self-signed certificate for TLS_NAME, valid 7 days, in the temp dir."""
    cert, key = tmp / "bench-cert.pem", tmp / "bench-key.pem"
    cmd = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
           "-keyout", str(key), "-out", str(cert), "-days", "7", "-subj", f"/CN={TLS_NAME}",
           "-addext", f"subjectAltName=DNS:{TLS_NAME}"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if r.returncode != 0 or not cert.exists() or not key.exists():
        raise RuntimeError(f"openssl could not make the test certificate:\n{r.stdout}{r.stderr}")
    return cert, key


def haproxy_conf(port: int, backends: list[int], workers: int) -> str:
    servers = "".join(f"    server s{i} {HOST}:{p}\n" for i, p in enumerate(backends))
    return f"""global
    nbthread {workers}
    maxconn 4096

defaults
    mode http
    option http-keep-alive
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout http-keep-alive 75s

frontend fe
    bind {HOST}:{port}
    default_backend be

backend be
    balance roundrobin
    http-reuse always
{servers}"""


def _b64url(data: bytes) -> str:
    import base64
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def bench_token(tmp: Path) -> tuple[str, Path]:
    """An RS256 token (valid for a day, subject "bench", scope "bench") and
    the JWKS file of its key, made with the openssl CLI in `tmp`: what the
    "jwt" mode's clients send and its issuer reads."""
    key = tmp / "jwt-key.pem"
    if not key.exists():
        subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                        "-out", str(key)], check=True, capture_output=True)
    modulus = subprocess.run(["openssl", "rsa", "-in", str(key), "-noout", "-modulus"],
                             check=True, capture_output=True, text=True).stdout.strip().split("=", 1)[1]
    jwks = tmp / "jwks.json"
    jwks.write_text(json.dumps({"keys": [{"kty": "RSA", "kid": "bench", "use": "sig",
                                          "n": _b64url(bytes.fromhex(modulus)), "e": "AQAB"}]}))
    now = int(time.time())
    header = _b64url(json.dumps({"alg": "RS256", "kid": "bench", "typ": "JWT"}).encode())
    claims = _b64url(json.dumps({"iss": "https://bench.test/", "aud": "bench", "sub": "bench",
                                 "exp": now + 86400, "iat": now, "scope": "bench"}).encode())
    signed = f"{header}.{claims}"
    sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(key)], input=signed.encode(),
                         check=True, capture_output=True).stdout
    return f"{signed}.{_b64url(sig)}", jwks


def auth_header(mode: str, tmp: Path) -> str:
    """The credential header a load run of `mode` sends."""
    if mode == "jwt":
        return f"Authorization: Bearer {bench_token(tmp)[0]}"
    if mode in ("cors", "origin"):
        return "Origin: https://app.example.com"
    return f"X-Api-Key: {API_KEY}"


_REDIS: Optional[tuple[subprocess.Popen, int]] = None


def redis() -> tuple[int, int]:
    """(pid, port) of a redis-server for the "*-redis" modes: started on
    first use on a free loopback port, pinned to CPU 1 with the load, no
    persistence; stopped at exit."""
    global _REDIS
    if _REDIS is None:
        port = free_port()
        p = subprocess.Popen(["taskset", "-c", "1", "redis-server", "--bind", HOST, "--port", str(port),
                              "--save", "", "--appendonly", "no"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        atexit.register(p.terminate)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection((HOST, port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        _REDIS = (p, port)
    return _REDIS[0].pid, _REDIS[1]


def portcullis_conf(port: int, admin_port: int, backends: list[int], workers: int,
                    tls: Optional[tuple[Path, Path]] = None, mode: str = "plain",
                    log_path: Optional[Path] = None, keepalive: Optional[int] = None) -> str:
    """keepalive: `[server] upstream_keepalive` (None = portcullis' default, 128). mode: "plain" (one route, no access log, like the plain nginx target),
    "cache" (plain, with `[routes.cache] ttl = "1h"`: after the warm-up, all hits),
    "auth" (the route needs API_KEY and is rate-limited per consumer, with a
    daily quota; no access log), "gateway" (auth, plus the JSON access log
    to `log_path`, like nginx-gateway) or "resilient" (gateway, plus outlier
    ejection, a breaker, a retry budget and max_in_flight on the pool: never
    tripped, counted on every request) or "jwt" (as "auth", with an RS256
    bearer token from `bench_token` instead of the key: the issuer's
    per-consumer limit and quota, the route's required scope; no access
    log). "limits": plain with a route-wide rate limit (never hit);
    "cors": "plain" with `[routes.cors]`, requests sending `Origin` (an
    allowed one); "origin": "plain", requests sending the same `Origin`;
    "split": "plain" with the route's requests split 50/50 between two
    pools of the same backends (`[[routes.split]]` with a `match`);
    "mirror": "plain" with 10 % of the requests copied to a shadow pool of
    the same backends (`[routes.mirror]`);
    "cache-redis": "cache" with a local store too small for any object and
    `[cache.shared]` in Redis, so that every hit comes from Redis;
    "h2c": "plain" on a listener with `h2c = true` (HTTP/1.1 clients
    are told from HTTP/2 ones by their first bytes);
    "limits-redis": the same limit, approximate, in a shared store (a
    redis-server this script starts); "auth-redis": "auth" with the shared
    store (the quota exact: one Redis round trip per request)."""
    bl = ", ".join(f'{{ address = "{HOST}:{p}" }}' for p in backends)
    route_auth = ""
    consumers = ""
    if mode in ("auth", "gateway", "resilient", "auth-redis"):
        # Limits far above what the benchmark sends: checked on every
        # request, never hit.
        route_auth = ('auth = "api_key"\n'
                      'rate_limits = [{ rate = "10000000/s", burst = 10000000, per = "consumer" }]\n')
        digest = hashlib.sha256(API_KEY.encode()).hexdigest()
        consumers = f"""
[[consumers]]
id = "bench"
keys = [{{ prefix = "bench-key", digest = "{digest}" }}]
scopes = [{{ routes = ["*"] }}]
quota = {{ day = 1000000000000 }}
"""
    if mode == "jwt":
        _, jwks = bench_token(Path(tempfile.gettempdir()))
        route_auth = ('auth = "jwt"\nrequired_scopes = ["bench"]\n'
                      'rate_limits = [{ rate = "10000000/s", burst = 10000000, per = "consumer" }]\n')
        consumers = f"""
[[jwt_issuers]]
id = "bench"
issuer = "https://bench.test/"
audiences = ["bench"]
jwks_file = "{jwks}"
quota = {{ day = 1000000000000 }}
"""
    store = ""
    if mode in ("limits", "limits-redis"):
        route_auth = 'rate_limits = [{ rate = "10000000/s", burst = 10000000, per = "route" }]\n'
    if mode.endswith("-redis"):
        store = f'[limit_store]\nkind = "redis"\nurl = "redis://{HOST}:{redis()[1]}/0"\ntimeout = "100ms"\n'
    if mode == "cache-redis":
        # A local store too small to keep an object: every local lookup
        # misses, and the shared tier (Redis) answers.
        store += '[cache]\nmax_size = "1KiB"\n[cache.shared]\nkind = "redis"\n'
    access_log = (f'[access_log]\npath = "{log_path}"\n' if mode in ("gateway", "resilient") and log_path
                  else "[access_log]\nenabled = false\n")
    tls_block = ""
    if tls:
        tls_block = f"""
[[listeners.tls.certificates]]
cert = "{tls[0]}"
key = "{tls[1]}"
"""
    keepalive_line = f"upstream_keepalive = {keepalive}\n" if keepalive else ""
    cache = '\n[routes.cache]\nttl = "1h"\n' if mode in ("cache", "cache-redis") else ""
    if mode == "cors":
        cache = '\n[routes.cors]\nallow_origins = ["https://app.example.com"]\nexpose_headers = ["ratelimit"]\n'

    resilience = ("max_in_flight = 100000\n[pools.up.outlier]\n[pools.up.breaker]\n[pools.up.retry_budget]\n"
                  if mode == "resilient" else "")
    target = 'pool = "up"\n'
    if mode == "mirror":
        # 10 % of the requests copied to a shadow pool of the same backends.
        resilience += f"[pools.shadow]\nbackends = [ {bl} ]\n"
        target += '[routes.mirror]\npool = "shadow"\npercent = 10\n'
    if mode == "split":
        # Two pools over the same backends, half the requests each; a
        # match rule checked on every request (never matching).
        resilience += f"[pools.up2]\nbackends = [ {bl} ]\n"
        target = ('[[routes.split]]\npool = "up2"\nweight = 50\n'
                  'match = { header = { "x-canary" = "always" } }\n'
                  '[[routes.split]]\npool = "up"\nweight = 50\n')
    return f"""[server]
threads = {workers}
{keepalive_line}
{access_log}
{store}
[[listeners]]
address = "{HOST}:{port}"
{"h2c = true" if mode == "h2c" else ""}
{tls_block}
[admin]
address = "{HOST}:{admin_port}"

[pools.up]
backends = [ {bl} ]
{resilience}
[[routes]]
id = "plain"
path = "/"
{route_auth}{target}{cache}{consumers}"""


# --------------------------------------------------------------------------
# Targets
# --------------------------------------------------------------------------

@dataclass
class Ctx:
    tmp: Path
    backends: list[int]            # upstream ports
    workers: int
    proxy_prefix: list[str]        # taskset prefix for proxies ([] when not pinned)
    portcullis_bin: Path
    bare_bin: Path                 # bare Pingora as released (benches/bare-unpatched)
    bare_patched_bin: Path         # the same source built with patches/ (examples/bare_pingora.rs)
    cert: Optional[Path] = None    # generated test certificate (TLS targets only)
    key: Optional[Path] = None
    h2_keepalive: int = 64         # upstream keep-alive pool of the TLS targets (all three)


@dataclass
class Running:
    port: int
    proc: Optional[subprocess.Popen]   # None for `direct`
    log: Optional[Path] = None


@dataclass
class Target:
    name: str
    description: str
    start: Optional[Callable[[Ctx], Running]] = None
    # Measurements (keys of MEASURES) run against this target, each a separate
    # run with a fresh process: "http1" = wrk keep-alive; TLS targets get
    # "h2" (h2load) and "handshake" (tls_handshake_client.py).
    measures: list[str] = field(default_factory=lambda: ["http1"])
    planned: Optional[str] = None      # set for hooks not implemented yet: why / which issue
    needs: list[str] = field(default_factory=list)  # binaries needed


def _start_direct(c: Ctx) -> Running:
    return Running(port=c.backends[0], proc=None)


def _start_nginx(c: Ctx, gateway: bool) -> Running:
    name = "nginx-gateway" if gateway else "nginx"
    port = free_port()
    conf = c.tmp / f"{name}.conf"
    conf.write_text(nginx_proxy_conf(c.tmp, port, c.backends, c.workers, gateway))
    logf = c.tmp / f"{name}.stderr"
    with open(logf, "ab") as lf:
        p = spawn(c.proxy_prefix + ["nginx", "-p", str(c.tmp), "-e", str(c.tmp / f"{name}-error.log"),
                                    "-c", str(conf)], stdout=lf, stderr=lf)
    return Running(port, p, logf)


def _start_nginx_cache(c: Ctx) -> Running:
    port = free_port()
    conf = c.tmp / "nginx-cache.conf"
    conf.write_text(nginx_cache_conf(c.tmp, port, c.backends, c.workers))
    logf = c.tmp / "nginx-cache.stderr"
    with open(logf, "ab") as lf:
        p = spawn(c.proxy_prefix + ["nginx", "-p", str(c.tmp), "-e", str(c.tmp / "nginx-cache-error.log"),
                                    "-c", str(conf)], stdout=lf, stderr=lf)
    return Running(port, p, logf)


def _start_haproxy(c: Ctx) -> Running:
    port = free_port()
    conf = c.tmp / "haproxy.cfg"
    conf.write_text(haproxy_conf(port, c.backends, c.workers))
    logf = c.tmp / "haproxy.stderr"
    with open(logf, "ab") as lf:
        p = spawn(c.proxy_prefix + ["haproxy", "-db", "-f", str(conf)], stdout=lf, stderr=lf)
    return Running(port, p, logf)


def _start_bare(c: Ctx, tls: bool = False, respond: bool = False, patched: bool = False) -> Running:
    port = free_port()
    name = "pingora-bare-h2tls" if tls else ("pingora-bare-respond" if respond else "pingora-bare")
    if patched:
        name += "-patched"
    logf = c.tmp / f"{name}.log"
    tls_args = (["--tls-cert", str(c.cert), "--tls-key", str(c.key), "--keepalive-pool", str(c.h2_keepalive)]
                if tls else [])
    with open(logf, "ab") as lf:
        binary = c.bare_patched_bin if patched else c.bare_bin
        p = spawn(c.proxy_prefix + [str(binary), "--listen", f"{HOST}:{port}", "--threads", str(c.workers)]
                  + tls_args + (["--respond"] if respond else [])
                  + [f"{HOST}:{b}" for b in c.backends], stdout=lf, stderr=lf)
    return Running(port, p, logf)


def _start_nginx_h2tls(c: Ctx) -> Running:
    port = free_port()
    conf = c.tmp / "nginx-h2tls.conf"
    conf.write_text(nginx_h2tls_conf(c.tmp, port, c.backends, c.workers, c.cert, c.key, c.h2_keepalive))
    logf = c.tmp / "nginx-h2tls.stderr"
    with open(logf, "ab") as lf:
        p = spawn(c.proxy_prefix + ["nginx", "-p", str(c.tmp), "-e", str(c.tmp / "nginx-h2tls-error.log"),
                                    "-c", str(conf)], stdout=lf, stderr=lf)
    return Running(port, p, logf)


def _start_portcullis(c: Ctx, tls: bool = False, mode: str = "plain") -> Running:
    name = "portcullis-h2tls" if tls else ("portcullis" if mode == "plain" else f"portcullis-{mode}")
    port, admin = free_port(), free_port()
    conf = c.tmp / f"{name}.toml"
    conf.write_text(portcullis_conf(port, admin, c.backends, c.workers, (c.cert, c.key) if tls else None,
                                    mode=mode, log_path=c.tmp / f"{name}-access.log",
                                    keepalive=c.h2_keepalive if tls else None))
    logf = c.tmp / f"{name}.log"
    env = dict(os.environ, RUST_LOG="warn")
    with open(logf, "ab") as lf:
        p = spawn(c.proxy_prefix + [str(c.portcullis_bin), "run", "-c", str(conf)], stdout=lf, stderr=lf, env=env)
    return Running(port, p, logf)


# The target list. Order = order within each round. Entries with `planned`
# set are HOOKS for later issues: they show up in --list-targets and are
# rejected by --targets until implemented (give them `start`, drop `planned`).
TARGETS: list[Target] = [
    Target("direct", "wrk straight to upstream backend A, no proxy (the ceiling)", _start_direct),
    Target("nginx", "nginx proxy_pass, upstream keepalive 64, HTTP/1.1 upstream",
           lambda c: _start_nginx(c, gateway=False), needs=["nginx"]),
    Target("nginx-gateway", "nginx as a gateway route: API-key map (401), JSON access log, "
           "X-Request-Id, X-Forwarded-For", lambda c: _start_nginx(c, gateway=True), needs=["nginx"]),
    Target("haproxy", "haproxy roundrobin, http-reuse always, nbthread = workers",
           _start_haproxy, needs=["haproxy"]),
    Target("pingora-bare", "bare Pingora passthrough (examples/bare_pingora.rs) built from the crates as released, "
           "without patches/ (benches/bare-unpatched)", _start_bare),
    Target("pingora-bare-patched", "the same bare Pingora built with patches/ applied, as portcullis is: "
           "its gap to pingora-bare is what the patches buy", lambda c: _start_bare(c, patched=True)),
    Target("portcullis", "portcullis run: plain route / -> pool of the two backends, no access log",
           _start_portcullis),
    Target("portcullis-auth", "portcullis, the route needs X-Api-Key and is rate-limited per consumer "
           "with a daily quota (limits never hit); no access log", lambda c: _start_portcullis(c, mode="auth")),
    Target("portcullis-gateway", "portcullis-auth plus the JSON access log to a file (compare with nginx-gateway)",
           lambda c: _start_portcullis(c, mode="gateway")),
    Target("portcullis-resilient", "portcullis-gateway plus outlier ejection, a circuit breaker, a retry budget "
           "and max_in_flight on the pool (never tripped; compare with portcullis-gateway)",
           lambda c: _start_portcullis(c, mode="resilient")),
    # ---- TLS termination (opt-in: --tls, or name them in --targets) ----------
    # Same backends, same generated EC P-256 certificate; two measurements
    # each: HTTP/2 throughput (h2load) and full TLS handshakes per second.
    Target("nginx-h2tls", "nginx listen ssl http2 (TLS 1.2+1.3), proxy_pass to the same upstream block",
           _start_nginx_h2tls, measures=["h2", "handshake"], needs=["nginx", "openssl"]),
    Target("pingora-bare-h2tls", "bare Pingora terminating TLS (rustls, ALPN h2), the same certificate",
           lambda c: _start_bare(c, tls=True), measures=["h2", "handshake"], needs=["openssl"]),
    Target("portcullis-h2tls", "portcullis TLS listener (rustls, ALPN h2), plain route / -> pool",
           lambda c: _start_portcullis(c, tls=True), measures=["h2", "handshake"], needs=["openssl"]),
    # ---- Response cache (opt-in: name them in --targets) ----------------------
    # Cache hits: the warm-up fills the cache, the measured run is all hits.
    Target("portcullis-cache", "portcullis, the plain route with [routes.cache] ttl = 1h: all hits",
           lambda c: _start_portcullis(c, mode="cache")),
    Target("nginx-cache", "nginx proxy_cache (lock on, valid 200 1h, key host+uri+args): all hits",
           _start_nginx_cache, needs=["nginx"]),
    Target("pingora-bare-respond", "bare Pingora answering every request itself from request_filter "
           "(no upstream, no cache): the floor of any Pingora answer, such as a cache hit",
           lambda c: _start_bare(c, respond=True)),
    Target("pingora-bare-respond-patched", "pingora-bare-respond built with patches/ applied",
           lambda c: _start_bare(c, respond=True, patched=True)),
    Target("pingora-bare-h2tls-patched", "pingora-bare-h2tls built with patches/ applied",
           lambda c: _start_bare(c, tls=True, patched=True), measures=["h2", "handshake"], needs=["openssl"]),
]
TARGETS_BY_NAME = {t.name: t for t in TARGETS}
TLS_TARGETS = [t.name for t in TARGETS if not t.planned and "h2" in t.measures]


@dataclass
class Measure:
    key: str
    title: str        # section heading in the report
    baseline: str     # target the ratios are computed against (same round)
    client: str       # name of the load generator (its CPU is the 'client cores' column)
    unit: str         # what one counted request is


MEASURES: dict[str, Measure] = {
    "http1": Measure("http1", "HTTP/1.1 keep-alive (wrk)", "nginx", "wrk", "req"),
    "h2": Measure("h2", "TLS: HTTP/2 throughput (h2load)", "nginx-h2tls", "h2load", "req"),
    "handshake": Measure("handshake", "TLS: full handshakes, one request per new connection", "nginx-h2tls",
                         "client", "handshake"),
}
BASELINE = MEASURES["http1"].baseline
OTHER_LOAD_WARN = 0.15  # cores used by unrelated processes before a run is flagged as disturbed


# --------------------------------------------------------------------------
# Load generators
# --------------------------------------------------------------------------

# wrk's done() hook prints exact histogram values (microseconds) as one JSON
# line. No request()/response() hooks are defined, so wrk keeps its fast path.
WRK_LUA = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"mean":%.2f,"stdev":%.2f,"max":%d,"p50":%d,"p75":%d,"p90":%d,"p99":%d,"p999":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.stdev, latency.max,
    latency:percentile(50), latency:percentile(75), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9)))
end
"""

_UNITS = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6}


def _parse_dur_us(s: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", s)
    if not m:
        raise ValueError(s)
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(out: str) -> dict:
    """Result of one wrk run; exact values from the Lua hook, text as fallback."""
    r: dict = {}
    m = re.search(r"^WRKJSON (.*)$", out, re.M)
    if m:
        j = json.loads(m.group(1))
        r["requests"] = j["requests"]
        r["duration_s"] = j["duration_us"] / 1e6
        r["bytes"] = j["bytes"]
        r["errors"] = j["errors"]
        r["latency_us"] = j["latency_us"]
    else:
        m = re.search(r"(\d+) requests in ([\d.]+\w+), ", out)
        if not m:
            raise RuntimeError("cannot parse wrk output:\n" + out)
        r["requests"] = int(m.group(1))
        r["duration_s"] = _parse_dur_us(m.group(2)) / 1e6
        lat = {}
        for pct, key in (("50", "p50"), ("75", "p75"), ("90", "p90"), ("99", "p99")):
            mm = re.search(rf"^\s+{pct}%\s+([\d.]+\w+)", out, re.M)
            if mm:
                lat[key] = _parse_dur_us(mm.group(1))
        r["latency_us"] = lat
        errs = {"connect": 0, "read": 0, "write": 0, "timeout": 0, "status": 0}
        mm = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
        if mm:
            errs.update(connect=int(mm.group(1)), read=int(mm.group(2)), write=int(mm.group(3)),
                        timeout=int(mm.group(4)))
        r["errors"] = errs
    mm = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    r["non_2xx_3xx"] = int(mm.group(1)) if mm else 0
    r["rps"] = r["requests"] / r["duration_s"] if r["duration_s"] > 0 else 0.0
    return r


def run_wrk(args, port: int, duration: float, lua: Path, prefix: list[str]) -> tuple[dict, str]:
    cmd = prefix + ["wrk", f"-t{args.wrk_threads}", f"-c{args.connections}", f"-d{duration}s", "--latency",
                    "-H", f"X-Api-Key: {API_KEY}", "-s", str(lua), f"http://{HOST}:{port}/"]
    p = spawn(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        out, _ = p.communicate(timeout=duration + 60)
    finally:
        stop(p)
    out = out.decode("utf-8", "replace")
    if p.returncode != 0:
        raise RuntimeError(f"wrk exited {p.returncode}:\n{out}")
    return parse_wrk(out), out


def _pct(sorted_xs: list, q: float) -> Optional[float]:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_xs:
        return None
    i = min(len(sorted_xs) - 1, max(0, int(round(q / 100 * len(sorted_xs) + 0.5)) - 1))
    return float(sorted_xs[i])


def _latency_summary(lat_us: list) -> dict:
    lat = sorted(lat_us)
    if not lat:
        return {}
    return {"mean": statistics.fmean(lat), "max": lat[-1], "p50": _pct(lat, 50), "p75": _pct(lat, 75),
            "p90": _pct(lat, 90), "p99": _pct(lat, 99), "p999": _pct(lat, 99.9)}


def parse_h2load(out: str, log_file: Optional[Path]) -> dict:
    """Result of one `h2load -D` run. In duration mode h2load counts only the
    requests of the main phase and its req/s is done ÷ duration."""
    m = re.search(r"^finished in [\d.]+\w+, ([\d.]+) req/s", out, re.M)
    mr = re.search(r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                   r"(\d+) errored, (\d+) timeout", out, re.M)
    ms = re.search(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out, re.M)
    if not (m and mr and ms):
        raise RuntimeError("cannot parse h2load output:\n" + out[-3000:])
    rps = float(m.group(1))
    done, ok = int(mr.group(3)), int(mr.group(4))
    r: dict = {
        "requests": done,
        "succeeded": ok,
        "rps": rps,
        "duration_s": done / rps if rps else 0.0,
        "errors": {"failed": int(mr.group(5)), "errored": int(mr.group(6)), "timeout": int(mr.group(7))},
        "non_2xx_3xx": int(ms.group(3)) + int(ms.group(4)),
    }
    tls = {}
    for key, pat in (("version", r"^TLS Protocol: (\S+)"), ("cipher", r"^Cipher: (\S+)"),
                     ("key_exchange", r"^Server Temp Key: (.+)$"), ("alpn", r"^Application protocol: (\S+)")):
        mm = re.search(pat, out, re.M)
        if mm:
            tls[key] = mm.group(1).strip()
    r["tls"] = tls
    # h2load prints only min/max/mean/sd of "time for request"; percentiles come
    # from --log-file (start µs, status, µs to end of response; -1 = failed).
    lat = []
    if log_file and log_file.exists():
        with open(log_file) as f:
            for line in f:
                parts = line.split("\t")
                if len(parts) >= 3 and parts[1] != "-1":
                    lat.append(int(parts[2]))
    r["latency_us"] = _latency_summary(lat)
    return r


def run_h2load(args, port: int, duration: float, prefix: list[str], log_file: Optional[Path] = None
               ) -> tuple[dict, str]:
    """HTTP/2 over TLS, `h2load -t1 -c<connections> -m<streams> -D <duration>` (closed loop,
    like wrk). SNI and :authority are TLS_NAME; --connect-to points it at the port."""
    cmd = prefix + ["h2load", "-t", str(args.wrk_threads), "-c", str(args.connections), "-m", str(args.streams),
                    "-D", str(int(duration)), "-H", f"X-Api-Key: {API_KEY}",
                    f"--connect-to={HOST}:{port}"]
    if log_file:
        cmd.append(f"--log-file={log_file}")
    cmd.append(f"https://{TLS_NAME}:{port}/")
    p = spawn(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        out, _ = p.communicate(timeout=duration + 60)
    finally:
        stop(p)
    out = out.decode("utf-8", "replace")
    # Drop the per-10% progress lines from what is kept in the JSON.
    out = "\n".join(line for line in out.splitlines() if not line.startswith("progress: "))
    if p.returncode != 0:
        raise RuntimeError(f"h2load exited {p.returncode}:\n{out[-3000:]}")
    r = parse_h2load(out, log_file)
    if r["tls"].get("alpn") != "h2":
        raise RuntimeError(f"h2load did not negotiate h2 (ALPN: {r['tls'].get('alpn')!r})")
    if log_file:
        log_file.unlink(missing_ok=True)
    return r, out


HANDSHAKE_CLIENT = Path(__file__).resolve().parent / "tls_handshake_client.py"


def run_handshakes(args, port: int, duration: float, prefix: list[str]) -> tuple[dict, str]:
    """Full TLS handshakes: args.handshake_procs processes of tls_handshake_client.py sharing
    args.connections closed-loop connections, each connection = 1 handshake + 1 request."""
    procs_n = max(1, min(args.handshake_procs, args.connections))
    per = [args.connections // procs_n + (1 if i < args.connections % procs_n else 0) for i in range(procs_n)]
    start_at = time.monotonic() + 1.0  # every process is up and has imported ssl by then
    procs = []
    try:
        for threads in per:
            cmd = prefix + [sys.executable, str(HANDSHAKE_CLIENT), "--host", HOST, "--port", str(port),
                            "--sni", TLS_NAME, "--threads", str(threads), "--duration", str(duration),
                            "--start-at", f"{start_at:.6f}", "--header", f"X-Api-Key: {API_KEY}",
                            "--expect-prefix", BODY_PREFIX]
            procs.append(spawn(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
        outs = []
        for p in procs:
            out, _ = p.communicate(timeout=duration + 60)
            outs.append(out.decode("utf-8", "replace"))
    finally:
        for p in procs:
            stop(p)
    ok = 0
    elapsed = 0.0
    errors = {"connect": 0, "tls": 0, "read": 0}
    status_errors = 0
    lat: list[int] = []
    tls: dict = {}
    cpu = 0.0
    for p, out in zip(procs, outs):
        m = re.search(r"^HSJSON (.*)$", out, re.M)
        if p.returncode != 0 or not m:
            raise RuntimeError(f"handshake client exited {p.returncode}:\n{out[-3000:]}")
        j = json.loads(m.group(1))
        ok += j["ok"]
        for k in errors:
            errors[k] += j["errors"][k]
        status_errors += j["errors"]["status"]
        elapsed = max(elapsed, j["elapsed_s"])
        lat.extend(j["latency_us"])
        cpu += j["cpu_s"]
        tls = tls or j["tls"]
    if tls.get("resumed"):
        raise RuntimeError("the handshake client resumed a TLS session; it must do full handshakes")
    r = {
        "requests": ok,
        "rps": ok / elapsed if elapsed else 0.0,
        "duration_s": elapsed,
        "errors": errors,
        "non_2xx_3xx": status_errors,
        "latency_us": _latency_summary(lat),
        "tls": tls,
        "client_procs": procs_n,
        "client_cpu_in_loop_s": cpu,
    }
    summary = "\n".join(re.sub(r'"latency_us":\[[^\]]*\]', '"latency_us":[…]', o).strip() for o in outs)
    return r, summary


# --------------------------------------------------------------------------
# One measured run
# --------------------------------------------------------------------------

def tls_smoke(port: int, cert: Path) -> dict:
    """TLS checks before a TLS run: the generated certificate is served for TLS_NAME
    (verified against it), ALPN offers h2 and gets it, and an HTTP/1.1 request
    over TLS returns 200 with a backend body."""
    ctx = ssl.create_default_context(cafile=str(cert))
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection((HOST, port), timeout=3) as raw:
        with ctx.wrap_socket(raw, server_hostname=TLS_NAME) as s:
            info = {"version": s.version(), "cipher": s.cipher()[0], "alpn_offered_h2": s.selected_alpn_protocol()}
    if info["alpn_offered_h2"] != "h2":
        raise RuntimeError(f"ALPN h2 not negotiated (got {info['alpn_offered_h2']!r})")
    ctx.set_alpn_protocols(["http/1.1"])
    req = f"GET / HTTP/1.1\r\nHost: {TLS_NAME}\r\nX-Api-Key: {API_KEY}\r\nConnection: close\r\n\r\n"
    with socket.create_connection((HOST, port), timeout=3) as raw:
        with ctx.wrap_socket(raw, server_hostname=TLS_NAME) as s:
            s.sendall(req.encode())
            resp = b""
            while True:
                d = s.recv(65536)
                if not d:
                    break
                resp += d
    head, _, body = resp.decode("utf-8", "replace").partition("\r\n\r\n")
    if not head.startswith("HTTP/1.1 200 ") or not body.startswith(BODY_PREFIX):
        raise RuntimeError(f"TLS smoke request got {head.splitlines()[:1]} {body[:200]!r}")
    return info


def run_load(kind: str, args, port: int, duration: float, lua: Path, prefix: list[str], tmp: Path,
             keep_latency_log: bool) -> tuple[dict, str]:
    if kind == "http1":
        return run_wrk(args, port, duration, lua, prefix)
    if kind == "h2":
        return run_h2load(args, port, duration, prefix, tmp / "h2load-requests.log" if keep_latency_log else None)
    if kind == "handshake":
        return run_handshakes(args, port, duration, prefix)
    raise ValueError(kind)


def measure(args, ctx: Ctx, target: Target, kind: str, lua: Path, load_prefix: list[str], upstream_proc) -> dict:
    started = time.monotonic()
    res: dict = {"target": target.name, "workers": ctx.workers, "measure": kind}
    running = target.start(ctx)
    try:
        if running.proc is not None:
            wait_port(running.port, running.proc)
        if kind == "http1":
            # Smoke test: a real 200 from a backend through the target.
            status, body = http_get(running.port, {"X-Api-Key": API_KEY})
            if status != 200 or not body.startswith(BODY_PREFIX):
                raise RuntimeError(f"smoke request got {status}: {body[:200]!r}")
            if target.name == "nginx-gateway":
                status, _ = http_get(running.port)
                if status != 401:
                    raise RuntimeError(f"nginx-gateway without API key answered {status}, expected 401")
        else:
            res["tls_smoke"] = tls_smoke(running.port, ctx.cert)
        if args.warmup > 0:
            run_load(kind, args, running.port, args.warmup, lua, load_prefix, ctx.tmp, False)
        pids = proc_tree(running.proc.pid) if running.proc is not None else []
        up_pids = proc_tree(upstream_proc.pid)
        before, up_before = cpu_ticks(pids), cpu_ticks(up_pids)
        busy_before, wrk_before = machine_busy_ticks(), children_cpu_s()
        r, out = run_load(kind, args, running.port, args.duration, lua, load_prefix, ctx.tmp, True)
        busy_after, wrk_after = machine_busy_ticks(), children_cpu_s()
        after, up_after = cpu_ticks(pids), cpu_ticks(up_pids)
        if running.proc is not None and running.proc.poll() is not None:
            raise RuntimeError(f"{target.name} exited during the run (code {running.proc.returncode})")
        res.update(r)
        res["wrk_output" if kind == "http1" else "load_output"] = out
        res["proxy_pids"] = len(pids)
        if pids:
            cpu = cpu_delta_seconds(before, after)
            res["proxy_cpu_s"] = cpu
            res["proxy_cores"] = cpu / r["duration_s"] if r["duration_s"] else None
            res["cpu_us_per_req"] = cpu / r["requests"] * 1e6 if r["requests"] else None
        else:
            res["proxy_cpu_s"] = res["proxy_cores"] = res["cpu_us_per_req"] = None
        up_cpu = cpu_delta_seconds(up_before, up_after)
        res["upstream_cpu_s"] = up_cpu
        res["upstream_cpu_us_per_req"] = up_cpu / r["requests"] * 1e6 if r["requests"] else None
        # Noise check: CPU used on the machine by anything that is not the
        # proxy, the upstream or wrk (other builds, other services...).
        wrk_cpu = wrk_after - wrk_before  # CPU of the load generator (wrk, h2load or the handshake clients)
        res["client_cpu_s"] = wrk_cpu
        if kind == "http1":
            res["wrk_cpu_s"] = wrk_cpu
        busy = (busy_after - busy_before) / CLK_TCK
        ours = (res["proxy_cpu_s"] or 0.0) + up_cpu + wrk_cpu
        res["other_cores"] = max(0.0, busy - ours) / r["duration_s"] if r["duration_s"] else None
        res["ok"] = True
    except Exception as e:  # noqa: BLE001 - one failed run must not lose the others
        res["ok"] = False
        res["error"] = str(e)
        if running.log and running.log.exists():
            res["log_tail"] = running.log.read_text(errors="replace")[-2000:]
        log(f"  !! {target.name} (workers={ctx.workers}) failed: {e}")
        if res.get("log_tail"):
            log("  log tail:\n" + res["log_tail"])
    finally:
        if running.proc is not None:
            stop(running.proc)
    res["wall_s"] = time.monotonic() - started
    return res


# --------------------------------------------------------------------------
# Summary and report
# --------------------------------------------------------------------------

def summarize(runs: list[dict], names: list[str], workers: int, kind: str = "http1") -> dict:
    """Medians per target, and per-round ratios to the measurement's baseline
    (nginx, or nginx-h2tls for TLS; paired by round), then their median."""
    mine = [r for r in runs if r["workers"] == workers and r.get("measure", "http1") == kind]
    baseline = MEASURES[kind].baseline
    base_by_round = {r["round"]: r for r in mine if r["target"] == baseline and r["ok"]}
    out = {}
    for name in names:
        rs = [r for r in mine if r["target"] == name and r["ok"]]
        failed = len([r for r in mine if r["target"] == name and not r["ok"]])
        s = {
            "runs": len(rs),
            "failed_runs": failed,
            "rps": median([r["rps"] for r in rs]),
            "rps_min": min((r["rps"] for r in rs), default=None),
            "rps_max": max((r["rps"] for r in rs), default=None),
            "p50_us": median([r["latency_us"].get("p50") for r in rs]),
            "p99_us": median([r["latency_us"].get("p99") for r in rs]),
            "cpu_us_per_req": median([r["cpu_us_per_req"] for r in rs]),
            "proxy_cores": median([r["proxy_cores"] for r in rs]),
            "upstream_cpu_us_per_req": median([r["upstream_cpu_us_per_req"] for r in rs]),
            "client_cores": median([r["client_cpu_s"] / r["duration_s"] for r in rs if r["duration_s"]]),
            "other_cores": median([r["other_cores"] for r in rs]),
            # wrk's errors.status duplicates its "Non-2xx or 3xx responses" line: not counted twice.
            "errors": sum(sum(v for k, v in r["errors"].items() if k != "status") for r in rs),
            "non_2xx_3xx": sum(r["non_2xx_3xx"] for r in rs),
        }
        ratios: dict[str, list[float]] = {"rps": [], "cpu_per_req": [], "p99": []}
        for r in rs:
            b = base_by_round.get(r["round"])
            if not b:
                continue
            if b["rps"]:
                ratios["rps"].append(r["rps"] / b["rps"])
            if r["cpu_us_per_req"] is not None and b["cpu_us_per_req"]:
                ratios["cpu_per_req"].append(r["cpu_us_per_req"] / b["cpu_us_per_req"])
            if r["latency_us"].get("p99") is not None and b["latency_us"].get("p99"):
                ratios["p99"].append(r["latency_us"]["p99"] / b["latency_us"]["p99"])
        s["vs_nginx"] = {k: median(v) for k, v in ratios.items()}  # vs the measurement's baseline
        s["baseline"] = baseline
        if kind == "http1":
            s["wrk_cores"] = s["client_cores"]
        else:
            tls = next((r["tls"] for r in rs if r.get("tls")), {})
            s["tls"] = tls
        out[name] = s
    return out


def fmt_us(us: Optional[float]) -> str:
    if us is None:
        return "—"
    if us >= 1000:
        return f"{us / 1000:.2f} ms"
    return f"{us:.0f} µs"


def fmt_ratio(x: Optional[float]) -> str:
    return "—" if x is None else f"{x:.2f}×"


def fmt_num(x: Optional[float], spec: str) -> str:
    return "—" if x is None else format(x, spec)


def _table(summ: dict, names: list[str], m: Measure) -> list[str]:
    base = m.baseline
    unit = m.unit
    rate = "handshakes/s" if unit == "handshake" else "req/s"
    lines = [
        f"| target | {rate} | p50 | p99 | proxy CPU/{unit} | proxy cores | {rate} vs {base} "
        f"| CPU/{unit} vs {base} | p99 vs {base} | {m.client} cores | other load | runs | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in names:
        x = summ[name]
        v = x["vs_nginx"]
        errs = x["errors"] + x["non_2xx_3xx"]
        err_txt = str(errs) if not x["failed_runs"] else f"{errs} ({x['failed_runs']} run(s) FAILED)"
        rps = fmt_num(x["rps"], ",.0f")
        if x["runs"] > 1 and x["rps"]:
            rps += f" ±{(x['rps_max'] - x['rps_min']) / 2 / x['rps'] * 100:.0f}%"
        cpu = "—" if x["cpu_us_per_req"] is None else f"{x['cpu_us_per_req']:.1f} µs"
        lines.append(
            f"| {name} | {rps} | {fmt_us(x['p50_us'])} | {fmt_us(x['p99_us'])} | {cpu} "
            f"| {fmt_num(x['proxy_cores'], '.2f')} | {fmt_ratio(v['rps'])} | {fmt_ratio(v['cpu_per_req'])} "
            f"| {fmt_ratio(v['p99'])} | {fmt_num(x['client_cores'], '.2f')} | {fmt_num(x['other_cores'], '.2f')} "
            f"| {x['runs']} | {err_txt} |")
    lines.append("")
    noisy = [n for n in names if (summ[n]["other_cores"] or 0) > OTHER_LOAD_WARN]
    if noisy:
        lines += [f"**Warning:** other processes used more than {OTHER_LOAD_WARN} cores during the runs of "
                  f"{', '.join(noisy)} (column 'other load'): these numbers are disturbed; rerun on an idle "
                  "machine.", ""]
    return lines


def render_markdown(meta: dict, summaries: dict, names: list[str]) -> str:
    """summaries: {measure: {workers: {target: summary}}}."""
    m, s = meta["machine"], meta["settings"]
    kinds = [k for k in MEASURES if k in summaries]
    loads = []
    if "http1" in kinds:
        loads.append(f"- load (HTTP/1.1): `wrk -t{s['wrk_threads']} -c{s['connections']} -d{s['duration_s']:g}s "
                     f"--latency` (keep-alive, `X-Api-Key` header on every request)")
    if "h2" in kinds:
        loads.append(f"- load (TLS, HTTP/2): `h2load -t{s['wrk_threads']} -c{s['connections']} -m{s['streams']} "
                     f"-D {s['duration_s']:g}` to `https://{TLS_NAME}:PORT/` (SNI {TLS_NAME}, ALPN h2, "
                     "`X-Api-Key` header); p50/p99 from h2load's per-request log")
    if "handshake" in kinds:
        loads.append(f"- load (TLS, handshakes): `tls_handshake_client.py`, {s['handshake_procs']} process(es) "
                     f"sharing {s['connections']} closed-loop connections; each connection = a full TLS "
                     "handshake (no session resumption) + one HTTP/1.1 GET with `Connection: close`; p50/p99 = "
                     "connect + handshake + request + response, as seen by a Python client")
    if s.get("certificate"):
        loads.append(f"- TLS: {s['certificate']}; nginx-h2tls: `ssl_protocols TLSv1.2 TLSv1.3`, upstream "
                     f"`keepalive {s['nginx_h2tls_upstream_keepalive']}` (≥ requests in flight); the same bound "
                     "for pingora-bare-h2tls (`upstream_keepalive_pool_size`) and portcullis-h2tls "
                     "(`[server] upstream_keepalive`)")
    lines = [
        f"# portcullis load benchmark — {meta['timestamp']}",
        "",
        f"- machine: {m['nproc']} CPUs, {m['cpu_model']}, kernel {m['kernel']}, {m['mem_total']}",
        f"- versions: {m['versions']['portcullis']} ({m['versions']['git']}), {m['versions']['nginx']}, "
        f"{m['versions']['haproxy']}, {m['versions']['wrk']}"
        + (f", {m['versions']['h2load']}, {m['versions']['openssl']}" if kinds != ["http1"] else ""),
        *loads,
        f"- every run: {s['warmup_s']:g}s warm-up, then {s['duration_s']:g}s measured; {s['rounds']} interleaved "
        "round(s), medians shown",
        f"- upstream: nginx, {s['upstream_workers']} worker(s), two server blocks on loopback returning a "
        f"{s['body_bytes']}-byte body",
        f"- pinning: {s['pinning']}",
        f"- CPU used by other processes just before start: {m['busy_cores_before_start']:.2f} cores",
        "",
    ]
    multi = len(kinds) > 1
    for kind in kinds:
        meas = MEASURES[kind]
        knames = [n for n in names if kind in TARGETS_BY_NAME[n].measures]
        if multi:
            lines += [f"## {meas.title}", ""]
        for w, summ in summaries[kind].items():
            lines += [f"{'###' if multi else '##'} workers = {w}", ""]
            lines += _table(summ, knames, meas)
            if kind != "http1":
                tls = {n: summ[n].get("tls") for n in knames if summ[n].get("tls")}
                if tls:
                    lines += ["Negotiated: " + "; ".join(
                        f"{n}: {t.get('version')} {t.get('cipher')}"
                        + (f" {t['key_exchange'].split()[0]}" if t.get("key_exchange") else "")
                        + f" ALPN {t.get('alpn')}" for n, t in tls.items()), ""]
    lines += [
        "proxy CPU/req (or /handshake) = utime+stime of all the proxy's processes during the measured run ÷ "
        "requests (handshakes) completed; proxy cores = that CPU time ÷ run time. Ratios are target ÷ baseline "
        "(nginx for HTTP/1.1, nginx-h2tls for TLS) within the same round, median over rounds (CPU and p99: "
        "lower is better; rates: higher is better). ±% = half the min–max spread over rounds. wrk / h2load / "
        "client cores = CPU used by the load generator (near 1.0 per wrk/h2load thread: the client is the bottleneck). other "
        "load = CPU used on the machine by anything else (should be near 0). errors = socket/TLS errors + "
        "non-2xx responses.",
        "",
    ]
    return "\n".join(lines)


def _short_version(cmd: list[str], pattern: str, name: str) -> str:
    if not shutil.which(cmd[0]):
        return f"{name} (missing)"
    m = re.search(pattern, run_text(cmd))
    return f"{name} {m.group(1)}" if m else f"{name} (unknown version)"


def machine_info(args) -> dict:
    cpu_model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "unknown"
    try:
        kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
        mem = f"{kb / 1024 / 1024:.1f} GiB RAM"
    except (OSError, AttributeError):
        pass
    git = run_text(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    if "fatal" in git or "unavailable" in git:
        git = "no git commit"
    elif run_text(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"]):
        git += "-dirty"
    pc = run_text([str(args.portcullis_bin), "--version"]) if args.portcullis_bin.exists() else "portcullis (not built)"
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model,
        "kernel": platform.release(),
        "mem_total": mem,
        "python": platform.python_version(),
        "versions": {
            "portcullis": pc.splitlines()[0] if pc else "portcullis",
            "git": git,
            "nginx": run_text(["nginx", "-v"]).replace("nginx version: ", ""),
            "haproxy": _short_version(["haproxy", "-v"], r"HAProxy version (\S+)", "haproxy"),
            "wrk": _short_version(["wrk", "-v"], r"wrk (\S+)", "wrk"),
            "h2load": run_text(["h2load", "--version"]) if shutil.which("h2load") else "h2load (missing)",
            "openssl": _short_version(["openssl", "version"], r"OpenSSL (\S+)", "OpenSSL"),
        },
    }


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------

def _seconds(s: str) -> int:
    """wrk takes whole seconds only."""
    try:
        return int(s[:-1] if s.endswith("s") else s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r}: whole seconds, e.g. 10 or 10s") from None


def parse_args(argv=None):
    target_dir = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--duration", type=_seconds, default=10,
                    help="whole seconds of each measured wrk run (e.g. 10 or 10s)")
    ap.add_argument("--warmup", type=_seconds, default=2,
                    help="whole seconds of the warm-up wrk run before each measured run (0 = none)")
    ap.add_argument("--connections", type=int, default=50,
                    help="wrk -c, h2load -c, concurrent connections of the handshake clients")
    ap.add_argument("--wrk-threads", type=int, default=1, help="wrk -t and h2load -t")
    ap.add_argument("--tls", action="store_true",
                    help=f"add the TLS targets ({', '.join(TLS_TARGETS)}) to the target list")
    ap.add_argument("--streams", type=int, default=10, help="h2load -m: concurrent streams per HTTP/2 connection")
    ap.add_argument("--h2-upstream-keepalive", type=int, default=0, metavar="N",
                    help="idle upstream connections the TLS targets keep per worker (nginx `keepalive`, Pingora "
                         "upstream_keepalive_pool_size, portcullis upstream_keepalive); "
                         "0 = connections x streams (the requests in flight)")
    ap.add_argument("--handshake-procs", type=int, default=2,
                    help="processes of tls_handshake_client.py sharing --connections (Python: ~1 core each)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (medians are reported)")
    ap.add_argument("--workers", default="1,2",
                    help="comma list: proxy workers (nginx worker_processes, haproxy nbthread, Pingora threads)")
    ap.add_argument("--targets", default=",".join(t.name for t in TARGETS
                                                   if not t.planned and t.name not in TLS_TARGETS),
                    help="comma list of targets, in round order (see --list-targets); the TLS targets "
                         "are not in the default list: add them with --tls or name them here")
    ap.add_argument("--list-targets", action="store_true", help="list targets, including planned hooks, and exit")
    ap.add_argument("--pin", nargs="?", const="0:1", default=None, metavar="PROXY_CPUS:LOAD_CPUS",
                    help="pin with taskset: proxy on PROXY_CPUS, wrk + upstream on LOAD_CPUS "
                         "(bare --pin means 0:1); default: no pinning")
    ap.add_argument("--upstream-workers", type=int, default=1, help="worker_processes of the upstream nginx")
    ap.add_argument("--out-dir", type=Path, default=REPO / "bench-results", help="where the .md and .json go")
    ap.add_argument("--portcullis-bin", type=Path, default=target_dir / "release" / "portcullis")
    ap.add_argument("--before-bin", type=Path, default=None, metavar="PATH",
                    help="portcullis as built before a change: every portcullis target also runs as "
                         "NAME@before with it, in the same interleaved rounds")
    ap.add_argument("--bare-bin", type=Path,
                    default=REPO / "benches" / "bare-unpatched" / "target" / "release" / "bare_pingora_unpatched",
                    help="bare Pingora as released (pingora-bare*)")
    ap.add_argument("--bare-patched-bin", type=Path, default=target_dir / "release" / "examples" / "bare_pingora",
                    help="bare Pingora with patches/ (pingora-bare*-patched)")
    ap.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (configs, logs) for inspection")
    a = ap.parse_args(argv)
    return a


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.list_targets:
        for t in TARGETS:
            state = f"HOOK, not implemented: {t.planned}" if t.planned else "available"
            print(f"{t.name:20} [{'+'.join(t.measures)}] {t.description}  ({state})")
        return 0

    names = [n.strip() for n in args.targets.split(",") if n.strip()]
    if args.tls:
        names += [n for n in TLS_TARGETS if n not in names]
    for n in names:
        if n not in TARGETS_BY_NAME:
            sys.exit(f"unknown target {n!r}; see --list-targets")
        if TARGETS_BY_NAME[n].planned:
            sys.exit(f"target {n!r} is a hook for a later issue ({TARGETS_BY_NAME[n].planned})")
    if len(set(names)) != len(names):
        sys.exit("--targets lists a target twice")
    if args.before_bin:
        # Each portcullis target twice, interleaved: as built now and as
        # built before a change (NAME@before), for before/after figures.
        if not args.before_bin.exists():
            sys.exit(f"{args.before_bin} not found")
        with_before = []
        for n in names:
            with_before.append(n)
            if n.startswith("portcullis"):
                base = TARGETS_BY_NAME[n]
                twin = dataclasses.replace(
                    base, name=f"{n}@before", description=f"{base.description} (--before-bin)",
                    start=lambda c, start=base.start: start(dataclasses.replace(c, portcullis_bin=args.before_bin)))
                TARGETS_BY_NAME[twin.name] = twin
                with_before.append(twin.name)
        names = with_before
    try:
        workers_list = [int(w) for w in args.workers.split(",") if w.strip()]
    except ValueError:
        sys.exit("--workers takes a comma list of integers, e.g. 1,2")
    if not workers_list or min(workers_list) < 1 or args.rounds < 1 or args.duration <= 0:
        sys.exit("--workers, --rounds and --duration must be positive")
    if args.streams < 1 or args.handshake_procs < 1 or args.connections < 1 or args.h2_upstream_keepalive < 0:
        sys.exit("--streams, --handshake-procs and --connections must be positive")
    h2_keepalive = args.h2_upstream_keepalive or max(64, args.connections * args.streams)
    # Jobs of one round: every HTTP/1.1 target, then the TLS targets' h2 runs,
    # then their handshake runs; within each, the --targets order.
    jobs = [(n, k) for k in MEASURES for n in names if k in TARGETS_BY_NAME[n].measures]
    kinds = [k for k in MEASURES if any(jk == k for _, jk in jobs)]

    need = {"nginx"}  # nginx is always the upstream
    need.update({"http1": "wrk", "h2": "h2load"}[k] for k in kinds if k in ("http1", "h2"))
    for n in names:
        need.update(TARGETS_BY_NAME[n].needs)
    missing = [b for b in sorted(need) if not shutil.which(b)]
    if args.pin:
        need.add("taskset")
        if not shutil.which("taskset"):
            missing.append("taskset")
    if missing:
        sys.exit(f"missing: {', '.join(missing)} (run benches/load/run.sh, which installs them)")
    for n, b in (("portcullis", args.portcullis_bin), ("portcullis-h2tls", args.portcullis_bin),
                 ("portcullis-auth", args.portcullis_bin), ("portcullis-gateway", args.portcullis_bin),
                 ("pingora-bare", args.bare_bin), ("pingora-bare-h2tls", args.bare_bin),
                 ("pingora-bare-respond", args.bare_bin),
                 ("pingora-bare-patched", args.bare_patched_bin),
                 ("pingora-bare-h2tls-patched", args.bare_patched_bin),
                 ("pingora-bare-respond-patched", args.bare_patched_bin)):
        if n in names and not b.exists():
            sys.exit(f"{b} not found: run benches/load/run.sh, or cargo build --release --bin portcullis "
                     "--example bare_pingora && cargo build --release --manifest-path "
                     "benches/bare-unpatched/Cargo.toml")

    proxy_prefix: list[str] = []
    load_prefix: list[str] = []
    if args.pin:
        try:
            pc, lc = args.pin.split(":")
        except ValueError:
            sys.exit("--pin takes PROXY_CPUS:LOAD_CPUS, e.g. 0:1")
        allowed = os.sched_getaffinity(0)
        for spec in (pc, lc):
            for part in spec.split(","):
                lo, _, hi = part.partition("-")
                for c in range(int(lo), int(hi or lo) + 1):
                    if c not in allowed:
                        sys.exit(f"--pin: CPU {c} not available (allowed: {sorted(allowed)})")
        proxy_prefix, load_prefix = ["taskset", "-c", pc], ["taskset", "-c", lc]
        pinning = f"taskset: proxy on CPU {pc}, wrk + upstream on CPU {lc}"
    else:
        pinning = "none (the scheduler places proxy, wrk and upstream on any CPU)"

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    atexit.register(stop_all)
    tmp = Path(tempfile.mkdtemp(prefix="portcullis-load-"))
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    body_bytes = len(BODY_PREFIX) + 2
    meta = {
        "timestamp": stamp,
        "machine": machine_info(args),
        "settings": {
            "duration_s": args.duration, "warmup_s": args.warmup, "connections": args.connections,
            "wrk_threads": args.wrk_threads, "rounds": args.rounds, "workers": workers_list,
            "targets": names, "pinning": pinning, "pin": args.pin, "upstream_workers": args.upstream_workers,
            "body_bytes": body_bytes, "baseline": BASELINE,
            "measures": kinds, "baselines": {k: MEASURES[k].baseline for k in kinds},
            "streams": args.streams, "handshake_procs": args.handshake_procs,
            "nginx_h2tls_upstream_keepalive": h2_keepalive,
            "certificate": (f"EC P-256 (prime256v1) self-signed certificate for {TLS_NAME} (CN + DNS SAN), "
                            "made with the openssl CLI at start, the same files for every TLS target"
                            if any(k != "http1" for k in kinds) else None),
        },
    }
    b0 = machine_busy_ticks()
    time.sleep(1.0)
    idle_busy = (machine_busy_ticks() - b0) / CLK_TCK
    meta["machine"]["busy_cores_before_start"] = round(idle_busy, 2)
    if idle_busy > OTHER_LOAD_WARN:
        log(f"WARNING: the machine is busy before the benchmark starts ({idle_busy:.2f} cores used by other "
            "processes): results will be disturbed")
    n_runs = len(workers_list) * args.rounds * len(jobs)
    n_hs = len(workers_list) * args.rounds * sum(1 for _, k in jobs if k == "handshake")
    minutes = (n_runs * (args.duration + args.warmup + 1.5) + n_hs * 2.5) / 60
    log(f"load bench: {n_runs} runs ({len(workers_list)} worker setting(s) x {args.rounds} round(s) x "
        f"{len(jobs)} target/measurement pairs), about {minutes:.1f} min; "
        f"pinning: {pinning}; temp dir {tmp}")

    runs: list[dict] = []
    upstream = None
    interrupted = False
    try:
        lua = tmp / "report.lua"
        lua.write_text(WRK_LUA)
        cert = key = None
        if any(k != "http1" for k in kinds):
            cert, key = make_cert(tmp)
        upstream, backends = start_upstream(tmp, args.upstream_workers, load_prefix)
        for w in workers_list:
            ctx = Ctx(tmp=tmp, backends=backends, workers=w, proxy_prefix=proxy_prefix,
                      portcullis_bin=args.portcullis_bin, bare_bin=args.bare_bin,
                      bare_patched_bin=args.bare_patched_bin, cert=cert, key=key,
                      h2_keepalive=h2_keepalive)
            for rnd in range(1, args.rounds + 1):
                for n, kind in jobs:
                    label = n if kind == "http1" else f"{n} ({kind})"
                    log(f"[workers={w} round {rnd}/{args.rounds}] {label} ...")
                    r = measure(args, ctx, TARGETS_BY_NAME[n], kind, lua, load_prefix, upstream)
                    r["round"] = rnd
                    runs.append(r)
                    if r["ok"]:
                        unit = MEASURES[kind].unit
                        log(f"    {r['rps']:,.0f} {unit}/s, p99 {fmt_us(r['latency_us'].get('p99'))}"
                            + (f", {r['cpu_us_per_req']:.1f} µs CPU/{unit}" if r["cpu_us_per_req"] else ""))
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted: stopping everything, reporting what was measured")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup short
        stop_all()
        if args.keep_tmp:
            log(f"temp dir kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    summaries: dict = {}
    for k in kinds:
        knames = [n for n in names if k in TARGETS_BY_NAME[n].measures]
        done_workers = [w for w in workers_list if any(r["workers"] == w and r["measure"] == k for r in runs)]
        if done_workers:
            summaries[k] = {w: summarize(runs, knames, w, k) for w in done_workers}
    md = render_markdown(meta, summaries, names)
    if interrupted:
        md += "\n**Interrupted: partial results.**\n"
    print(md)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    md_path = args.out_dir / f"load-{stamp}.md"
    json_path = args.out_dir / f"load-{stamp}.json"
    md_path.write_text(md)
    # "summary": HTTP/1.1 section, as before ({workers: {target: ...}}); "tls_summary":
    # {workers: {"h2" | "handshake": {target: ...}}}, ratios against nginx-h2tls.
    tls_summary: dict = {}
    for k in ("h2", "handshake"):
        for w, s in summaries.get(k, {}).items():
            tls_summary.setdefault(str(w), {})[k] = s
    json_path.write_text(json.dumps({**meta, "summary": {str(w): s for w, s in summaries.get("http1", {}).items()},
                                     "tls_summary": tls_summary, "runs": runs, "interrupted": interrupted},
                                    indent=2))
    log(f"wrote {md_path} and {json_path}")
    failed = [r for r in runs if not r["ok"]]
    return 130 if interrupted else (1 if failed else 0)


if __name__ == "__main__":
    sys.exit(main())
