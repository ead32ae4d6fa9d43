#!/usr/bin/env python3
"""Soak test: drive a mix of webhooks at a fixed rate through a real `hookflow serve` for a long
time, sample the server every 10 s, and fail when something grows without bound.

    cargo build --release
    python3 scripts/soak.py                    # 30 minutes at 50 requests/s
    python3 scripts/soak.py --minutes 2        # a short trial

Everything runs on loopback: the server (its own SQLite file, workflows, secrets and outbox in a
temporary directory, webhooks and admin API on ephemeral ports) and a receiver this script runs
for the workflows' http steps. The mix (see KINDS): async runs with filter + template + http
(some filtered out), a synchronous `respond`, an http step that fails with 503 twice and then
succeeds through `retry:`, an http step that fails for good (400) and runs `on_error` (an email
into the outbox), GitHub-signed deliveries (HMAC-SHA256, `verify: github`), a few redeliveries
(answered as duplicates) and a few bad signatures (answered 401).

Every 10 s it writes a row to `<out>/soak.csv`: the server's RSS, open fds and threads (from
/proc), the SQLite WAL and database sizes, p50/p99/max latency of the answers in the window,
requests sent and answered by status, and runs finished by status (from `/metrics`). At the end
it draws `<out>/soak.png` (scripts/soak_plot.py, needs matplotlib), writes `<out>/summary.txt`,
prints the start and end figures and a verdict. It exits 1 when:

- a figure grows: the mean of the last 20% of the samples taken under load against the mean of
  the 20%-50% window (the first 20% is warm-up): RSS more than +25%, open fds or threads more
  than +10, the median window p99 more than twice (+50 ms, the machine is shared);
- the WAL file ever passes the size at which the store checkpoints it (WAL_CHECKPOINT_PAGES in
  src/store/sqlite.rs, times the page size) by more than 25%;
- an answer was not the one expected for its kind (any 5xx, a connection error, a sync answer
  with the wrong body, ...), or the server logged an error or a panic;
- after the load stops and the backlog drains, a run that was accepted is missing, unfinished,
  or ended with another status than expected; or the receiver or the outbox did not see what the
  runs should have done.

Ctrl-C (or SIGTERM) stops the load early and still drains, checks, plots and stops the server
(the verdict is then a failure: the soak was cut short); a second Ctrl-C skips straight to
stopping everything.
"""

import argparse
import csv
import hashlib
import hmac
import http.client
import http.server
import json
import os
import queue
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, deque
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_EVERY = 10.0

# Verdict tolerances (see the docstring).
RSS_GROWTH = 0.25
FD_GROWTH = 10
THREAD_GROWTH = 10
P99_FACTOR = 2.0
P99_SLACK_MS = 50.0
WAL_SLACK = 0.25

# The mix: how many of every 100 requests are of each kind.
KINDS = {
    "async": 38,      # filter + template + http; every 5th one is filtered out
    "sync": 20,       # respond: sync, answered by a respond step
    "flaky": 10,      # http answered 503 twice, then 200; retried
    "doomed": 7,      # http answered 400; fails for good, on_error writes an email
    "github": 20,     # verify: github, HMAC-SHA256 signed
    "github-dup": 3,  # a delivery sent again: 200 duplicate_of, no run
    "bad-sig": 2,     # a wrong signature: 401, nothing stored
}
FLAKY_FAILURES = 2

CSV_FIELDS = [
    "t_s", "phase", "rss_kib", "rss_anon_kib", "rss_file_kib", "fds", "threads", "wal_bytes", "db_bytes",
    "window_answers", "p50_ms", "p99_ms", "max_ms", "commits", "commit_p99_ms", "loadavg",
    "sent", "answered", "a200", "a202", "a401", "a4xx_other", "a5xx", "errors", "unexpected",
    "runs_accepted", "runs_succeeded", "runs_failed", "runs_filtered", "runs_cancelled",
    "retries", "queue_depth", "in_flight", "outbox_files", "wal_checkpoint_bytes",
]


