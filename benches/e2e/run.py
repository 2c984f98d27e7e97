#!/usr/bin/env python3
"""End-to-end benchmark: protogate against nginx's bare grpc_pass hop, a gateway written by
hand for the same API, and the upstream itself.

Run from the repository root with

    python3 benches/e2e/run.py            # about 12 minutes
    python3 benches/e2e/run.py --quick    # one repetition, shorter runs, 16 connections

It builds the release binaries, starts the catalog upstream (examples/bench_upstream.rs) and,
all on 127.0.0.1, in front of it:

- protogate with its default configuration (JSON access log on, to a file; metrics on);
- protogate "stripped": the same with the access log off;
- protogate with a response cache on GET one item (`cache = { ttl }`), for cache hits;
- the hand-written peer (examples/handwritten_gateway.rs: axum, a generated tonic client,
  pbjson's serde — what a team writes instead of deploying a gateway);
- Debian's nginx as a bare grpc_pass hop, its access log off;

and drives each with h2load (Debian's nghttp2-client): JSON over HTTP/1.1 keep-alive for the
JSON gateways, gRPC frames over HTTP/2 for nginx and for the upstream directly. The proxy under
test is pinned to core 0, the upstream and h2load to the other cores. Each case is repeated, the
targets taking turns, and the medians reported: requests/s, p50/p99 latency, the proxy's CPU
time per request (from /proc/<pid>/stat) and its peak RSS, with CPU ratios against nginx (the
median of the ratios within each turn, which a noisy neighbour skews least).

Then a two-core run: protogate (default configuration) on every core, two worker threads,
against the same on one core: its CPU per request on each, and the scaling that implies.

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
PEER_PORT = 18082
STRIPPED_PORT = 18083
CACHED_PORT = 18084
WIDE_PORT = 18085
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


def build(profile):
    log(f"building the {profile} binaries ...")
    subprocess.run(
        ["cargo", "build", "--profile", profile, "--bin", "protogate",
         "--example", "bench_upstream", "--example", "handwritten_gateway"],
        cwd=ROOT,
        check=True,
    )
    return ROOT / "target" / profile


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

    def start(self, args, core, name=None, stdout=subprocess.DEVNULL, **kwargs):
        process = subprocess.Popen(
            ["taskset", "-c", core, *args],
            stdout=stdout,
            stderr=open(self.workdir / f"{name or Path(args[0]).name}.log", "w"),
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


def start_upstream(procs, binaries):
    """The catalog upstream, on the cores the proxies do not use."""
    upstream = procs.start([str(binaries / "examples/bench_upstream"), f"127.0.0.1:{UPSTREAM_PORT}"], OTHER_CORES)
    wait_for_port(UPSTREAM_PORT)
    return upstream


# What each protogate configuration adds to the default one (the flags give listener,
# descriptors and upstream).
STRIPPED = """
[access_log]
format = "off"
"""
CACHED = """
[[policy]]
name = "cached-items"
match = { path_prefix = "/v1/items/" , methods = ["GET"] }
cache = { ttl = "60s" }
"""


def start_gateway(procs, binaries, workdir, name, port, config="", cores=PROXY_CORE):
    """A protogate in front of the upstream; its access log (JSON, the default) to a file."""
    config_file = workdir / f"{name}.toml"
    config_file.write_text(config)
    gateway = procs.start(
        [
            str(binaries / "protogate"),
            "serve",
            "--config", str(config_file),
            "--listen", f"127.0.0.1:{port}",
            "--descriptors", str(ROOT / "proto/protogate/bench/v1/catalog.proto"),
            "--upstream", f"http://127.0.0.1:{UPSTREAM_PORT}",
        ],
        cores,
        name=name,
        stdout=open(workdir / f"{name}.access.log", "w"),
        # The log level a deployment runs at unless told otherwise: what it costs is measured.
        env={k: v for k, v in os.environ.items() if k != "RUST_LOG"},
    )
    wait_for_port(port)
    return gateway


def start_peer(procs, binaries):
    peer = procs.start(
        [str(binaries / "examples/handwritten_gateway"), f"127.0.0.1:{PEER_PORT}", f"http://127.0.0.1:{UPSTREAM_PORT}"],
        PROXY_CORE,
    )
    wait_for_port(PEER_PORT)
    return peer


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
    parser.add_argument("--quick", action="store_true", help="one repetition of 3 s runs, 16 connections")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--duration", type=int, default=3, help="seconds per run")
    parser.add_argument("--connections", default="16,64", help="comma-separated connection counts")
    parser.add_argument("--profile", default="release", help="the cargo profile to build and run")
    args = parser.parse_args()
    if args.quick:
        args.repeat, args.duration, args.connections = 1, 3, "16"
    connection_counts = [int(c) for c in args.connections.split(",")]

    ensure_tools()
    ports = (UPSTREAM_PORT, GATEWAY_PORT, NGINX_PORT, PEER_PORT, STRIPPED_PORT, CACHED_PORT, WIDE_PORT)
    busy = [p for p in ports if not port_free(p)]
    if busy:
        sys.exit(f"ports already in use: {busy}; stop whatever listens there first")
    binaries = build(args.profile)
    workdir = Path(tempfile.mkdtemp(prefix="protogate-e2e-"))
    procs = Processes(workdir)
    try:
        upstream = start_upstream(procs, binaries)
        gateway = start_gateway(procs, binaries, workdir, "protogate", GATEWAY_PORT)
        stripped = start_gateway(procs, binaries, workdir, "stripped", STRIPPED_PORT, STRIPPED)
        cached = start_gateway(procs, binaries, workdir, "cached", CACHED_PORT, CACHED)
        peer = start_peer(procs, binaries)
        nginx = start_nginx(procs, workdir)

        targets = {
            "direct": (upstream.pid, f"http://127.0.0.1:{UPSTREAM_PORT}", "grpc"),
            "nginx": (nginx, f"http://127.0.0.1:{NGINX_PORT}", "grpc"),
            "hand-written": (peer.pid, f"http://127.0.0.1:{PEER_PORT}", "http"),
            "protogate": (gateway.pid, f"http://127.0.0.1:{GATEWAY_PORT}", "http"),
            "protogate, log off": (stripped.pid, f"http://127.0.0.1:{STRIPPED_PORT}", "http"),
        }
        results, ratios = {}, {}
        for connections in connection_counts:
            for scenario, requests in SCENARIOS.items():
                chosen = dict(targets)
                if scenario == "GET one item":
                    chosen["protogate, cache hit"] = (cached.pid, f"http://127.0.0.1:{CACHED_PORT}", "http")
                run_scenario(chosen, scenario, requests, connections, args, workdir, results, ratios)

        latency = latency_at_one(targets, args, workdir)
        # Peak RSS, and the anonymous part of what is resident now: the rest is file-backed
        # code pages, clean and shared, which the kernel takes back under memory pressure.
        rss = {
            name: (status_kib(pid, "VmHWM"), status_kib(pid, "RssAnon"))
            for name, (pid, _, kind) in targets.items()
            if kind == "http"
        }
        held = hold_connections(GATEWAY_PORT, 1000, "/v1/items/item-1")
        rss_1000 = status_kib(gateway.pid, "VmRSS")
        for s in held:
            s.close()
        two_cores = two_core_run(procs, binaries, workdir, gateway.pid, max(connection_counts), args)
        report(results, ratios, latency, rss, rss_1000, two_cores, args)
    finally:
        procs.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def load_for(requests, kind, connections, workdir):
    """(path, h2load keyword arguments) for one scenario against one kind of target."""
    load = dict(connections=connections, workdir=workdir)
    if kind == "grpc":
        load["grpc"] = requests["grpc"][1]
        return requests["grpc"][0], load
    load["http"] = requests["http"]
    return requests["http"][1], load


def run_scenario(targets, scenario, requests, connections, args, workdir, results, ratios):
    runs = {}
    for name, (pid, base, kind) in targets.items():
        path, load = load_for(requests, kind, connections, workdir)
        runs[name] = (pid, base + path, load)
        h2load(base + path, duration=1, **load)  # warm-up (and the cache filled)
    # Targets take turns, so that a slow spell on a shared machine hits them all alike.
    samples = {name: [] for name in targets}
    for _ in range(args.repeat):
        for name, (pid, url, load) in runs.items():
            samples[name].append(measure(pid, lambda: h2load(url, duration=args.duration, **load)))
    for name in targets:
        results[(connections, scenario, name)] = median_of(samples[name])
        log(f"{connections:3} {scenario:16} {name:22} {results[(connections, scenario, name)]}")
        ratios[(connections, scenario, name)] = statistics.median(
            t["cpu"] / n["cpu"] for t, n in zip(samples[name], samples["nginx"])
        )


def latency_at_one(targets, args, workdir):
    """p50 latency at concurrency 1, GET one item."""
    p50s = {name: [] for name in targets}
    requests = SCENARIOS["GET one item"]
    for _ in range(args.repeat):
        for name, (pid, base, kind) in targets.items():
            path, load = load_for(requests, kind, 1, workdir)
            p50s[name].append(h2load(base + path, duration=args.duration, **load)[2])
    return {name: statistics.median(values) for name, values in p50s.items()}


def two_core_run(procs, binaries, workdir, one_core_pid, connections, args):
    """protogate on every core (two worker threads) against protogate on core 0, GET one item:
    requests/s and CPU per request of each, the turns interleaved."""
    all_cores = ",".join(str(c) for c in range(CORES))
    wide = start_gateway(procs, binaries, workdir, "two-cores", WIDE_PORT, cores=all_cores)
    requests = SCENARIOS["GET one item"]
    path, load = load_for(requests, "http", connections, workdir)
    runs = {"one core": (one_core_pid, f"http://127.0.0.1:{GATEWAY_PORT}{path}"),
            "two cores": (wide.pid, f"http://127.0.0.1:{WIDE_PORT}{path}")}
    samples = {name: [] for name in runs}
    for _ in range(args.repeat):
        for name, (pid, url) in runs.items():
            samples[name].append(measure(pid, lambda: h2load(url, duration=args.duration, **load)))
    return {name: median_of(values) for name, values in samples.items()}


def report(results, ratios, latency, rss, rss_1000, two_cores, args):
    print(f"\n{args.duration} s per run, median of {args.repeat}, {args.profile} build; proxy pinned to core "
          f"{PROXY_CORE}, upstream and h2load on {OTHER_CORES}.\n")
    print("| connections | scenario | target | req/s | p50 µs | p99 µs | proxy CPU µs/req | of which kernel "
          "| CPU ÷ nginx |")
    print("|---:|---|---|---:|---:|---:|---:|---:|---:|")
    for (connections, scenario, name), r in results.items():
        print(f"| {connections} | {scenario} | {name} | {r['rps']:.0f} | {r['p50']:.0f} | {r['p99']:.0f} "
              f"| {r['cpu']:.1f} | {r['kernel']:.0%} | {ratios[(connections, scenario, name)]:.2f} |")
    print("\nAccess log cost (protogate default ÷ log off, CPU per request):")
    for (connections, scenario, name), r in results.items():
        if name == "protogate":
            off = results[(connections, scenario, "protogate, log off")]
            print(f"- {connections} connections, {scenario}: {r['cpu'] / off['cpu']:.2f}")
    print(f"\nLatency added at concurrency 1 (p50, GET one item), over the direct call ({latency['direct']:.0f} µs):")
    for name, value in latency.items():
        if name != "direct":
            print(f"- {name}: {value - latency['direct']:.0f} µs (p50 {value:.0f} µs)")
    print("\nPeak RSS under load (of it anonymous, after the load): " + ", ".join(
        f"{name} {peak / 1024:.1f} MiB ({anon / 1024:.1f} MiB)" for name, (peak, anon) in rss.items()))
    print(f"protogate with 1,000 open keep-alive connections: {rss_1000 / 1024:.1f} MiB")
    one, two = two_cores["one core"], two_cores["two cores"]
    efficiency = one["cpu"] / two["cpu"]
    print(f"\nTwo cores (GET one item, {max(int(c) for c in args.connections.split(','))} connections): one core "
          f"{one['rps']:.0f} req/s at {one['cpu']:.1f} µs CPU/req; two cores {two['rps']:.0f} req/s at "
          f"{two['cpu']:.1f} µs CPU/req (the upstream and h2load share them). CPU per request one core ÷ two "
          f"cores: {efficiency:.2f}, so two dedicated cores would serve {2 * efficiency:.2f}× one core's requests.")


if __name__ == "__main__":
    main()
