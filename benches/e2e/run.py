#!/usr/bin/env python3
"""End-to-end benchmark: protogate against nginx's bare grpc_pass hop and the upstream itself.

Run from the repository root with

    python3 benches/e2e/run.py            # about 6 minutes
    python3 benches/e2e/run.py --quick    # one repetition, shorter runs

It builds the release binaries, starts the catalog upstream (examples/bench_upstream.rs),
protogate and Debian's nginx as a grpc_pass hop, all on 127.0.0.1, and drives each with
h2load (Debian's nghttp2-client): JSON over HTTP/1.1 keep-alive for protogate, gRPC frames
over HTTP/2 for nginx and for the upstream directly. The proxy under test is pinned to core 0,
the upstream and h2load to the other cores. Each case is repeated, the targets taking turns, and
the medians reported: requests/s, p50/p99 latency, the proxy's CPU time per request (from
/proc/<pid>/stat) and its peak RSS, with protogate's CPU ratios against nginx and the direct
call (the median of the ratios within each turn, which a noisy neighbour skews least).

Missing tools are installed with apt-get when running as root (nginx, nghttp2-client).
"""

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
UPSTREAM_PORT = 50061
GATEWAY_PORT = 18080
NGINX_PORT = 18081
CLK_TCK = os.sysconf("SC_CLK_TCK")
CORES = os.cpu_count() or 2
PROXY_CORE = "0"
OTHER_CORES = ",".join(str(c) for c in range(1, CORES)) or "0"


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def ensure_tools():
    missing = [pkg for tool, pkg in (("nginx", "nginx"), ("h2load", "nghttp2-client")) if not shutil.which(tool)]
    if missing:
        if os.geteuid() != 0:
            sys.exit(f"missing: {', '.join(missing)}; install them (apt-get install {' '.join(missing)})")
        subprocess.run(["apt-get", "install", "-y", *missing], check=True, stdout=subprocess.DEVNULL)


def build():
    log("building release binaries ...")
    subprocess.run(
        ["cargo", "build", "--release", "--bin", "protogate", "--example", "bench_upstream"], cwd=ROOT, check=True
    )