def workflows(receiver):
    """The soak's workflow files (name -> YAML), calling the receiver at `receiver`."""
    return {
        "soak-async.yaml": f"""
name: soak-async
description: filter + template + http, answered 202 before the run
on:
  webhook:
    path: /soak/orders
steps:
  - name: real-orders
    filter: event.body.kind == 'order'
  - name: summary
    template: "order {{{{ event.body.id }}}}: {{{{ event.body['items'] | length }}}} item(s) for {{{{ event.body.customer }}}}"
  - name: notify
    timeout: 10s
    http:
      url: "{receiver}/ok"
      json: {{ text: "{{{{ steps.summary.output }}}}", id: "{{{{ event.body.id }}}}" }}
""",
        "soak-sync.yaml": """
name: soak-sync
description: a synchronous answer computed from the body
on:
  webhook:
    path: /soak/quote
    respond: sync
steps:
  - name: total
    set:
      cents: "{{ event.body['items'] | map(attribute='cents') | sum }}"
  - respond:
      status: 200
      body:
        run: "{{ run.id }}"
        id: "{{ event.body.id }}"
        total: "{{ vars.cents }}"
""",
        "soak-flaky.yaml": f"""
name: soak-flaky
description: an http step the receiver refuses with 503 a few times, retried until it passes
on:
  webhook:
    path: /soak/flaky
steps:
  - name: deliver
    retry: {{ attempts: 6, backoff: exponential, initial: 1s, max: 4s }}
    http:
      url: "{receiver}/flaky/{{{{ run.id }}}}"
      query: {{ fail: {FLAKY_FAILURES} }}
      json: "{{{{ event.body }}}}"
      timeout: 10s
""",
        "soak-doomed.yaml": f"""
name: soak-doomed
description: an http step the receiver refuses with 400, so the run fails and on_error mails
on:
  webhook:
    path: /soak/doomed
steps:
  - name: deliver
    http:
      url: "{receiver}/reject"
      json: "{{{{ event.body }}}}"
      timeout: 10s
on_error:
  - name: tell
    email:
      from: "hookflow soak <soak@hookflow.test>"
      to: ops@hookflow.test
      subject: "order {{{{ event.body.id }}}} failed at {{{{ run.failed_step }}}}"
      text: "{{{{ run.error }}}}"
""",
        "soak-github.yaml": f"""
name: soak-github
description: signed GitHub pushes
secrets: [SOAK_GITHUB_SECRET]
on:
  webhook:
    path: /soak/github
    verify:
      github:
        secret: "{{{{ secrets.SOAK_GITHUB_SECRET }}}}"
vars:
  branch: "{{{{ event.body.ref | replace('refs/heads/', '') }}}}"
steps:
  - name: pushes-only
    filter: event.headers['x-github-event'] == 'push'
  - name: summary
    template: "{{{{ event.body.pusher.name }}}} pushed {{{{ event.body.commits | length }}}} commit(s) to {{{{ vars.branch }}}}"
  - name: notify
    timeout: 10s
    http:
      url: "{receiver}/github"
      json: {{ text: "{{{{ steps.summary.output }}}}", sha: "{{{{ event.body.after }}}}" }}
""",
    }


# ---------------------------------------------------------------------------------------------
# The receiver the workflows' http steps call
# ---------------------------------------------------------------------------------------------

class Receiver:
    """A loopback HTTP server: /ok and /github answer 200, /reject 400, /flaky/<key>?fail=N
    answers 503 N times per key (the first one with Retry-After: 1) and then 200."""

    def __init__(self):
        self.lock = threading.Lock()
        self.hits = Counter()
        self.flaky_pending = {}  # key -> failures so far, until it succeeds
        self.flaky_done = 0
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                path, _, query = self.path.partition("?")
                status, headers = receiver.answer(path, query)
                body = b'{"ok":true}' if status == 200 else b'{"error":"refused"}'
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="receiver", daemon=True)

    def answer(self, path, query):
        with self.lock:
            if path in ("/ok", "/github"):
                self.hits[path] += 1
                return 200, []
            if path == "/reject":
                self.hits[path] += 1
                return 400, []
            if path.startswith("/flaky/"):
                key = path[len("/flaky/"):]
                fail = int(dict(p.split("=", 1) for p in query.split("&") if "=" in p).get("fail", 0))
                seen = self.flaky_pending.get(key, 0)
                if seen < fail:
                    self.flaky_pending[key] = seen + 1
                    self.hits["/flaky 503"] += 1
                    return 503, [("Retry-After", "1")] if seen == 0 else []
                self.flaky_pending.pop(key, None)
                self.flaky_done += 1
                self.hits["/flaky 200"] += 1
                return 200, []
            self.hits["other"] += 1
            return 404, []

    def start(self):
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


# ---------------------------------------------------------------------------------------------
# The server under test
# ---------------------------------------------------------------------------------------------

