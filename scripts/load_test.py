#!/usr/bin/env python3
"""Load test on loopback: 50 concurrent clients submit 500 jobs on the bundled tiny model and
follow each over SSE, while a prober measures API latency with the queue full.

    scripts/load_test.py [--clients 50] [--jobs-per-client 10] [--binary target/release/easel]

Starts its own `easel serve` (throwaway data dir). Checks: every job is accepted once (submits
carry an Idempotency-Key and are retried), every SSE stream ends in `succeeded`, the job list
holds exactly the submitted jobs. Prints the numbers as JSON; exits 1 if a check fails.
"""
import argparse
import json
import sys
import threading
import time
import uuid

from easel_harness import Server, call, find_binary, follow, percentiles


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--jobs-per-client", type=int, default=10)
    p.add_argument("--binary")
    a = p.parse_args()
    run = uuid.uuid4().hex[:8]
    with Server(find_binary(a.binary)) as server:
        base = server.url
        submitted, finals, errors, lock = [], {}, [], threading.Lock()
        all_submitted = threading.Event()

        def client(k):
            mine = []
            for j in range(a.jobs_per_client):
                n = k * a.jobs_per_client + j
                body = {"prompt": f"load {run} {n}", "seed": n, "width": 64, "height": 64, "steps": 2, "sampler": "euler"}
                key = f"{run}-{n}"
                for attempt in range(5):
                    try:
                        _, s = call(f"{base}/api/v1/generate", "POST", body, {"Idempotency-Key": key})
                        mine.append(s["id"])
                        break
                    except OSError as e:
                        if attempt == 4:
                            with lock:
                                errors.append(f"submit {n}: {e}")
                        time.sleep(0.2 * (attempt + 1))
            with lock:
                submitted.extend(mine)
            for job_id in mine:
                try:
                    names = follow(f"{base}/api/v1/generate/{job_id}/events")
                except OSError as e:
                    names = [f"error: {e}"]
                with lock:
                    finals[job_id] = names

        prober_samples = {"get_job": [], "history": [], "health": []}

        def prober():
            while not all_submitted.is_set() or len(finals) < len(submitted):
                with lock:
                    ids = list(submitted)
                if not ids:
                    time.sleep(0.01)
                    continue
                for name, url in (("get_job", f"{base}/api/v1/generate/{ids[len(prober_samples['get_job']) % len(ids)]}"),
                                  ("history", f"{base}/api/v1/generate?limit=20"), ("health", f"{base}/api/v1/health")):
                    t = time.perf_counter()
                    call(url)
                    prober_samples[name].append((time.perf_counter() - t) * 1000)
                time.sleep(0.02)

        started = time.time()
        rss_start = server.rss_mb()
        threads = [threading.Thread(target=client, args=(k,)) for k in range(a.clients)]
        probe = threading.Thread(target=prober)
        for t in threads:
            t.start()
        probe.start()
        while any(t.is_alive() for t in threads):
            if len(submitted) == a.clients * a.jobs_per_client:
                all_submitted.set()
            time.sleep(0.1)
        all_submitted.set()
        wall = time.time() - started
        probe.join()
        listed = []
        before = None
        while True:
            _, page = call(f"{base}/api/v1/generate?limit=100" + (f"&before={before}" if before else ""))
            listed += [j["id"] for j in page["jobs"] if j["request"]["prompt"].startswith(f"load {run} ")]
            before = page["next_before"]
            if not before:
                break
        expected = a.clients * a.jobs_per_client
        succeeded = sum(1 for names in finals.values() if names and names[-1] == "succeeded")
        result = {
            "clients": a.clients, "jobs_expected": expected, "jobs_submitted": len(submitted),
            "unique_job_ids": len(set(submitted)), "jobs_listed": len(listed), "unique_listed": len(set(listed)),
            "sse_streams_succeeded": succeeded, "errors": errors[:5],
            "wall_seconds": round(wall, 1), "jobs_per_second": round(expected / wall, 2),
            "latency_ms_while_queue_full": {k: percentiles(v) for k, v in prober_samples.items() if v},
            "rss_mb_start": round(rss_start, 1), "rss_mb_end": round(server.rss_mb(), 1),
        }
        print(json.dumps(result, indent=1))
        ok = len(set(submitted)) == len(submitted) == expected == succeeded == len(set(listed)) == len(listed) and not errors
        print("PASS: nothing lost, nothing duplicated" if ok else "FAIL", file=sys.stderr)
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
