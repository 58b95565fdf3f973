#!/usr/bin/env python3
"""Flood test on loopback (issue 18): 1,000 event streams opened at once and 10,000 submissions
against a real `easel serve` with `--max-queue 200`, while a prober keeps asking for the health
check.

    scripts/flood_test.py [--streams 1000] [--submissions 10000] [--binary target/debug/easel]

Checks: the streams beyond a client's share are refused with 429 (none hangs, none is a 5xx);
submissions beyond the queue cap are refused with 503 and a Retry-After (nothing else fails);
the health check answers throughout (every probe within 2 s); resident memory stays within
100 MB of where it started (1,000 connections once held 360 MB: the router was rebuilt per
connection). Prints the numbers as JSON; exits 1 if a check fails.
"""
import argparse
import json
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from easel_harness import Server, call, find_binary, follow, percentiles


def open_stream(host, port, path):
    """Opens an event stream with a raw socket; returns (socket, status code)."""
    s = socket.create_connection((host, port), timeout=30)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n\r\n".encode())
    head = b""
    while b"\r\n" not in head:
        chunk = s.recv(256)
        if not chunk:
            break
        head += chunk
    status = int(head.split(b" ")[1]) if head.startswith(b"HTTP/1.1 ") else 0
    return s, status


def submit(base, n):
    body = json.dumps({"prompt": f"flood {n}", "seed": n, "width": 64, "height": 64, "steps": 1, "sampler": "euler"}).encode()
    req = urllib.request.Request(f"{base}/api/v1/generate", data=body, method="POST", headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, None
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("retry-after")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--streams", type=int, default=1000)
    p.add_argument("--submissions", type=int, default=10000)
    p.add_argument("--binary")
    a = p.parse_args()
    failures = []
    with Server(find_binary(a.binary), extra_args=("--max-queue", "200")) as server:
        base = server.url
        host, port = base.split("//")[1].split(":")
        port = int(port)
        # A first job loads the model: memory is measured from there.
        _, warm = call(f"{base}/api/v1/generate", "POST", {"prompt": "flood warm-up", "seed": 1, "width": 64, "height": 64, "steps": 1})
        follow(f"{base}/api/v1/generate/{warm['id']}/events")
        start_rss = server.rss_mb()

        probes, stop = [], threading.Event()

        def prober():
            while not stop.is_set():
                t = time.perf_counter()
                try:
                    status, _ = call(f"{base}/api/v1/health", timeout=10)
                except Exception as e:  # noqa: BLE001
                    status = repr(e)
                probes.append(((time.perf_counter() - t) * 1000, status))
                time.sleep(0.05)

        threading.Thread(target=prober, daemon=True).start()

        # A long job runs and a second waits behind it: many streams of the waiting one at once.
        long = {"prompt": "flood long", "seed": 2, "width": 128, "height": 128, "steps": 150, "sampler": "euler"}
        _, running = call(f"{base}/api/v1/generate", "POST", long)
        _, job = call(f"{base}/api/v1/generate", "POST", {**long, "seed": 3})
        path = f"/api/v1/generate/{job['id']}/events"
        sockets, stream_status = [], {}
        started = time.perf_counter()
        for _ in range(a.streams):
            s, status = open_stream(host, port, path)
            stream_status[status] = stream_status.get(status, 0) + 1
            sockets.append(s)
        streams_s = time.perf_counter() - started
        streams_rss = server.rss_mb()
        for s in sockets:
            s.close()
        for waiting in (job, running):
            call(f"{base}/api/v1/generate/{waiting['id']}", "DELETE")
        if set(stream_status) - {200, 429} or stream_status.get(429, 0) < a.streams - 64 or not stream_status.get(200):
            failures.append(f"streams answered {stream_status}; expected at most a client's share (64) 200s and 429 for the rest")

        # Submissions: the queue holds 200; the rest are told to come back later.
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(lambda n: submit(base, n), range(a.submissions)))
        submissions_s = time.perf_counter() - started
        codes = {}
        for status, _ in results:
            codes[status] = codes.get(status, 0) + 1
        if set(codes) - {202, 503} or not codes.get(503):
            failures.append(f"submissions answered {codes}; expected 202 and, beyond the cap, 503")
        if any(status == 503 and not retry for status, retry in results):
            failures.append("a 503 without Retry-After")
        end_rss = server.rss_mb()
        stop.set()
        time.sleep(0.1)

        latencies = [ms for ms, status in probes if status == 200]
        bad_probes = [status for _, status in probes if status != 200]
        if bad_probes or not latencies or max(latencies) > 2000:
            failures.append(f"health probes: {len(bad_probes)} failed ({bad_probes[:3]}), slowest {max(latencies or [0]):.0f} ms")
        growth = max(streams_rss, end_rss) - start_rss
        if growth > 100:
            failures.append(f"resident memory grew by {growth:.0f} MB")
        report = {
            "streams": {"opened": a.streams, "answers": stream_status, "seconds": round(streams_s, 2)},
            "submissions": {"sent": a.submissions, "answers": codes, "seconds": round(submissions_s, 2)},
            "health_ms": percentiles(latencies) if latencies else None,
            "rss_mb": {"start": round(start_rss, 1), "after_streams": round(streams_rss, 1), "end": round(end_rss, 1)},
            "failures": failures,
        }
        print(json.dumps(report, indent=1))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
