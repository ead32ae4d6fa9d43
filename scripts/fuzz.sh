#!/usr/bin/env bash
# Fuzz hookflow's parsers and checks with cargo fuzz (libFuzzer), one target after the other.
# Not part of CI (.ci/run): it needs a nightly toolchain and takes as long as you give it.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]      default: 60 seconds each, every target
#
# Targets: workflow body verify template routes (see fuzz/README.md).
# Needs: `rustup toolchain install nightly` and `cargo install cargo-fuzz`.
#
# The seed corpus is built at each run from the project's own workflows, examples, docs and
# payload fixtures into fuzz/seeds/; what the fuzzer finds grows fuzz/corpus/<target>/ and
# crashes land in fuzz/artifacts/<target>/. None of it is committed.
#
# Environment:
#   FUZZ_SEED_DIRS   more payload directories (colon-separated; *.json, *.xml, *.txt and
#                    <name>.headers.json beside a body) for the body and verify seeds
#   FUZZ_TOOLCHAIN   the toolchain for cargo fuzz (default: nightly)
#   FUZZ_NICE        the niceness of the fuzzer (default: 10; it keeps one core busy)
#   FUZZ_ARGS        more libFuzzer flags, appended to every run
set -euo pipefail
cd "$(dirname "$0")/.."

all_targets=(workflow body verify template routes)
seconds="${1:-60}"
shift || true
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
    targets=("${all_targets[@]}")
fi
toolchain="${FUZZ_TOOLCHAIN:-nightly}"
niceness="${FUZZ_NICE:-10}"
fuzz_dir="$PWD/fuzz"
seeds="$fuzz_dir/seeds"
logs="$fuzz_dir/logs"

case "$seconds" in
    '' | *[!0-9]*)
        echo "usage: scripts/fuzz.sh [SECONDS] [TARGET...]; targets: ${all_targets[*]}" >&2
        exit 2
        ;;
esac
for target in "${targets[@]}"; do
    case " ${all_targets[*]} " in
        *" $target "*) ;;
        *)
            echo "unknown target '$target'; targets: ${all_targets[*]}" >&2
            exit 2
            ;;
    esac
done
if ! cargo "+$toolchain" fuzz --version >/dev/null 2>&1; then
    echo "cargo fuzz is missing: rustup toolchain install $toolchain && cargo install cargo-fuzz" >&2
    exit 2
fi

# Inputs longer than these are cut: bodies and workflow files up to 64 KiB, short templates
# and route lists (a template's JSON body rides after it, so it gets a little more).
max_len() {
    case "$1" in
        workflow | body | verify) echo 65536 ;;
        template) echo 8192 ;;
        routes) echo 2048 ;;
    esac
}

# `name: value` lines from a flat JSON object of strings, one pair per line (the fixtures'
# *.headers.json); enough for seeds, not a JSON parser.
headers_of() {
    sed -n 's/^[[:space:]]*"\([^"]*\)":[[:space:]]*"\(.*\)",\{0,1\}[[:space:]]*$/\1: \2/p' "$1"
}

# Every payload file of the project, then of FUZZ_SEED_DIRS.
payload_files() {
    local dirs=(tests/fixtures examples tests/workflows)
    local extra
    IFS=: read -r -a extra <<<"${FUZZ_SEED_DIRS:-}"
    find "${dirs[@]}" "${extra[@]}" -type f \( -name '*.json' -o -name '*.xml' -o -name '*.txt' \) \
        -not -path '*/jsonpath/*' -not -name 'expected*' 2>/dev/null | sort
}

seed_name() {
    echo "$1" | tr '/ ' '__'
}

# ```yaml blocks of a Markdown file, one file each.
yaml_blocks() {
    awk -v out="$2" '
        /^```yaml/ { n++; file = sprintf("%s-%02d.yaml", out, n); inside = 1; next }
        /^```/ { inside = 0; next }
        inside { print > file }
    ' "$1"
}

seed_workflow() {
    local dir="$seeds/workflow" file group files
    for file in workflows/*.yaml examples/*/workflow.yaml tests/workflows/*/*.yaml; do
        cp "$file" "$dir/$(seed_name "$file")"
    done
    for file in docs/*.md README.md; do
        yaml_blocks "$file" "$dir/$(seed_name "$file")"
    done
    # Folders of several workflows: the first two as one input, NUL between them.
    for group in tests/workflows/*/; do
        files=("$group"*.yaml)
        if [ "${#files[@]}" -ge 2 ]; then
            { cat "${files[0]}"; printf '\0'; cat "${files[1]}"; } >"$dir/pair_$(seed_name "$group")"
        fi
    done
}