class Server:
    """`hookflow serve` in its own process group, logging into a file."""

    def __init__(self, binary, workdir, log_path, log_level):
        self.binary = binary
        self.workdir = workdir
        self.log_path = log_path
        self.log_level = log_level
        self.process = None
        self.webhook = None
        self.admin = None

    def start(self):
        config = self.workdir / "hookflow.yaml"
        env = dict(os.environ, RUST_LOG=self.log_level)
        env.pop("SOAK_GITHUB_SECRET", None)  # the secrets dir holds it
        self.log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [str(self.binary), "serve", "--config", str(config), "--log-format", "text"],
            cwd=self.workdir, env=env, stdout=self.log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C in the terminal is ours to pass on, in order
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit("hookflow serve exited with %s at start; see %s"
                                 % (self.process.returncode, self.log_path))
            text = re.sub(r"\x1b\[[0-9;]*m", "", self.log_path.read_text(errors="replace"))
            match = re.search(r"hookflow is serving.*?webhook_addr=(\S+).*?admin_addr=(\S+)", text)
            if match:
                self.webhook, self.admin = match.group(1), match.group(2)
                return
            time.sleep(0.1)
        raise SystemExit("hookflow serve did not report its addresses within 30 s; see %s" % self.log_path)

    @property
    def pid(self):
        return self.process.pid

    def alive(self):
        return self.process is not None and self.process.poll() is None

    def stop(self):
        """SIGTERM, then SIGKILL after 20 s. Returns the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                print("hookflow did not stop within 20 s of SIGTERM; killing it", file=sys.stderr)
                self.process.kill()
                self.process.wait()
        self.log.close()
        return self.process.returncode


def admin_get(address, path, timeout=10):
    host, port = address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError("GET %s answered %d: %s" % (path, response.status, body[:200]))
        return body
    finally:
        conn.close()


def metrics(address):
    """The run counters of /metrics: finished runs by status, retries, queue depth, in flight."""
    text = admin_get(address, "/metrics").decode()
    out = Counter()
    buckets = {}
    for line in text.splitlines():
        match = re.match(r'hookflow_store_commit_seconds_bucket\{le="([^"]+)"\}\s+(\S+)', line)
        if match:
            buckets[float(match.group(1))] = float(match.group(2))
            continue
        match = re.match(r'hookflow_runs_finished_total\{([^}]*)\}\s+(\S+)', line)
        if match:
            status = re.search(r'status="([^"]+)"', match.group(1)).group(1)
            out["runs_" + status] += float(match.group(2))
            continue
        for name, key in (("hookflow_step_retries_total", "retries"),
                          ("hookflow_queue_depth", "queue_depth"),
                          ("hookflow_runs_in_flight", "in_flight")):
            match = re.match(name + r'(\{[^}]*\})?\s+(\S+)', line)
            if match:
                out[key] += float(match.group(2))
    out["commit_buckets"] = buckets
    return out


def commit_p99_ms(before, after):
    """The upper bound (ms) of the histogram bucket holding the 99th percentile of the store
    commits between two scrapes, and how many there were."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]  # cumulative
    total = counts[-1] if counts else 0
    if total <= 0:
        return "", 0
    for bound, count in zip(bounds, counts):
        if count >= 0.99 * total:
            return ("%g" % (bound * 1000) if bound != float("inf") else "inf"), int(total)
    return "inf", int(total)


# ---------------------------------------------------------------------------------------------
# The load
# ---------------------------------------------------------------------------------------------

