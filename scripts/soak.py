#!/usr/bin/env python3
"""Load and leak check against a running `easel serve` on loopback (stdlib only; prints numbers).

    scripts/soak.py --url http://127.0.0.1:3000 --pid $(pgrep -f 'easel serve') --jobs 1000 --clients 8

1. Submits `--jobs` tiny jobs (64x64, 2 steps) from `--clients` threads, every submit retried with an
   Idempotency-Key so nothing is duplicated.
2. While the queue is full, measures GET /api/v1/generate/{id} latency (p50/p95/p99) and rate.
3. Waits until every job is finished; checks none was lost or duplicated.
4. Reports the server's resident memory (VmRSS from /proc) after the first 10 and the first 50
   jobs and at the end, and the time from submit to `started` on an idle queue.
"""
import argparse
import json
import statistics
import threading
import time
import urllib.request
import uuid


def call(url, method="GET", body=None, headers=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json", **(headers or {})})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return resp.status, json.loads(resp.read() or b"null")


def rss_mb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def finished_count(base, ids):
    done = 0
    for i in ids:
        _, job = call(f"{base}/api/v1/generate/{i}")
        done += job["status"] in ("succeeded", "failed", "cancelled")
    return done


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", default="http://127.0.0.1:3000")
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--jobs", type=int, default=1000)
    p.add_argument("--clients", type=int, default=8)
    a = p.parse_args()
    base = a.url.rstrip("/")
    body = lambda n: {"prompt": f"soak {n}", "seed": n, "width": 64, "height": 64, "steps": 2, "sampler": "euler"}

    # Idle-queue latency: submit -> started, read from the job's own timestamps.
    _, sub = call(f"{base}/api/v1/generate", "POST", body(10**9))
    while True:
        _, job = call(f"{base}/api/v1/generate/{sub['id']}")
        if job["status"] == "succeeded":
            break
        time.sleep(0.01)
    idle_start_ms = job["started_at_ms"] - job["created_at_ms"]

    ids, lock = [], threading.Lock()
    marks = {}

    def client(k):
        for n in range(k, a.jobs, a.clients):
            key = str(uuid.uuid4())
            for _attempt in range(3):
                try:
                    _, s = call(f"{base}/api/v1/generate", "POST", body(n), {"Idempotency-Key": key})
                    with lock:
                        ids.append(s["id"])
                    break
                except OSError:
                    time.sleep(0.5)

    started = time.time()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(a.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    submit_s = time.time() - started

    latencies = []
    probe_until = time.time() + 10
    while time.time() < probe_until:
        i = ids[len(latencies) % len(ids)]
        t = time.perf_counter()
        call(f"{base}/api/v1/generate/{i}")
        latencies.append((time.perf_counter() - t) * 1000)
    q = statistics.quantiles(latencies, n=100)

    while True:
        for mark in (10, 50):
            if mark not in marks and finished_count(base, ids[:mark]) == mark:
                marks[mark] = rss_mb(a.pid)
        if len(marks) == 2 and finished_count(base, ids[-20:]) == 20:
            break
        time.sleep(1)
    total = finished_count(base, ids)
    print(json.dumps({
        "jobs_submitted": len(ids), "unique_ids": len(set(ids)), "finished": total,
        "submit_seconds": round(submit_s, 2),
        "get_job_latency_ms": {"p50": round(q[49], 2), "p95": round(q[94], 2), "p99": round(q[98], 2)},
        "get_job_requests_per_s_single_client": round(len(latencies) / 10, 1),
        "idle_submit_to_started_ms": idle_start_ms,
        "rss_mb_after_10": round(marks[10], 1), "rss_mb_after_50": round(marks[50], 1), "rss_mb_end": round(rss_mb(a.pid), 1),
        "wall_seconds": round(time.time() - started, 1),
    }, indent=1))


if __name__ == "__main__":
    main()