seed_body() {
    local dir="$seeds/body" file type
    while read -r file; do
        case "$file" in
            *.json) type="application/json" ;;
            *.xml) type="application/xml; charset=utf-8" ;;
            *.txt) type="application/x-www-form-urlencoded" ;;
        esac
        { echo "$type"; cat "$file"; } >"$dir/$(seed_name "$file")"
    done < <(payload_files)
    printf 'text/plain; charset=utf-8\nhello {"not": json}' >"$dir/text"
    printf '\nno content type' >"$dir/none"
    printf 'application/vnd.github+json\n{"a":[1,{"b":null}],"c":"\\u00e9"}' >"$dir/vnd_json"
    printf 'application/soap+xml\n<?xml version="1.0"?><!DOCTYPE a><s:E xmlns:s="urn:x"><s:B a="&lt;&#65;">t<![CDATA[<x>]]></s:B><!-- c --></s:E>' >"$dir/soap_xml"
    printf 'application/x-www-form-urlencoded\na=1&a=2&b=%%C3%%A9&c=x+y&d=' >"$dir/form_repeated"
}

# A verify seed: the scheme line, header and setting lines, an empty line, the body.
verify_seed() {
    local name="$1" head="$2" body="$3"
    printf '%s\n\n%s' "$head" "$body" >"$seeds/verify/$name"
}

seed_verify() {
    local ping='{"event":"ping","id":42}'
    local slack_body='token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c'
    local twilio_form='CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1234&From=%2B14158675309&To=%2B18005551212'
    # The published vectors of the tests in src/verify/: each of these is accepted.
    verify_seed github $'github\nX-Hub-Signature-256: sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17' 'Hello, World!'
    verify_seed github_sha1 $'github legacy_sha1\nX-Hub-Signature: sha1=01dc10d0c83e72ed246219cdd91669667fe2ca59' 'Hello, World!'
    verify_seed gitlab $'gitlab\nX-Gitlab-Token: my-gitlab-token\n@secret: my-gitlab-token' '{}'
    verify_seed stripe $'stripe\nStripe-Signature: t=1700000000,v1=00ff,v0=abc,v1=9890228da14bae54b7a0781fd00a7245f2a35befaf6fdaa680dbc1f38547654f\n@secret: whsec_test_secret\n@now: 1700000000' "$ping"
    verify_seed shopify $'shopify\nX-Shopify-Hmac-Sha256: FAICgC8U4T61S6i2tta7AjOY9kLLQ7gEMFCBfdBJzOo=\n@secret: hush' "$ping"
    verify_seed slack $'slack\nX-Slack-Request-Timestamp: 1531420618\nX-Slack-Signature: v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503\n@secret: 8f742231b10e8888abcd99yyyzzz85a5\n@now: 1531420618' "$slack_body"
    verify_seed standard_webhooks $'standard_webhooks\nwebhook-id: msg_p5jXN8AQM9LWM0D4loKWxJek\nwebhook-timestamp: 1614265330\nwebhook-signature: v2,abc v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=\n@secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n@now: 1614265330' '{"test": 2432232314}'
    verify_seed svix $'standard_webhooks\nsvix-id: msg_p5jXN8AQM9LWM0D4loKWxJek\nsvix-timestamp: 1614265330\nsvix-signature: v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=\n@secret: MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n@now: 1614265330' '{"test": 2432232314}'
    verify_seed bitbucket $'bitbucket\nX-Hub-Signature: sha256=7d4e732b39dfc86e7e532e0209097807da77dd3486513c41bb8a2206e911cf89\n@secret: old\n@secret: bb-secret' "$ping"
    verify_seed gitea $'gitea\nX-Gitea-Signature: 0423390bd19da5eac4f09ec9263c058f54a19723e780f1970bf2797c82030a9c\n@secret: gitea-secret' "$ping"
    verify_seed forgejo $'forgejo\nX-Forgejo-Signature: 0423390bd19da5eac4f09ec9263c058f54a19723e780f1970bf2797c82030a9c\n@secret: gitea-secret' "$ping"
    verify_seed twilio $'twilio\nX-Twilio-Signature: RSOYDt4T1cUTdK1PDd93/VVr8B8=\n@secret: 12345\n@url: https://mycompany.com/myapp.php?foo=1&bar=2' "$twilio_form"
    verify_seed twilio_query $'twilio\nX-Twilio-Signature: RSOYDt4T1cUTdK1PDd93/VVr8B8=\n@secret: 12345\n@url: https://mycompany.com/myapp.php\n@query: foo=1&bar=2' "$twilio_form"
    verify_seed twilio_json $'twilio\nX-Twilio-Signature: a9nBmqA0ju/hNViExpshrM61xv4=\n@secret: 12345\n@url: https://mycompany.com/myapp.php?foo=1&bar=2&bodySHA256=0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620' '{"property": "value", "boolean": true}'
    verify_seed hmac $'hmac\nx-signature: sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17\n@prefix: sha256=' 'Hello, World!'
    verify_seed hmac_sha512 $'hmac sha512\nx-signature: 11ed355a617e98134e842012a7944ccf59c10256cb182357bd7e3a42013ff07c376f8c14cf5cc1923da20b51d64256b2fb8ebbf100aa67a61326f61fea8111bc' 'Hello, World!'
    verify_seed hmac_sha1 $'hmac sha1\nx-signature: sha1=01dc10d0c83e72ed246219cdd91669667fe2ca59\n@prefix: sha1=' 'Hello, World!'
    verify_seed hmac_base64 $'hmac base64\nx-signature: FAICgC8U4T61S6i2tta7AjOY9kLLQ7gEMFCBfdBJzOo=\n@secret: hush' "$ping"
    verify_seed hmac_content $'hmac timestamp id content\nx-id: msg_1\nx-timestamp: 1700000000\nx-signature: aae00f0bc2287a4ce9cda9b31219a47af22eda72d0790685008204698c370bf0\n@now: 1700000000\n@tolerance: 300' 'Hello, World!'
    verify_seed basic $'basic\nAuthorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\n@username: Aladdin\n@secret: open sesame' ''
    verify_seed token $'token\nX-Token: s3cret\n@secret: new\n@secret: s3cret' ''
    verify_seed token_query $'token query\n@query: a=1&token=a%2Bb\n@secret: a+b' ''
    # Real deliveries: a body and the headers published with it, checked by its sender's scheme.
    local file headers scheme
    while read -r file; do
        case "$file" in *.headers.json) continue ;; esac
        headers="${file%.*}.headers.json"
        [ -f "$headers" ] || continue
        scheme="$(basename "$(dirname "$file")")"
        { echo "$scheme"; headers_of "$headers"; echo; cat "$file"; } >"$seeds/verify/$(seed_name "$file")"
    done < <(payload_files)
}