class Load:
    """Requests dispatched at a fixed rate to a pool of sender threads with kept-alive
    connections; every answer is checked against what its kind expects."""

    def __init__(self, webhook, secret, rate, senders):
        self.host, port = webhook.rsplit(":", 1)
        self.port = int(port)
        self.secret = secret
        self.rate = rate
        self.senders = senders
        self.github_body = (ROOT / "tests/fixtures/github/push.json").read_bytes()
        self.queue = queue.Queue(maxsize=senders * 50)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.sent = 0
        self.answered = Counter()       # status -> count
        self.errors = 0                 # no answer (connection refused, reset, timeout)
        self.unexpected = []            # (kind, status, detail), first ones kept
        self.unexpected_count = 0
        self.window = []                # latencies (ms) answered since the last sample
        self.latency_by_kind = {k: [] for k in KINDS}
        self.expected = {}              # run id -> (workflow, expected final status)
        self.late = 0                   # requests sent more than 1 s after their time
        self.dropped = 0                # requests never sent: the senders were 50 per thread behind
        self.reconnects = 0             # kept-alive connections the server had closed
        self.recent_deliveries = deque(maxlen=200)
        self.slots = [kind for kind, share in KINDS.items() for _ in range(share)]
        # Spread each kind over the 100 slots instead of sending them in blocks.
        self.slots = [self.slots[(i * 37) % len(self.slots)] for i in range(len(self.slots))]

    # -- dispatching --

    def run(self, seconds):
        threads = [threading.Thread(target=self.sender, name="sender-%d" % i, daemon=True)
                   for i in range(self.senders)]
        for thread in threads:
            thread.start()
        start = time.monotonic()
        total = int(seconds * self.rate)
        of_kind = Counter()
        for seq in range(total):
            due = start + seq / self.rate
            if self.stop.wait(max(0.0, due - time.monotonic())):
                break
            kind = self.slots[seq % len(self.slots)]
            of_kind[kind] += 1
            try:
                self.queue.put((seq, kind, of_kind[kind], due), timeout=1)
            except queue.Full:
                with self.lock:
                    self.dropped += 1
        for _ in threads:
            self.queue.put(None)
        for thread in threads:
            thread.join(timeout=70)

    def sender(self):
        conn = None
        while True:
            item = self.queue.get()
            if item is None:
                break
            seq, kind, nth, due = item
            if time.monotonic() - due > 1.0:
                with self.lock:
                    self.late += 1
            path, headers, body, check = self.request(seq, kind, nth)
            with self.lock:
                self.sent += 1
            began = time.monotonic()
            try:
                try:
                    if conn is None:
                        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
                        reused = False
                    else:
                        reused = True
                    conn.request("POST", path, body=body, headers=headers)
                    response = conn.getresponse()
                except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                    if not reused:
                        raise
                    # The server closed a kept-alive connection before reading this request:
                    # send it once more on a new one, as HTTP clients do. Had the first copy
                    # been stored after all, its run would show up as one no answer named.
                    conn.close()
                    with self.lock:
                        self.reconnects += 1
                    began = time.monotonic()
                    conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
                    conn.request("POST", path, body=body, headers=headers)
                    response = conn.getresponse()
                answer = response.read()
                status = response.status
                if (response.getheader("connection") or "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as error:
                if conn is not None:
                    conn.close()
                conn = None
                with self.lock:
                    self.errors += 1
                    self.note_unexpected(kind, "no answer", repr(error))
                continue
            elapsed_ms = (time.monotonic() - began) * 1000
            try:
                problem = check(status, answer)
            except (ValueError, KeyError, TypeError) as error:
                problem = "unreadable answer: %r" % error
            with self.lock:
                self.answered[status] += 1
                self.window.append(elapsed_ms)
                self.latency_by_kind[kind].append(elapsed_ms)
                if problem:
                    self.note_unexpected(kind, status, "%s: %s" % (problem, answer[:200]))

    def note_unexpected(self, kind, status, detail):
        self.unexpected_count += 1
        if len(self.unexpected) < 50:
            self.unexpected.append((kind, status, detail))

    def take_window(self):
        with self.lock:
            window, self.window = self.window, []
        return window

    # -- the requests and what their answers must be --

    def expect_runs(self, ids, workflow, status):
        with self.lock:
            for run_id in ids:
                self.expected[run_id] = (workflow, status)

    def accepted(self, workflow, final):
        def check(status, answer):
            if status != 202:
                return "expected 202"
            ids = json.loads(answer)["run_ids"]
            if len(ids) != 1:
                return "expected one run"
            self.expect_runs(ids, workflow, final)
            return None
        return check

    def request(self, seq, kind, nth):
        order = {
            "kind": "ignore" if kind == "async" and nth % 5 == 0 else "order",
            "id": "o-%d" % seq,
            "customer": "customer-%d" % (seq % 97),
            "items": [{"sku": "sku-%d" % i, "cents": 100 * i + seq % 7} for i in range(1, 1 + seq % 4 + 1)],
        }
        json_headers = {"Content-Type": "application/json"}
        if kind == "async":
            final = "filtered" if order["kind"] == "ignore" else "succeeded"
            return "/soak/orders", json_headers, json.dumps(order), self.accepted("soak-async", final)
        if kind == "flaky":
            return "/soak/flaky", json_headers, json.dumps(order), self.accepted("soak-flaky", "succeeded")
        if kind == "doomed":
            return "/soak/doomed", json_headers, json.dumps(order), self.accepted("soak-doomed", "failed")
        if kind == "sync":
            total = sum(item["cents"] for item in order["items"])

            def check(status, answer):
                data = json.loads(answer)
                if status == 202:  # sync_timeout passed: accepted, the run goes on
                    self.expect_runs(data["run_ids"], "soak-sync", "succeeded")
                    return None
                if status != 200:
                    return "expected 200"
                self.expect_runs([data["run"]], "soak-sync", "succeeded")
                if data["id"] != order["id"] or int(data["total"]) != total:
                    return "wrong answer (want id %s total %d)" % (order["id"], total)
                return None
            return "/soak/quote", json_headers, json.dumps(order), check
        if kind == "github-dup":
            with self.lock:
                delivery = self.recent_deliveries[0] if self.recent_deliveries else None
            if delivery is not None:
                def check(status, answer):
                    if status != 200 or "duplicate_of" not in json.loads(answer):
                        return "expected 200 duplicate_of"
                    return None
                return "/soak/github", self.github_headers(delivery), self.github_body, check
            kind = "github"  # nothing to send again yet
        if kind == "github":
            delivery = str(uuid.uuid4())
            accepted = self.accepted("soak-github", "succeeded")

            def check(status, answer):
                problem = accepted(status, answer)
                if problem is None:
                    with self.lock:
                        self.recent_deliveries.append(delivery)
                return problem
            return "/soak/github", self.github_headers(delivery), self.github_body, check
        if kind == "bad-sig":
            headers = self.github_headers(str(uuid.uuid4()))
            headers["X-Hub-Signature-256"] = "sha256=" + "0" * 64

            def check(status, answer):
                return None if status == 401 else "expected 401"
            return "/soak/github", headers, self.github_body, check
        raise ValueError(kind)

    def github_headers(self, delivery):
        signature = hmac.new(self.secret.encode(), self.github_body, hashlib.sha256).hexdigest()
        return {
            "Content-Type": "application/json",
            "X-GitHub-Event": "push",
            "X-GitHub-Delivery": delivery,
            "X-Hub-Signature-256": "sha256=" + signature,
            "User-Agent": "GitHub-Hookshot/soak",
        }


# ---------------------------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------------------------

def proc_figures(pid):
    """VmRSS and its anonymous and file-backed parts (KiB), open fds, threads."""
    status = Path("/proc/%d/status" % pid).read_text()

    def field(name):
        return int(re.search(name + r":\s+(\d+)", status).group(1))
    fds = len(os.listdir("/proc/%d/fd" % pid))
    return {"rss_kib": field("VmRSS"), "rss_anon_kib": field("RssAnon"),
            "rss_file_kib": field("RssFile") + field("RssShmem"), "fds": fds,
            "threads": field("Threads")}


def file_size(path):
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def percentile(values, fraction):
    if not values:
        return ""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, int(round(fraction * len(ordered) + 0.5)) - 1))
    return round(ordered[index], 2)


