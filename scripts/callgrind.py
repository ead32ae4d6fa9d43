#!/usr/bin/env python3
"""Instructions per accepted webhook, counted by valgrind's callgrind: a figure that does not
move with the load of a noisy machine, unlike requests per second.

The server (a build with symbols: `cargo build --profile profiling`) runs under callgrind and
serves the ingest bench's workflow (benches/ingest-workflow.yaml: filter + template + http to a receiver this script runs on
loopback) on a fresh SQLite store. The script sends N webhooks (the 8.8 KB GitHub push) one at a
time, waits until every run has called the receiver, and stops the server. It does the same
with no webhook, and prints (total with N - total with none) / N: the instructions one webhook
costs from its request to its run's end, start-up and shutdown left out. With --annotate it
prints the functions that cost the most in the run with N.

    cargo build --profile profiling
    python3 scripts/callgrind.py                # 200 webhooks
    python3 scripts/callgrind.py -n 500 --annotate
"""

import argparse
import http.server
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Receiver(http.server.BaseHTTPRequestHandler):
    count = 0
    lock = threading.Lock()

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        with Receiver.lock:
            Receiver.count += 1
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition, seconds, what):
    deadline = time.time() + seconds
    while not condition():
        if time.time() > deadline:
            sys.exit(f"timed out waiting for {what}")
        time.sleep(0.1)


def measure(binary, webhooks, receiver_url, workdir, annotate):
    """Total instructions of one server life that accepts `webhooks` webhooks."""
    folder = tempfile.mkdtemp(dir=workdir)
    os.makedirs(os.path.join(folder, "workflows"))
    with open(os.path.join(folder, "workflows", "bench.yaml"), "w") as f:
        with open(os.path.join(ROOT, "benches/ingest-workflow.yaml")) as workflow:
            f.write(workflow.read().replace("RECEIVER", receiver_url))
    port, admin = free_port(), free_port()
    out = os.path.join(folder, "callgrind.out")
    server = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", binary, "serve",
         "--listen", f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{admin}"],
        cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "RUST_LOG": "warn"},
    )

    def ready():
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{admin}/readyz", timeout=2).status == 200
        except OSError:
            return False

    wait_until(ready, 300, "the server under valgrind")
    with open(os.path.join(ROOT, "tests/fixtures/github/push.json"), "rb") as f:
        body = f.read()
    before = Receiver.count
    for _ in range(webhooks):
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/hooks/bench", data=body,
            headers={"content-type": "application/json", "x-github-event": "push"})
        status = urllib.request.urlopen(request, timeout=60).status
        if status != 202:
            sys.exit(f"webhook answered {status}")
    wait_until(lambda: Receiver.count - before >= webhooks, 600, "every run")
    server.send_signal(signal.SIGTERM)
    server.wait(timeout=300)
    with open(out) as f:
        total = next(int(line.split()[1]) for line in f if line.startswith("totals:"))
    if annotate:
        report = subprocess.run(["callgrind_annotate", "--inclusive=no", out],
                                capture_output=True, text=True).stdout
        print("\n".join(report.splitlines()[:60]))
    shutil.rmtree(folder, ignore_errors=True)
    return total


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=200, help="webhooks in the measured run (200)")
    parser.add_argument("--binary", default=os.path.join(ROOT, "target/profiling/hookflow"))
    parser.add_argument("--annotate", action="store_true", help="print the costliest functions")
    args = parser.parse_args()
    if not os.path.exists(args.binary):
        sys.exit(f"{args.binary} is missing: cargo build --profile profiling")
    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    receiver_url = f"http://127.0.0.1:{receiver.server_address[1]}"
    with tempfile.TemporaryDirectory() as workdir:
        empty = measure(args.binary, 0, receiver_url, workdir, False)
        loaded = measure(args.binary, args.n, receiver_url, workdir, args.annotate)
    per_webhook = (loaded - empty) / args.n
    print(f"instructions: {empty:,} with no webhook, {loaded:,} with {args.n}")
    print(f"instructions per accepted webhook (request to the run's end): {per_webhook:,.0f}")


if __name__ == "__main__":
    main()
