#!/usr/bin/env python3
"""CPU per MiB of response compression: portcullis `[routes.compression]`
against nginx `gzip on` at the same level, on the same JSON document.

An nginx origin serves a JSON document (SIZE bytes, records of orders);
in front of it, one proxy at a time, pinned to CPU 0 with one worker:

  nginx          proxy, no compression
  nginx-gzip     proxy, `gzip on; gzip_comp_level LEVEL; gzip_proxied any`
  portcullis     proxy, no compression
  portcullis-gzip / -br / -zstd   `[routes.compression]` with that
                 algorithm (gzip at LEVEL; br and zstd at their defaults)

`wrk -c10` on CPU 1 loads it for a few seconds with `Accept-Encoding`
naming the algorithm; the proxy's CPU time (utime + stime from /proc)
around them gives milliseconds per MiB of the document, and the cost of
compressing alone is that minus the same proxy without compression.
Rounds alternate the targets. Targets 127.0.0.1 only; stops by itself.

    benches/load/compress.py --bin target/release/portcullis --level 6 --rounds 3

Needs nginx, wrk and taskset. Python 3 standard library only.
"""

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402
from ab import cpu_seconds  # noqa: E402  (utime + stime from /proc)


def document(size: int) -> bytes:
    records, i = [], 0
    text = b"[]"
    while len(text) < size:
        records.append({"id": i, "customer": f"customer-{i % 97}", "state": ["open", "paid", "shipped"][i % 3],
                        "total": round(i * 3.7 % 1000, 2), "items": [{"sku": f"SKU-{(i * 7) % 500}", "qty": i % 5 + 1}]})
        i += 1
        if i % 50 == 0:
            text = json.dumps(records).encode()
    return json.dumps(records).encode()[:size]


def origin_conf(tmp: Path, port: int, root: Path) -> str:
    return bench.nginx_common(tmp, "origin", 1) + "http {\n" + bench.nginx_http_common(tmp, "origin") + f"""    server {{
        listen {bench.HOST}:{port};
        location / {{ root {root}; default_type application/json; etag off; }}
    }}
}}
"""


def nginx_conf(tmp: Path, name: str, port: int, origin: int, level: int) -> str:
    gzip = (f"    gzip on;\n    gzip_comp_level {level};\n    gzip_types application/json;\n"
            "    gzip_min_length 1024;\n    gzip_proxied any;\n    gzip_vary on;\n") if level else ""
    return bench.nginx_common(tmp, name, 1) + "http {\n" + bench.nginx_http_common(tmp, name) + gzip + \
        bench.nginx_upstream_block([origin]) + f"""    server {{
        listen {bench.HOST}:{port};
        location / {{
            proxy_pass http://up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


def portcullis_conf(port: int, admin: int, origin: int, algorithm: str, level: int) -> str:
    compression = ""
    if algorithm:
        lvl = f"level = {level}\n" if algorithm == "gzip" else ""
        compression = f'[routes.compression]\nalgorithms = ["{algorithm}"]\n{lvl}'
    return f"""[server]