class Sampler:
    def __init__(self, server, load, store, outbox, csv_path):
        self.server = server
        self.load = load
        self.store = store
        self.wal = Path(str(store) + "-wal")
        self.outbox = outbox
        self.rows = []
        self.commit_buckets = {}
        self.started = time.monotonic()
        self.file = open(csv_path, "w", newline="")
        self.writer = csv.DictWriter(self.file, fieldnames=CSV_FIELDS)
        self.writer.writeheader()

    def sample(self, phase):
        process = proc_figures(self.server.pid)
        counters = metrics(self.server.admin)
        commit_p99, commits = commit_p99_ms(self.commit_buckets, counters["commit_buckets"])
        self.commit_buckets = counters["commit_buckets"]
        load = self.load
        window = load.take_window()
        with load.lock:
            answered = Counter(load.answered)
            row = {
                "t_s": round(time.monotonic() - self.started, 1),
                "phase": phase,
                **process,
                "wal_bytes": file_size(self.wal),
                "db_bytes": file_size(self.store),
                "window_answers": len(window),
                "p50_ms": percentile(window, 0.50),
                "p99_ms": percentile(window, 0.99),
                "max_ms": round(max(window), 2) if window else "",
                "commits": commits,
                "commit_p99_ms": commit_p99,
                "loadavg": round(os.getloadavg()[0], 2),
                "sent": load.sent,
                "answered": sum(answered.values()),
                "a200": answered[200],
                "a202": answered[202],
                "a401": answered[401],
                "a4xx_other": sum(n for s, n in answered.items() if 400 <= s < 500 and s != 401),
                "a5xx": sum(n for s, n in answered.items() if s >= 500),
                "errors": load.errors,
                "unexpected": load.unexpected_count,
                "runs_accepted": len(load.expected),
            }
        for status in ("succeeded", "failed", "filtered", "cancelled"):
            row["runs_" + status] = int(counters["runs_" + status])
        row["retries"] = int(counters["retries"])
        row["queue_depth"] = int(counters["queue_depth"])
        row["in_flight"] = int(counters["in_flight"])
        row["outbox_files"] = len(os.listdir(self.outbox)) if self.outbox.exists() else 0
        row["wal_checkpoint_bytes"] = checkpoint_bytes(self.store)
        self.rows.append(row)
        self.writer.writerow(row)
        self.file.flush()
        return row

    def close(self):
        self.file.close()


# ---------------------------------------------------------------------------------------------
# The verdict
# ---------------------------------------------------------------------------------------------

def checkpoint_bytes(store):
    """The WAL size at which the store checkpoints: WAL_CHECKPOINT_PAGES (read from the source,
    8192 when it cannot be) times the page size in the database header."""
    pages = 8192
    source = ROOT / "src/store/sqlite.rs"
    if source.exists():
        match = re.search(r"WAL_CHECKPOINT_PAGES:\s*u32\s*=\s*([\d_]+)", source.read_text())
        if match:
            pages = int(match.group(1).replace("_", ""))
    page_size = 4096
    try:
        with open(store, "rb") as file:
            header = file.read(100)
    except FileNotFoundError:
        header = b""
    if len(header) == 100 and header.startswith(b"SQLite format 3\x00"):
        page_size = int.from_bytes(header[16:18], "big")
        page_size = 65536 if page_size == 1 else page_size
    return pages * page_size