seed_template() {
    local dir="$seeds/template" n=0 line
    # Every template and condition written in the project's workflows and docs.
    while IFS= read -r line; do
        n=$((n + 1))
        printf '%s' "$line" >"$dir/line_$n"
    done < <(
        cat workflows/*.yaml examples/*/workflow.yaml tests/workflows/*/*.yaml docs/language.md |
            sed -n -e 's/^[^:]*\(filter\|if\|items\): *\(.*\)$/\2/p' -e 's/^[^{]*: *\(.*{[{%].*\)$/\1/p' |
            sed -e "s/^'\(.*\)'\$/\1/" -e 's/^"\(.*\)"$/\1/' | sort -u
    )
    local samples=(
        "{{ event.body | json(indent=2) }}"
        "{{ event.body.repository | yaml }}"
        "{{ '{\"a\": [1, 2]}' | fromjson }}"
        "{{ 'hello' | b64encode | b64decode }}"
        "{{ event.raw | hmac_sha256(secrets.TOKEN) }}"
        "{{ event.raw | sha256 }}"
        "{{ 1700000000.25 | date('%H:%M:%S%.3f') }}"
        "{{ event.received_at | date(format='%Y-%m-%d') }}"
        "{{ event.body | jsonpath('\$.commits[*].id') }}"
        "{{ jsonpath(event.body, '\$..name') }}"
        "{{ now() }}"
        "{% for c in event.body.commits %}{{ loop.index }}:{{ c.id[:7] }} {% endfor %}"
        "{% if vars.count > 2 %}many{% elif vars.count %}some{% else %}none{% endif %}"
        "{{ event.body.commits | map(attribute='id') | join(',') }}"
        "{% set x = vars.list | sum %}{{ x * 2 }}"
        "{% macro m(a) %}[{{ a }}]{% endmacro %}{{ m(event.params.tenant) }}"
        "{{ steps.build.output.code == 200 and not event.body.deleted }}"
        "{{ event.headers['x-github-event'] | default('push') | upper }}"
        "{{ vars.map | dictsort | first }}"
        "{# a comment #}{{- vars.branch -}}"
        "{% set ns = namespace(v=[1]) %}{% for i in range(3) %}{% set ns.v = ns.v + ns.v %}{% endfor %}{{ ns.v }}"
        "{% set ns = namespace(v=1) %}{% for i in range(3) %}{% set ns.v = [ns.v] %}{% endfor %}{{ ns.v | tojson }}"
        "{{ ([[1] * 2] * 3) | json }}"
    )
    for line in "${samples[@]}"; do
        n=$((n + 1))
        printf '%s' "$line" >"$dir/sample_$n"
    done
    printf '{{ event.body.a | length }} {{ event.body.b.c }}\0{"a":[1,2],"b":{"c":"d"}}' >"$dir/with_body"
}

seed_routes() {
    local dir="$seeds/routes" patterns
    patterns="$(cat workflows/*.yaml examples/*/workflow.yaml tests/workflows/*/*.yaml docs/language.md |
        sed -n 's/^[[:space:]]*path:[[:space:]]*\(\/[^[:space:]#]*\).*$/\1/p' | tr -d "\"'" | sort -u | head -16)"
    printf '%s\n\n/hooks/github\n/hooks/acme/orders/\n/hooks/acme%%20co/orders\n/\n' "$patterns" >"$dir/project"
    printf '/hooks/{tenant}/orders\n/hooks/{tenant}/{kind}\n/hooks/static/orders\n/\n\n/hooks/static/orders\n/hooks/a%%2Fb/orders\n/hooks//orders\n/hooks/x/y/\n' >"$dir/overlap"
}

build_seeds() {
    rm -rf "$seeds"
    local target
    for target in "${all_targets[@]}"; do
        mkdir -p "$seeds/$target" "$fuzz_dir/corpus/$target"
    done
    seed_workflow
    seed_body
    seed_verify
    seed_template
    seed_routes
}

# The numbers of a run, from libFuzzer's last status line and its final stats.
summary() {
    local target="$1" log="$2" elapsed="$3" status execs cov ft corpus
    status="$(grep -E '^#[0-9]+' "$log" | tail -n 1)"
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
    cov="$(echo "$status" | sed -n 's/.* cov: \([0-9]*\).*/\1/p')"
    ft="$(echo "$status" | sed -n 's/.* ft: \([0-9]*\).*/\1/p')"
    corpus="$(echo "$status" | sed -n 's/.* corp: \([^ ]*\).*/\1/p')"
    printf '%-9s %6ss  execs %-10s cov %-6s ft %-7s corpus %-14s files %s\n' \
        "$target" "$elapsed" "${execs:-?}" "${cov:-?}" "${ft:-?}" "${corpus:-?}" \
        "$(find "$fuzz_dir/corpus/$target" -type f | wc -l)"
}

[ -f "$fuzz_dir/Cargo.lock" ] || cp Cargo.lock "$fuzz_dir/Cargo.lock"
build_seeds
mkdir -p "$logs"
# Release with debug assertions: fast, and overflow checks still on. Every target at once.
echo "== building the fuzz targets"
nice -n "$niceness" cargo "+$toolchain" fuzz build -O -a

# The binaries are run directly: `cargo fuzz run` would build again (with other settings)
# before every target.
host="$(rustc "+$toolchain" -vV | sed -n 's/^host: //p')"
failed=()
results=()
for target in "${targets[@]}"; do
    log="$logs/$target.log"
    mkdir -p "$fuzz_dir/artifacts/$target"
    echo "== $target: ${seconds}s, log in $log"
    started=$(date +%s)
    # One process, one job: the machine is shared. Extra FUZZ_ARGS are split on spaces.
    # shellcheck disable=SC2086
    if nice -n "$niceness" "$fuzz_dir/target/$host/release/$target" \
        "$fuzz_dir/corpus/$target" "$seeds/$target" \
        -max_total_time="$seconds" -max_len="$(max_len "$target")" \
        -rss_limit_mb=2048 -timeout=10 -dict="$fuzz_dir/dict/$target.dict" \
        -artifact_prefix="$fuzz_dir/artifacts/$target/" -print_final_stats=1 \
        ${FUZZ_ARGS:-} >"$log" 2>&1; then
        :
    else
        failed+=("$target")
    fi
    results+=("$(summary "$target" "$log" "$(($(date +%s) - started))")")
    echo "${results[-1]}"
done

echo "== summary"
printf '%s\n' "${results[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "== failed: ${failed[*]}; inputs in $fuzz_dir/artifacts/<target>/, logs in $logs/" >&2
    exit 1
fi
