#!/usr/bin/env bash
# The admin API against its own OpenAPI description: schemathesis generates requests for every
# operation of /api/openapi.json (examples, coverage, fuzzing and stateful phases) and runs every
# check on the answers, against a served instance without and then with an admin token.
#
#   pip install schemathesis        # once; the figures in the README came from 4.32
#   scripts/schemathesis.sh         # builds the debug binary; exits non-zero on any failure
#
# HOOKFLOW_BINARY=target/release/hookflow uses another build; SCHEMATHESIS_SEED (default 1)
# and SCHEMATHESIS_ARGS (more `st run` options, e.g. "--max-examples 20") change the run.
# Reports (JUnit XML, every request and answer as HAR, and the full text output) go to
# target/schemathesis/. Everything is
# served on ephemeral loopback ports from a temporary folder that is removed afterwards.
# Not part of .ci/run: it takes a few minutes; regression tests for what it found are in
# tests/it/admin.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

if ! command -v st >/dev/null 2>&1; then
    echo "schemathesis is missing: pip install schemathesis" >&2
    exit 2
fi
binary=${HOOKFLOW_BINARY:-}
if [ -z "$binary" ]; then
    cargo build --quiet
    binary=$root/target/debug/hookflow
fi
case "$binary" in /*) ;; *) binary=$root/$binary ;; esac
seed=${SCHEMATHESIS_SEED:-1}
reports=$root/target/schemathesis
mkdir -p "$reports"

work=$(mktemp -d)
server_pid=""
stop_server() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill "$server_pid"
        wait "$server_pid" 2>/dev/null || true
    fi
    server_pid=""
}
trap 'stop_server; rm -rf "$work"' EXIT

# A webhook workflow and a scheduled one (started by hand in the tests).
mkdir -p "$work/workflows"
cat >"$work/workflows/orders.yaml" <<'EOF'
name: orders
description: Orders from the shop
on:
  webhook:
    path: /hooks/orders/{tenant}
steps:
  - name: check
    filter: event.body.total > 0
  - name: summary
    template: "order {{ event.body.id }} for {{ event.params.tenant }}"
EOF
cat >"$work/workflows/nightly.yaml" <<'EOF'
name: nightly
description: A report at three, also started by hand
on:
  schedule:
    cron: "0 3 * * *"
steps:
  - name: hello
    template: "hello {{ event.body.name | default('nobody') }}"
EOF

# Start `hookflow serve` on ephemeral ports with its own store; sets webhook and admin.
start_server() {
    local name=$1
    shift
    (cd "$work" && exec env -u RUST_LOG "$@" "$binary" serve --workflows workflows \
        --store "$name.db" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0) \
        >"$work/$name.log" 2>&1 &
    server_pid=$!
    local line=""
    for _ in $(seq 100); do
        line=$(grep -m1 'hookflow is serving' "$work/$name.log" || true)
        [ -n "$line" ] && break
        sleep 0.1
    done
    if [ -z "$line" ]; then
        cat "$work/$name.log" >&2
        echo "hookflow serve did not start" >&2
        exit 1
    fi
    webhook=$(sed -E 's/.*webhook_addr=([^ ]+).*/\1/' <<<"$line")
    admin=$(sed -E 's/.*admin_addr=([^ ]+).*/\1/' <<<"$line")
    # Some runs (succeeded, filtered) and a refused request, so that reads find something.
    for total in 0 1 2; do
        curl -fsS -o /dev/null -X POST -H 'content-type: application/json' \
            -d "{\"id\": $total, \"total\": $total}" "http://$webhook/hooks/orders/acme"
    done
    curl -sS -o /dev/null -X POST "http://$webhook/nowhere" || true
}

# Run schemathesis against the served description; prints the summary, returns its status.
run_schemathesis() {
    local name=$1
    shift
    echo "== schemathesis: $name"
    local status=0
    # From the temporary folder, where schemathesis keeps its cache.
    # shellcheck disable=SC2086
    (cd "$work" && st run "http://$admin/api/openapi.json" --checks all --seed "$seed" \
        --report junit,har --report-junit-path "$reports/$name.xml" \
        --report-har-path "$reports/$name.har" \
        "$@" ${SCHEMATHESIS_ARGS:-}) >"$reports/$name.txt" 2>&1 || status=$?
    sed -n '/^=* SUMMARY =*$/,$p' "$reports/$name.txt"
    python3 -c 'import json, sys; print(len(json.load(open(sys.argv[1]))["log"]["entries"]), "requests sent")' \
        "$reports/$name.har" || true
    [ "$status" -eq 0 ] || echo "(full output: $reports/$name.txt)"
    return "$status"
}

failed=0
start_server no-token
run_schemathesis no-token || failed=1
stop_server

token=schemathesis-admin-token
start_server token HOOKFLOW_ADMIN_TOKEN=$token
run_schemathesis token -H "Authorization: Bearer $token" || failed=1
stop_server

if [ "$failed" -ne 0 ]; then
    echo "schemathesis found failures" >&2
    exit 1
fi
echo "schemathesis: no failures, without and with a token"