def trend_checks(rows, wal_limit):
    """(problems, lines): the growth checks over the samples taken under load."""
    problems, lines = [], []
    under_load = [r for r in rows if r["phase"] == "load" and r["window_answers"]]
    n = len(under_load)
    if n < 5:
        return ["too few samples under load (%d) to judge growth" % n], lines
    middle = under_load[int(n * 0.2):max(int(n * 0.5), int(n * 0.2) + 1)]
    last = under_load[int(n * 0.8):] or under_load[-1:]

    def mean(rs, key):
        return statistics.fmean(float(r[key]) for r in rs)

    def median(rs, key):
        return statistics.median(float(r[key]) for r in rs)

    for key, label, limit_of, unit in (
        ("rss_kib", "RSS", lambda m: m * (1 + RSS_GROWTH), "KiB"),
        ("fds", "open fds", lambda m: m + FD_GROWTH, ""),
        ("threads", "threads", lambda m: m + THREAD_GROWTH, ""),
    ):
        before, after = mean(middle, key), mean(last, key)
        limit = limit_of(before)
        ok = after <= limit
        lines.append("%-9s mean %.1f%s in 20-50%% -> %.1f%s in the last 20%% (limit %.1f): %s"
                     % (label, before, unit, after, unit, limit, "ok" if ok else "GROWS"))
        if not ok:
            problems.append("%s grows: %.1f -> %.1f%s (limit %.1f)" % (label, before, after, unit, limit))
    before, after = median(middle, "p99_ms"), median(last, "p99_ms")
    limit = before * P99_FACTOR + P99_SLACK_MS
    ok = after <= limit
    lines.append("p99       median %.1f ms in 20-50%% -> %.1f ms in the last 20%% (limit %.1f): %s"
                 % (before, after, limit, "ok" if ok else "GROWS"))
    if not ok:
        problems.append("p99 latency grows: %.1f -> %.1f ms (limit %.1f)" % (before, after, limit))
    wal_max = max(int(r["wal_bytes"]) for r in rows)
    ok = wal_max <= wal_limit
    lines.append("WAL       largest %.1f MiB, checkpoint at %.1f MiB (limit %.1f): %s"
                 % (wal_max / 2**20, wal_limit / (1 + WAL_SLACK) / 2**20, wal_limit / 2**20,
                    "ok" if ok else "TOO LARGE"))
    if not ok:
        problems.append("the WAL reached %.1f MiB, past %.1f MiB" % (wal_max / 2**20, wal_limit / 2**20))
    return problems, lines


def unfinished(admin):
    counts = {}
    for status in ("queued", "running", "retrying"):
        page = json.loads(admin_get(admin, "/api/runs?status=%s&limit=500" % status))
        counts[status] = len(page["runs"])
    return counts


def drain(admin, timeout):
    """Wait until no run is queued, running or retrying. Returns what is left."""
    deadline = time.monotonic() + timeout
    left = unfinished(admin)
    while any(left.values()) and time.monotonic() < deadline:
        time.sleep(2)
        left = unfinished(admin)
    return left


def stored_runs(admin):
    """Every run in the store: id -> (workflow, status), paged through GET /api/runs."""
    runs, cursor = {}, None
    while True:
        path = "/api/runs?limit=500" + ("&cursor=" + cursor if cursor else "")
        page = json.loads(admin_get(admin, path, timeout=60))
        for run in page["runs"]:
            runs[run["id"]] = (run["workflow"], run["status"])
        cursor = page.get("next")
        if not cursor:
            return runs
        cursor = quote(cursor, safe="")


def run_checks(load, runs, receiver, outbox_files):
    problems, lines = [], []
    lost = [i for i in load.expected if i not in runs]
    extra = [i for i in runs if i not in load.expected]
    wrong = Counter()
    by_status = Counter()
    for run_id, (workflow, want) in load.expected.items():
        if run_id in runs:
            got_workflow, got = runs[run_id]
            by_status[(workflow, got)] += 1
            if got != want or got_workflow != workflow:
                wrong[(workflow, want, got)] += 1
    for (workflow, status), count in sorted(by_status.items()):
        lines.append("  %-12s %-10s %d" % (workflow, status, count))
    if lost:
        problems.append("%d accepted run(s) missing from the store, e.g. %s" % (len(lost), lost[:3]))
    if extra:
        problems.append("%d run(s) in the store that no answer named, e.g. %s" % (len(extra), extra[:3]))
    for (workflow, want, got), count in sorted(wrong.items()):
        problems.append("%d %s run(s) ended %s, expected %s" % (count, workflow, got, want))
    expected = Counter(wf_status for wf_status in load.expected.values())
    want_ok = expected[("soak-async", "succeeded")]
    want_github = expected[("soak-github", "succeeded")]
    want_flaky = expected[("soak-flaky", "succeeded")]
    want_doomed = expected[("soak-doomed", "failed")]
    for label, got, want in (
        ("receiver /ok calls", receiver.hits["/ok"], want_ok),
        ("receiver /github calls", receiver.hits["/github"], want_github),
        ("flaky deliveries that got through", receiver.flaky_done, want_flaky),
        ("receiver /reject calls", receiver.hits["/reject"], want_doomed),
        ("emails in the outbox", outbox_files, want_doomed),
    ):
        lines.append("%-34s %d (runs: %d)" % (label, got, want))
        # An effect may be repeated only when a step was interrupted; nothing is interrupted here.
        if got != want:
            problems.append("%s: %d, expected %d" % (label, got, want))
    if receiver.flaky_pending:
        problems.append("%d flaky deliveries never got through" % len(receiver.flaky_pending))
    return problems, lines


