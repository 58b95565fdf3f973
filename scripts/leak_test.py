#!/usr/bin/env python3
"""Leak test on loopback: 1,000 jobs in a row on the bundled tiny model; the server's resident
memory at the end must be within 5% of what it was after the first 50.

    scripts/leak_test.py [--jobs 1000] [--binary target/release/easel]

Starts its own `easel serve` (throwaway data dir), submits one job at a time and waits for it
over SSE. Prints RSS along the way and the verdict as JSON; exits 1 if memory grew more than 5%.
"""
import argparse
import json
import sys
import time

from easel_harness import Server, call, find_binary, follow


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--jobs", type=int, default=1000)
    p.add_argument("--binary")
    p.add_argument("--tolerance", type=float, default=0.05)
    a = p.parse_args()
    with Server(find_binary(a.binary)) as server:
        samples, failed = {}, 0
        started = time.time()
        for n in range(a.jobs):
            body = {"prompt": f"leak {n}", "seed": n, "width": 64, "height": 64, "steps": 2, "sampler": "euler"}
            _, sub = call(f"{server.url}/api/v1/generate", "POST", body)
            names = follow(f"{server.url}/api/v1/generate/{sub['id']}/events")
            failed += names[-1:] != ["succeeded"]
            if n + 1 in (1, 10, 50, 100, 250, 500, 750) or n + 1 == a.jobs:
                samples[n + 1] = round(server.rss_mb(), 1)
                print(f"after {n + 1:5d} jobs: RSS {samples[n + 1]:7.1f} MB", file=sys.stderr)
        base, end = samples[50], samples[a.jobs]
        growth = end / base - 1
        result = {
            "jobs": a.jobs, "failed": failed, "wall_seconds": round(time.time() - started, 1),
            "rss_mb_by_jobs_done": samples, "growth_after_first_50": f"{growth * 100:+.2f}%",
        }
        print(json.dumps(result, indent=1))
        ok = failed == 0 and growth <= a.tolerance
        print("PASS" if ok else f"FAIL: grew {growth * 100:.1f}% (limit {a.tolerance * 100:.0f}%) or {failed} failed", file=sys.stderr)
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
