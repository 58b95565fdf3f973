#!/usr/bin/env python3
"""Pull throughput on loopback: serves a model folder the way the Hugging Face hub does (file list,
HEAD metadata with sha256 / git-sha1 etags, large files redirected to a CDN path with Range
support) and times `easel pull` against it, then a second pull that should fetch nothing.

    scripts/bench_pull.py MODEL_DIR [--binary target/release/easel]

Numbers only (no pass/fail). The temporary hub cache is deleted at the end. Standard library only.
"""
import argparse
import hashlib
import json
import resource
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from easel_harness import find_binary

REPO = "bench/model"
COMMIT = "b" * 40
LFS_THRESHOLD = 100_000


def describe(folder):
    files = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            rel = os.path.relpath(path, folder).replace(os.sep, "/")
            size = os.path.getsize(path)
            h = hashlib.sha256() if size >= LFS_THRESHOLD else hashlib.sha1(f"blob {size}\0".encode())
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 22), b""):
                    h.update(chunk)
            files[rel] = (path, size, h.hexdigest())
    return files


def make_handler(files, base):
    class Hub(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def send(self, status, headers, body=b""):
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            if "Content-Length" not in headers:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if body and self.command != "HEAD":
                self.wfile.write(body)

        def do_HEAD(self):
            self.do_GET()

        def do_GET(self):
            path = urllib.parse.unquote(urllib.parse.urlparse(self.path).path)
            if path.startswith(f"/api/models/{REPO}/revision/"):
                body = json.dumps({"id": REPO, "sha": COMMIT, "siblings": [{"rfilename": f} for f in files]}).encode()
                return self.send(200, {"Content-Type": "application/json"}, body)
            prefix = f"/{REPO}/resolve/"
            if path.startswith(prefix):
                rel = path[len(prefix):].split("/", 1)[1]
                if rel not in files:
                    return self.send(404, {"X-Error-Code": "EntryNotFound"})
                _, size, digest = files[rel]
                if size >= LFS_THRESHOLD:
                    return self.send(302, {"Location": f"{base}/cdn/{rel}", "X-Repo-Commit": COMMIT,
                                           "X-Linked-Etag": f'"{digest}"', "X-Linked-Size": str(size)})
                return self.content(rel, {"X-Repo-Commit": COMMIT, "ETag": f'"{digest}"'})
            if path.startswith("/cdn/") and path[5:] in files:
                return self.content(path[5:], {})
            self.send(404, {})

        def content(self, rel, extra):
            file, size, _ = files[rel]
            start = 0
            rng = self.headers.get("Range", "")
            if rng.startswith("bytes=") and rng.endswith("-"):
                start = int(rng[6:-1])
            headers = {**extra, "Content-Length": str(size - start), "Accept-Ranges": "bytes"}
            if start:
                headers["Content-Range"] = f"bytes {start}-{size - 1}/{size}"
            self.send_response(206 if start else 200)
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            if self.command == "HEAD":
                return
            with open(file, "rb") as f:
                # sendfile sends at most ~2 GiB per call: loop until the whole range is out.
                offset = start
                while offset < size:
                    sent = os.sendfile(self.wfile.fileno(), f.fileno(), offset, size - offset)
                    if sent == 0:
                        break
                    offset += sent

    return Hub


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model_dir")
    p.add_argument("--binary")
    a = p.parse_args()
    binary = find_binary(a.binary)
    t = time.time()
    files = describe(a.model_dir)
    total = sum(size for _, size, _ in files.values())
    print(f"hub: {len(files)} files, {total / 1e9:.2f} GB, hashed in {time.time() - t:.1f} s", file=sys.stderr)
    server = ThreadingHTTPServer(("127.0.0.1", 0), None)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    server.RequestHandlerClass = make_handler(files, base)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    work = tempfile.mkdtemp(prefix="easel-bench-pull-")
    env = dict(os.environ, HF_ENDPOINT=base, HF_HUB_CACHE=f"{work}/hub", EASEL_DATA_DIR=work, EASEL_MODELS_DIR=f"{work}/models")
    env.pop("HF_TOKEN", None)
    try:
        results, cpu = {}, {}
        for run in ("first", "second"):
            t = time.time()
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            done = subprocess.run([binary, "pull", REPO], env=env, capture_output=True, text=True)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            results[run] = round(time.time() - t, 2)
            cpu[run] = round(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, 1)
            if done.returncode != 0:
                raise SystemExit(f"pull failed:\n{done.stderr}")
        pulled = sum(size for rel, (_, size, _) in files.items() if os.path.exists(f"{work}/hub/models--bench--model/snapshots/{COMMIT}/{rel}"))
        print(json.dumps({
            "files_served": len(files), "bytes_pulled": pulled,
            "first_pull_seconds": results["first"], "first_pull_MB_per_s": round(pulled / 1e6 / results["first"], 1),
            "first_pull_cpu_seconds": cpu["first"],
            "second_pull_seconds": results["second"],
        }, indent=1))
    finally:
        server.shutdown()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