def log_checks(log_path):
    """Problems the server logged: an ERROR line or a panic is never part of the mix."""
    bad = []
    with open(log_path, errors="replace") as log:
        for line in log:
            line = re.sub(r"\x1b\[[0-9;]*m", "", line)
            if " ERROR " in line or "panicked" in line:
                bad.append(line.strip())
    if not bad:
        return []
    return ["%d error or panic line(s) in %s, e.g. %s" % (len(bad), log_path, bad[0][:300])]


def figures(row):
    return ("RSS %.1f MiB, fds %s, threads %s, WAL %.1f MiB, db %.1f MiB, p50 %s ms, p99 %s ms, "
            "sent %s, answered %s (200: %s, 202: %s, 401: %s, 5xx: %s, no answer: %s), "
            "runs succeeded %s / failed %s / filtered %s, retries %s, queue %s"
            % (int(row["rss_kib"]) / 1024, row["fds"], row["threads"], int(row["wal_bytes"]) / 2**20,
               int(row["db_bytes"]) / 2**20, row["p50_ms"] or "-", row["p99_ms"] or "-", row["sent"],
               row["answered"], row["a200"], row["a202"], row["a401"], row["a5xx"], row["errors"],
               row["runs_succeeded"], row["runs_failed"], row["runs_filtered"], row["retries"],
               row["queue_depth"]))


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------

def parse_args():
    parser = argparse.ArgumentParser(
        description="Soak hookflow: a mix of webhooks at a fixed rate for a long time; "
                    "fails when RSS, fds, threads, WAL or p99 grow, on an unexpected answer, "
                    "or when an accepted run is lost. Build first: cargo build --release.")
    parser.add_argument("--binary", default=str(ROOT / "target/release/hookflow"),
                        help="the hookflow binary (default target/release/hookflow)")
    parser.add_argument("--minutes", type=float, default=30.0, help="how long to drive load (default 30)")
    parser.add_argument("--rate", type=float, default=50.0, help="requests per second (default 50)")
    parser.add_argument("--senders", type=int, default=16, help="client threads (default 16)")
    parser.add_argument("--out", default=str(ROOT / "target/soak"),
                        help="where soak.csv, soak.png, summary.txt and serve.log go (default target/soak)")
    parser.add_argument("--workers", type=int, default=32, help="the server's --workers (default 32)")
    parser.add_argument("--drain-timeout", type=float, default=300.0,
                        help="seconds to wait for the backlog after the load (default 300)")
    parser.add_argument("--log-level", default="warn,hookflow::serve=info",
                        help="RUST_LOG for the server (default: warnings, and the start lines)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (store, outbox)")
    return parser.parse_args()


def prepare(workdir, receiver, workers):
    """Workflows, the GitHub secret in a secrets dir, and hookflow.yaml in `workdir`."""
    (workdir / "workflows").mkdir()
    for name, text in workflows(receiver.url).items():
        (workdir / "workflows" / name).write_text(text.lstrip())
    secret = secrets.token_hex(24)
    (workdir / "secrets").mkdir(mode=0o700)
    (workdir / "secrets" / "SOAK_GITHUB_SECRET").write_text(secret + "\n")
    (workdir / "hookflow.yaml").write_text(
        "listen: 127.0.0.1:0\n"
        "admin_listen: 127.0.0.1:0\n"
        "workflows: %s\n"
        "store: %s\n"
        "secrets_dir: %s\n"
        "workers: %d\n"
        "sync_timeout: 10s\n"
        "email:\n"
        "  outbox: %s\n"
        % (workdir / "workflows", workdir / "hookflow.db", workdir / "secrets", workers, workdir / "outbox"))
    return secret