threads = 1
[access_log]
enabled = false
[[listeners]]
address = "{bench.HOST}:{port}"
[admin]
address = "{bench.HOST}:{admin}"
[pools.up]
backends = [ {{ address = "{bench.HOST}:{origin}" }} ]
[[routes]]
id = "doc"
path = "/"
pool = "up"
{compression}"""


def load(port: int, seconds: float, accept: str) -> tuple[int, int]:
    """Load for `seconds` (wrk, one thread, 10 connections, on CPU 1):
    (responses, body bytes per response, headers included)."""
    headers = ["-H", f"Accept-Encoding: {accept}"] if accept else []
    r = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", "-c10", f"-d{int(seconds)}s"] + headers +
                       [f"http://{bench.HOST}:{port}/doc.json"], capture_output=True, text=True, timeout=600)
    m = re.search(r"(\d+) requests in [\d.]+\w+, ([\d.]+)(\w+) read", r.stdout)
    if not m or "Non-2xx" in r.stdout or "Socket errors" in r.stdout:
        raise RuntimeError(f"wrk: errors or no requests:\n{r.stdout}")
    n = int(m.group(1))
    unit = {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30}[m.group(3)]
    return n, int(float(m.group(2)) * unit / n)


def run(target: str, args, tmp: Path, origin: int) -> tuple[float, int]:
    """(CPU ms per MiB of the document, body bytes per response)."""
    port = bench.free_port()
    algorithm = target.split("-", 1)[1] if "-" in target else ""
    accept = {"gzip": "gzip", "br": "br", "zstd": "zstd"}.get(algorithm, "")
    if target.startswith("nginx"):
        conf = tmp / f"{target}.conf"
        conf.write_text(nginx_conf(tmp, target, port, origin, args.level if algorithm else 0))
        p = bench.spawn(["taskset", "-c", "0", "nginx", "-p", str(tmp), "-e", str(tmp / f"{target}-error.log"),
                         "-c", str(conf)])
    else:
        conf = tmp / f"{target}.toml"
        conf.write_text(portcullis_conf(port, bench.free_port(), origin, algorithm, args.level))
        p = bench.spawn(["taskset", "-c", "0", args.bin, "run", "-c", str(conf)])
    try:
        bench.wait_port(port, p, timeout=60)
        load(port, 1, accept)  # warm-up
        pids = bench.proc_tree(p.pid)
        before = cpu_seconds(pids)
        n, per_response = load(port, args.seconds, accept)
        used = cpu_seconds(pids) - before
    finally:
        bench.stop(p)
    mib = n * args.size / (1 << 20)
    return used * 1000 / mib, per_response


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default="target/release/portcullis")
    ap.add_argument("--level", type=int, default=6, help="gzip level for both (default 6)")
    ap.add_argument("--size", type=int, default=64 << 10, help="document bytes (default 64 KiB)")
    ap.add_argument("--seconds", type=int, default=5, help="load per run (default 5 s)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--targets", default="nginx,nginx-gzip,portcullis,portcullis-gzip,portcullis-br,portcullis-zstd")
    args = ap.parse_args()
    targets = args.targets.split(",")
    with tempfile.TemporaryDirectory(prefix="compress-bench-") as d:
        tmp = Path(d)
        root = tmp / "www"
        root.mkdir()
        (root / "doc.json").write_bytes(document(args.size))
        origin = bench.free_port()
        (tmp / "origin.conf").write_text(origin_conf(tmp, origin, root))
        o = bench.spawn(["taskset", "-c", "1", "nginx", "-p", str(tmp), "-e", str(tmp / "origin-error.log"),
                         "-c", str(tmp / "origin.conf")])
        try:
            bench.wait_port(origin, o)
            results: dict[str, list[tuple[float, int]]] = {t: [] for t in targets}
            for r in range(args.rounds):
                for t in targets:
                    results[t].append(run(t, args, tmp, origin))
                    bench.log(f"round {r + 1} {t}: {results[t][-1][0]:.1f} ms/MiB, {results[t][-1][1]} B/response")
        finally:
            bench.stop(o)
    med = {t: bench.median([x[0] for x in v]) for t, v in results.items()}
    print(f"\n{args.size} B JSON, gzip level {args.level}, {args.seconds} s of wrk -c10 per run, {args.rounds} rounds, medians\n")
    print("| target | CPU ms per MiB | body bytes per response | compressing alone, ms per MiB |")
    print("|---|---:|---:|---:|")
    for t in targets:
        base = "nginx" if t.startswith("nginx") else "portcullis"
        alone = med[t] - med[base] if t != base and base in med else None
        size = results[t][-1][1]
        print(f"| {t} | {med[t]:.1f} | {size} | {'' if alone is None else f'{alone:.1f}'} |")
    if {"nginx", "nginx-gzip", "portcullis", "portcullis-gzip"} <= set(med):
        a = med["portcullis-gzip"] - med["portcullis"]
        b = med["nginx-gzip"] - med["nginx"]
        print(f"\ngzip alone: portcullis {a:.1f} ms/MiB, nginx {b:.1f} ms/MiB: {a / b:.2f}x")
        print(f"whole proxy with gzip: portcullis {med['portcullis-gzip']:.1f}, nginx {med['nginx-gzip']:.1f}: "
              f"{med['portcullis-gzip'] / med['nginx-gzip']:.2f}x")


if __name__ == "__main__":
    main()
