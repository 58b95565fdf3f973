"""Shared by the load and leak scripts: start a real `easel serve` on loopback with its own data
dir, call its API, read its resident memory. Python standard library only."""
import json
import os
import shutil
import subprocess
import tempfile
import threading
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def find_binary(given=None):
    for path in [given, f"{REPO}/target/release/easel", f"{REPO}/target/debug/easel"]:
        if path and os.access(path, os.X_OK):
            return path
    raise SystemExit("no easel binary: run scripts/run.sh once (or cargo build --features ssr), or pass --binary")


class Server:
    """`easel serve` on 127.0.0.1 with a throwaway data dir; stops it on exit."""

    def __init__(self, binary, threads=2, extra_args=(), comfyui=False):
        self.data = tempfile.mkdtemp(prefix="easel-load-")
        env = dict(os.environ, LEPTOS_SITE_ROOT=f"{REPO}/target/site", HF_HUB_CACHE=f"{self.data}/hub")
        self.proc = subprocess.Popen(
            [binary, "serve", "--port", "0", "--threads", str(threads), "--log-level", "warn",
             "--data-dir", self.data, "--models-dir", f"{REPO}/models", *extra_args,
             *(["--comfyui-port", "0"] if comfyui else [])],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
        self.url = self._address()
        # With comfyui=True, the second line names ComfyUI's listener.
        self.comfyui_url = self._address() if comfyui else None
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()

    def _address(self):
        line = self.proc.stdout.readline()
        if "http://" not in line:
            self.stop()
            raise SystemExit(f"easel did not start: {line!r}")
        return line.strip().rsplit(" ", 1)[-1].rstrip("/")

    @property
    def pid(self):
        return self.proc.pid

    def rss_mb(self):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.data, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def call(url, method="GET", body=None, headers=None, timeout=60):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json", **(headers or {})})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return resp.status, json.loads(resp.read() or b"null")


def follow(url, timeout=600):
    """Reads a job's SSE stream to its end; returns the event names in order."""
    names = []
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        for raw in resp:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                names.append(line[7:])
                if names[-1] in ("succeeded", "failed", "cancelled"):
                    break
    return names


def percentiles(samples_ms):
    s = sorted(samples_ms)
    pick = lambda q: round(s[min(len(s) - 1, int(q * len(s)))], 2)
    return {"n": len(s), "p50": pick(0.50), "p95": pick(0.95), "p99": pick(0.99), "max": round(s[-1], 2)}