def main():
    args = parse_args()
    binary = Path(args.binary).resolve()
    if not os.access(binary, os.X_OK):
        raise SystemExit("no hookflow binary at %s: run `cargo build --release` first, or pass --binary"
                         % binary)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stop_now = threading.Event()
    load_holder = {}

    def interrupted(signum, frame):
        if stop_now.is_set():
            raise KeyboardInterrupt
        print("\nstopping the load (again to stop at once)...", flush=True)
        stop_now.set()
        if "load" in load_holder:
            load_holder["load"].stop.set()

    signal.signal(signal.SIGINT, interrupted)
    signal.signal(signal.SIGTERM, interrupted)

    workdir = Path(tempfile.mkdtemp(prefix="hookflow-soak-"))
    receiver = Receiver()
    server = Server(binary, workdir, out / "serve.log", args.log_level)
    sampler = None
    problems = []
    exit_code = 1
    try:
        receiver.start()
        secret = prepare(workdir, receiver, args.workers)
        server.start()
        print("hookflow %s serving webhooks on %s, admin on %s; pid %d; directory %s"
              % (binary, server.webhook, server.admin, server.pid, workdir), flush=True)
        wal_limit = None
        load = Load(server.webhook, secret, args.rate, args.senders)
        load_holder["load"] = load
        sampler = Sampler(server, load, workdir / "hookflow.db", workdir / "outbox", out / "soak.csv")
        idle = sampler.sample("idle")
        print("idle:  " + figures(idle), flush=True)

        seconds = args.minutes * 60
        driver = threading.Thread(target=load.run, args=(seconds,), name="load", daemon=True)
        driver.start()
        print("driving %.0f requests/s for %.1f minutes (%s); samples every %.0f s into %s"
              % (args.rate, args.minutes, ", ".join("%s %d%%" % kv for kv in KINDS.items()),
                 SAMPLE_EVERY, out / "soak.csv"), flush=True)
        next_sample = time.monotonic() + SAMPLE_EVERY
        while driver.is_alive():
            driver.join(timeout=max(0.0, next_sample - time.monotonic()))
            if time.monotonic() >= next_sample:
                next_sample += SAMPLE_EVERY
                if not server.alive():
                    problems.append("hookflow serve exited during the load (code %s)"
                                    % server.process.returncode)
                    load.stop.set()
                    break
                row = sampler.sample("load")
                print("%6.0fs " % row["t_s"] + figures(row), flush=True)
        driver.join()
        if load.late:
            print("note: %d requests were sent more than 1 s after their time (client or server behind)"
                  % load.late)
        if load.dropped:
            problems.append("%d requests were never sent: the senders were too far behind"
                            % load.dropped)

        if server.alive():
            print("load done; waiting for the backlog to drain...", flush=True)
            left = drain(server.admin, args.drain_timeout)
            drained = sampler.sample("drained")
            print("drained: " + figures(drained), flush=True)
            if any(left.values()):
                problems.append("runs still unfinished after waiting %.0f s: %s" % (args.drain_timeout, left))
            wal_limit = checkpoint_bytes(workdir / "hookflow.db") * (1 + WAL_SLACK)
            trend_problems, trend_lines = trend_checks(sampler.rows, wal_limit)
            problems += trend_problems
            runs = stored_runs(server.admin)
            outbox = workdir / "outbox"
            outbox_files = len(os.listdir(outbox)) if outbox.exists() else 0
            run_problems, run_lines = run_checks(load, runs, receiver, outbox_files)
            problems += run_problems
        else:
            trend_lines, run_lines = [], []
            if not any("exited" in p for p in problems):
                problems.append("hookflow serve exited (code %s)" % server.process.returncode)
        problems += log_checks(server.log_path)
        if load.unexpected_count:
            problems.append("%d unexpected answer(s), e.g. %s" % (load.unexpected_count, load.unexpected[:5]))
        if stop_now.is_set():
            problems.append("stopped early by a signal")

        summary = summarise(args, sampler.rows, load, trend_lines, run_lines, problems)
        (out / "summary.txt").write_text(summary)
        print(summary, flush=True)
        exit_code = 1 if problems else 0
    except KeyboardInterrupt:
        print("interrupted; stopping everything", file=sys.stderr)
        exit_code = 130
    finally:
        if "load" in load_holder:
            load_holder["load"].stop.set()
        code = server.stop()
        if code not in (None, 0):
            print("hookflow serve exited with %s (log: %s)" % (code, server.log_path), file=sys.stderr)
            if exit_code == 0:
                exit_code = 1
        receiver.stop()
        if sampler is not None:
            sampler.close()
        if args.keep:
            print("kept %s" % workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    plot(out)
    return exit_code


def summarise(args, rows, load, trend_lines, run_lines, problems):
    under_load = [r for r in rows if r["phase"] == "load"]
    lines = ["", "soak: %.0f requests/s for %.1f minutes, %d samples" % (args.rate, args.minutes, len(rows))]
    if rows:
        lines.append("idle:       " + figures(rows[0]))
    if under_load:
        lines.append("start:      " + figures(under_load[0]))
        lines.append("end:        " + figures(under_load[-1]))
    if rows and rows[-1]["phase"] == "drained":
        lines.append("drained:    " + figures(rows[-1]))
    with load.lock:
        lines.append("client: %d sent, %d with no answer, %d unexpected, %d sent over 1 s late, "
                     "%d never sent, %d sent again on a new connection"
                     % (load.sent, load.errors, load.unexpected_count, load.late, load.dropped,
                        load.reconnects))
        for kind, values in load.latency_by_kind.items():
            if values:
                lines.append("latency %-10s n=%-6d p50 %6.1f ms  p99 %7.1f ms  max %7.1f ms"
                             % (kind, len(values), percentile(values, 0.5), percentile(values, 0.99),
                                max(values)))
    lines += trend_lines
    if run_lines:
        lines.append("runs by workflow and final status (from GET /api/runs):")
        lines += run_lines
    lines.append("verdict: " + ("FAIL" if problems else "PASS"))
    lines += ["  - " + p for p in problems]
    return "\n".join(lines) + "\n"


def plot(out):
    try:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import soak_plot
    except ImportError as error:
        print("no plot (%s): pip install matplotlib, then python3 scripts/soak_plot.py %s"
              % (error, out / "soak.csv"))
        return
    if (out / "soak.csv").exists():
        soak_plot.plot(out / "soak.csv", out / "soak.png")
        print("plot: %s" % (out / "soak.png"))


if __name__ == "__main__":
    sys.exit(main())
