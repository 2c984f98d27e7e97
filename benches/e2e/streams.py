#!/usr/bin/env python3
"""Streaming benchmark: the gateway's memory while 1 GiB passes through a stream each way.

Run from the repository root with

    python3 benches/e2e/streams.py              # 1 GiB each way
    python3 benches/e2e/streams.py --gib 0.25   # shorter

It builds the release binaries, starts the catalog upstream (examples/bench_upstream.rs) and
protogate on 127.0.0.1 (the gateway pinned to core 0), then

- reads a server stream of catalog items as NDJSON (GET /v1/items:export?count=N) until 1 GiB of
  JSON has passed, discarding it as it arrives, and
- sends a client stream: an NDJSON body of 1 GiB, chunked, to POST /v1/items:import,

sampling the gateway's resident memory (VmRSS) five times a second. It reports throughput and
RSS before, at 10% of each run, at its peak and at its end: flat means the peak stays within
10% of the 10% mark (the gateway holds a bounded window of each stream, not the stream). The
gateway's CPU use (of its one core) tells whether it or the Python client sets the pace.
"""

import argparse
import http.client
import json
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import (  # noqa: E402
    ITEM_JSON,
    UPSTREAM_PORT,
    Processes,
    build,
    cpu_seconds,
    log,
    port_free,
    start_gateway,
    start_upstream,
    status_kib,
)

GATEWAY_PORT = 18090
GIB = 1 << 30


class RssSampler:
    """VmRSS of a process, five times a second, in a thread, with the time of each sample."""

    def __init__(self, pid):
        self.pid, self.samples, self.stop = pid, [], threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop.is_set():
            self.samples.append((time.monotonic(), status_kib(self.pid, "VmRSS")))
            self.stop.wait(0.2)

    def __enter__(self):
        self.start = time.monotonic()
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self.end = time.monotonic()

    def summary(self):
        duration = self.end - self.start
        at_10 = next((kib for t, kib in self.samples if t >= self.start + duration / 10), self.samples[-1][1])
        peak = max(kib for _, kib in self.samples)
        return {"at_10": at_10, "peak": peak, "end": self.samples[-1][1], "duration": duration}


def server_stream(total):
    connection = http.client.HTTPConnection("127.0.0.1", GATEWAY_PORT, timeout=60)
    connection.request("GET", "/v1/items:export?count=1")
    line = connection.getresponse().read()
    count = total // len(line) + 1
    connection.request("GET", f"/v1/items:export?count={count}")
    response = connection.getresponse()
    if response.status != 200:
        sys.exit(f"export answered {response.status}: {response.read()[:200]!r}")
    received = 0
    while chunk := response.read(1 << 20):
        received += len(chunk)
    connection.close()
    return received, count


def client_stream(total):
    line = (ITEM_JSON + "\n").encode()
    chunk = line * ((256 << 10) // len(line))
    chunks = total // len(chunk) + 1

    def body():
        for _ in range(chunks):
            yield chunk

    connection = http.client.HTTPConnection("127.0.0.1", GATEWAY_PORT, timeout=120)
    connection.request(
        "POST",
        "/v1/items:import",
        body=body(),
        headers={"content-type": "application/x-ndjson"},
        encode_chunked=True,
    )
    response = connection.getresponse()
    answer = response.read()
    if response.status != 200:
        sys.exit(f"import answered {response.status}: {answer[:200]!r}")
    imported = json.loads(answer)
    connection.close()
    return len(chunk) * chunks, int(imported["count"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=1.0, help="how much passes each way")
    parser.add_argument("--profile", default="release", help="the cargo profile to build and run")
    args = parser.parse_args()
    total = int(args.gib * GIB)
    busy = [p for p in (UPSTREAM_PORT, GATEWAY_PORT) if not port_free(p)]
    if busy:
        sys.exit(f"ports already in use: {busy}")
    binaries = build(args.profile)
    workdir = Path(tempfile.mkdtemp(prefix="protogate-streams-"))
    procs = Processes(workdir)
    try:
        start_upstream(procs, binaries)
        gateway = start_gateway(procs, binaries, workdir, "protogate", GATEWAY_PORT)
        before = status_kib(gateway.pid, "VmRSS")
        rows = []
        for name, run in (("server stream (NDJSON out)", server_stream), ("client stream (NDJSON in)", client_stream)):
            log(f"{name}: {total / GIB:.2f} GiB ...")
            cpu_before = sum(cpu_seconds(gateway.pid))
            with RssSampler(gateway.pid) as sampler:
                moved, messages = run(total)
            summary = sampler.summary()
            summary["cpu"] = (sum(cpu_seconds(gateway.pid)) - cpu_before) / summary["duration"]
            rows.append((name, moved, messages, summary))
        report(before, rows)
    finally:
        procs.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def report(before, rows):
    print(f"gateway RSS before: {before / 1024:.1f} MiB\n")
    print("| stream | JSON moved | messages | time | MB/s | gateway CPU | RSS at 10% | peak RSS | end RSS | peak vs 10% |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, moved, messages, s in rows:
        growth = (s["peak"] - s["at_10"]) / s["at_10"] * 100
        print(
            f"| {name} | {moved / GIB:.2f} GiB | {messages:,} | {s['duration']:.1f} s "
            f"| {moved / s['duration'] / 1e6:.0f} | {s['cpu'] * 100:.0f}% | {s['at_10'] / 1024:.1f} MiB | {s['peak'] / 1024:.1f} MiB "
            f"| {s['end'] / 1024:.1f} MiB | {growth:+.1f}% |"
        )


if __name__ == "__main__":
    main()