def port_free(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def wait_for_port(port, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nothing listens on port {port} after {timeout}s")


def cpu_seconds(pid):
    """(user, kernel) CPU seconds the process has used: utime and stime."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def status_kib(pid, key):
    match = re.search(rf"^{key}:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
    return int(match.group(1)) if match else 0


# === gRPC request bodies (hand-encoded: the benchmark needs no protobuf library) ===


def varint(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(number, wire_type, payload):
    key = varint(number << 3 | wire_type)
    if wire_type == 2:
        return key + varint(len(payload)) + payload
    return key + payload


def grpc_frame(message):
    return b"\x00" + struct.pack(">I", len(message)) + message


def item_message():
    dims = b"".join(field(n, 1, struct.pack("<d", v)) for n, v in ((1, 22.5), (2, 25.0), (3, 16.5), (4, 1.2)))
    return b"".join(
        [
            field(2, 2, "Stainless steel kettle, model 7".encode()),
            field(3, 2, "1.7 litre, rapid boil, limescale filter, cordless base with 360° swivel".encode()),
            field(4, 0, varint(34_990_000)),
            field(5, 2, b"EUR"),
            field(6, 0, varint(12)),
            field(7, 0, varint(4)),
            field(8, 2, b"kitchen"),
            field(8, 2, b"electric"),
            field(11, 2, dims),
            field(12, 1, struct.pack("<d", 4.6)),
            field(13, 0, varint(1)),
            field(14, 2, b"seller-3"),
        ]
    )


# The same item as JSON (~350 bytes): the body of POST /v1/items, bound to the `item` field.
ITEM_JSON = (
    '{"name":"Stainless steel kettle, model 7","description":"1.7 litre, rapid boil, limescale filter, '
    'cordless base with 360\u00b0 swivel","priceMicros":"34990000","currency":"EUR","stock":12,"category":"KITCHEN",'
    '"tags":["kitchen","electric"],"dimensions":{"widthCm":22.5,"heightCm":25,"depthCm":16.5,"weightKg":1.2},'
    '"rating":4.6,"available":true,"sellerId":"seller-3"}'
)

SCENARIOS = {
    "GET one item": {
        "http": ("GET", "/v1/items/item-42", None),
        "grpc": ("/protogate.bench.v1.Catalog/GetItem", field(1, 2, b"item-42")),
    },
    "GET list of 50": {
        "http": ("GET", "/v1/items?pageSize=50", None),
        "grpc": ("/protogate.bench.v1.Catalog/ListItems", field(1, 0, varint(50))),
    },
    "POST create": {
        "http": ("POST", "/v1/items", ITEM_JSON),
        "grpc": ("/protogate.bench.v1.Catalog/CreateItem", field(1, 2, item_message())),
    },
}


# === processes ===


class Processes:
    def __init__(self, workdir):
        self.workdir = workdir
        self.children = []

    def start(self, args, core, **kwargs):
        process = subprocess.Popen(
            ["taskset", "-c", core, *args],
            stdout=subprocess.DEVNULL,
            stderr=open(self.workdir / f"{Path(args[0]).name}.log", "w"),
            **kwargs,
        )
        self.children.append(process)
        return process

    def stop(self):
        for process in reversed(self.children):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.children:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def start_upstream_and_gateway(procs, upstream_port, gateway_port):
    """The catalog upstream on the other cores, protogate in front of it on core 0."""
    upstream = procs.start(
        [str(ROOT / "target/release/examples/bench_upstream"), f"127.0.0.1:{upstream_port}"], OTHER_CORES
    )
    wait_for_port(upstream_port)
    gateway = procs.start(
        [
            str(ROOT / "target/release/protogate"),
            "serve",
            "--listen", f"127.0.0.1:{gateway_port}",
            "--descriptors", str(ROOT / "proto/protogate/bench/v1/catalog.proto"),
            "--upstream", f"http://127.0.0.1:{upstream_port}",
        ],
        PROXY_CORE,
        env={**os.environ, "RUST_LOG": "warn"},
    )
    wait_for_port(gateway_port)
    return upstream, gateway


def nginx_worker_pid(master):
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        out = subprocess.run(["pgrep", "-P", str(master.pid)], capture_output=True, text=True).stdout.split()
        if out:
            return int(out[0])
        time.sleep(0.05)
    sys.exit("nginx started no worker")


def start_nginx(procs, workdir):
    conf = workdir / "nginx.conf"
    conf.write_text(
        f"""
worker_processes 1;
pid {workdir}/nginx.pid;
error_log {workdir}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    upstream catalog {{ server 127.0.0.1:{UPSTREAM_PORT}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{NGINX_PORT} http2;
        http2_max_concurrent_streams 1024;
        keepalive_requests 1000000;
        location / {{ grpc_pass grpc://catalog; }}
    }}
}}
"""
    )
    master = procs.start(["nginx", "-c", str(conf), "-p", str(workdir), "-g", "daemon off;"], PROXY_CORE)
    wait_for_port(NGINX_PORT)
    return nginx_worker_pid(master)


# === load ===


def h2load(url, *, grpc=None, http=None, connections, duration, workdir):
    """Runs h2load and returns (requests done, req/s, p50 µs, p99 µs)."""
    log_file = workdir / "h2load.log"
    if log_file.exists():
        log_file.unlink()
    args = ["taskset", "-c", OTHER_CORES, "h2load", "-c", str(connections), "-D", str(duration), "--log-file", str(log_file)]
    if grpc is not None:
        body = workdir / "body.bin"
        body.write_bytes(grpc_frame(grpc))
        args += ["-m", "1", "-d", str(body), "-H", "content-type: application/grpc", "-H", "te: trailers"]
    else:
        method, _, body_text = http
        args += ["--h1"]
        if method == "POST":
            body = workdir / "body.json"
            body.write_text(body_text)
            args += ["-d", str(body), "-H", "content-type: application/json"]
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    done = int(re.search(r"requests: \d+ total, \d+ started, (\d+) done", out).group(1))
    succeeded = int(re.search(r"(\d+) succeeded", out).group(1))
    if succeeded != done:
        sys.exit(f"{succeeded} of {done} requests succeeded:\n{out}")
    rps = float(re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", out).group(1))
    times = sorted(int(line.split("\t")[2]) for line in log_file.read_text().splitlines() if line.strip())
    if not times:
        sys.exit(f"h2load logged no requests:\n{out}")
    return done, rps, times[len(times) // 2], times[min(len(times) - 1, len(times) * 99 // 100)]


def measure(pid, run):
    user_before, kernel_before = cpu_seconds(pid)
    done, rps, p50, p99 = run()
    user_after, kernel_after = cpu_seconds(pid)
    user, kernel = user_after - user_before, kernel_after - kernel_before
    cpu_us = (user + kernel) * 1e6 / max(done, 1)
    return {"rps": rps, "p50": p50, "p99": p99, "cpu": cpu_us, "kernel": kernel / max(user + kernel, 1e-9)}


def median_of(samples):
    return {k: statistics.median(s[k] for s in samples) for k in samples[0]}


def hold_connections(port, count, path):
    """Opens `count` keep-alive connections, one request each, and keeps them open."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, count + 256)), hard))
    sockets = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
        sockets.append(s)
    for s in sockets:
        s.settimeout(10)
        data = b""
        while b"\r\n\r\n" not in data:
            data += s.recv(65536)
    return sockets


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one repetition of 3 s runs")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--duration", type=int, default=4, help="seconds per run")
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    if args.quick:
        args.repeat, args.duration = 1, 3

    ensure_tools()
    busy = [p for p in (UPSTREAM_PORT, GATEWAY_PORT, NGINX_PORT) if not port_free(p)]
    if busy:
        sys.exit(f"ports already in use: {busy}; stop whatever listens there first")
    build()
    workdir = Path(tempfile.mkdtemp(prefix="protogate-e2e-"))
    procs = Processes(workdir)
    try:
        upstream, gateway = start_upstream_and_gateway(procs, UPSTREAM_PORT, GATEWAY_PORT)
        nginx = start_nginx(procs, workdir)

        targets = {
            "direct": (upstream.pid, f"http://127.0.0.1:{UPSTREAM_PORT}", "grpc"),
            "nginx": (nginx, f"http://127.0.0.1:{NGINX_PORT}", "grpc"),
            "protogate": (gateway.pid, f"http://127.0.0.1:{GATEWAY_PORT}", "http"),
        }
        results, ratios = {}, {}
        for scenario, requests in SCENARIOS.items():
            runs = {}
            for name, (pid, base, kind) in targets.items():
                path = requests["grpc"][0] if kind == "grpc" else requests["http"][1]
                load = dict(connections=args.connections, workdir=workdir)
                load["grpc" if kind == "grpc" else "http"] = requests["grpc"][1] if kind == "grpc" else requests["http"]
                runs[name] = (pid, base + path, load)
                h2load(base + path, duration=1, **load)  # warm-up
            # Targets take turns, so that a slow spell on a shared machine hits them all alike.
            samples = {name: [] for name in targets}
            for _ in range(args.repeat):
                for name, (pid, url, load) in runs.items():
                    samples[name].append(measure(pid, lambda: h2load(url, duration=args.duration, **load)))
            for name in targets:
                results[(scenario, name)] = median_of(samples[name])
                log(f"{scenario:16} {name:10} {results[(scenario, name)]}")
            for other in ("nginx", "direct"):
                ratios[(scenario, other)] = statistics.median(
                    gw["cpu"] / o["cpu"] for gw, o in zip(samples["protogate"], samples[other])
                )

        # Latency added at concurrency 1.
        p50s = {name: [] for name in targets}
        for _ in range(args.repeat):
            for name, (pid, base, kind) in targets.items():
                requests = SCENARIOS["GET one item"]
                load = dict(connections=1, workdir=workdir)
                load["grpc" if kind == "grpc" else "http"] = requests["grpc"][1] if kind == "grpc" else requests["http"]
                path = requests["grpc"][0] if kind == "grpc" else requests["http"][1]
                p50s[name].append(h2load(base + path, duration=args.duration, **load)[2])
        latency = {name: statistics.median(values) for name, values in p50s.items()}

        rss_load = status_kib(gateway.pid, "VmHWM")
        held = hold_connections(GATEWAY_PORT, 1000, "/v1/items/item-1")
        rss_1000 = status_kib(gateway.pid, "VmRSS")
        for s in held:
            s.close()
        report(results, ratios, latency, rss_load, rss_1000, args)
    finally:
        procs.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def report(results, ratios, latency, rss_load, rss_1000, args):
    print(f"\n{args.connections} connections, {args.duration} s per run, median of {args.repeat}; "
          f"proxy pinned to core {PROXY_CORE}, upstream and h2load on {OTHER_CORES}.\n")
    print("| scenario | target | req/s | p50 µs | p99 µs | proxy CPU µs/req | of which kernel |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for (scenario, name), r in results.items():
        print(f"| {scenario} | {name} | {r['rps']:.0f} | {r['p50']:.0f} | {r['p99']:.0f} | {r['cpu']:.1f} "
              f"| {r['kernel']:.0%} |")
    print("\n| scenario | protogate CPU ÷ nginx CPU | protogate CPU ÷ upstream CPU (direct) |")
    print("|---|---:|---:|")
    for scenario in SCENARIOS:
        print(f"| {scenario} | {ratios[(scenario, 'nginx')]:.2f} | {ratios[(scenario, 'direct')]:.2f} |")
    print(f"\nLatency added at concurrency 1 (p50, GET one item): protogate "
          f"{latency['protogate'] - latency['direct']:.0f} µs, nginx {latency['nginx'] - latency['direct']:.0f} µs "
          f"(p50 protogate {latency['protogate']:.0f} µs, nginx {latency['nginx']:.0f} µs, direct {latency['direct']:.0f} µs)")
    print(f"protogate peak RSS under load: {rss_load / 1024:.1f} MiB; with 1,000 open keep-alive connections: "
          f"{rss_1000 / 1024:.1f} MiB")


if __name__ == "__main__":
    main()
