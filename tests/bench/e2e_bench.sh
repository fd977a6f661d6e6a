#!/usr/bin/env bash
# e2e_bench.sh -- end to end: how long from a span's export to its alert at each sink (the
# webhook and Prometheus Alertmanager), at a steady background load of 1 K and 50 K spans/s.
#
# Per rate, on loopback and free ports, with fresh temp state:
#   e2e_receiver.mjs     one HTTP server stamping every request on arrival (wall clock):
#                        /webhook for the aggregator's webhook sink, /alertmanager for
#                        Alertmanager's own webhook receiver
#   prometheus-alertmanager   route: group_by ['...'] (every alert its own group),
#                        group_wait 0s (the smallest it accepts: the first notification of a
#                        new group is sent at once), group_interval 1s, repeat_interval 1h
#   sentinel-aggregator  webhook sink -> the receiver, Alertmanager sink -> Alertmanager
#   sentinel-sidecar     shipping to the aggregator (defaults: 200 ms flush, zstd 3)
#   sentinel-loadgen     OTLP/gRPC GenAI spans at the rate (512 spans/request, the OTel SDK's
#                        batch size, 4 services x 5 models, realistic spread: it raises alerts
#                        of its own, counted as "other alerts") plus --spikes N: services
#                        spike-000 ... each warmed up with 40 calls alike at the start, then,
#                        from 8 s in (past the background's warm-up alerts, which would
#                        otherwise use up the sinks' rate limit), one call 50x slower, one
#                        every --interval; --marks records each spike's trace id and the wall
#                        time its request was handed to gRPC.
# Each spike is on a service of its own, so each is a NEW alert (the de-duplication key is
# service, model, anomaly type) and a new Alertmanager group. e2e_match.mjs matches each spike
# with the first alert at each sink (webhook: by the trace id in the alert's context;
# Alertmanager: by the service label) and gives export -> arrival delays, p50/p99/max.
#
# --runs N (default 3) starts the whole chain afresh N times per rate and pools the spikes.
# Prints a table; full mode appends a dated section to docs/benchmarks.md. --quick (ctest
# bench.e2e_quick): 1 K spans/s only, 3 spikes; asserts that every spike was matched by an
# alert at both sinks -- nothing about time.
#
# Usage: tests/bench/e2e_bench.sh [--quick] [--runs N] [--spikes N] [--interval SECONDS] [--rates "R ..."]
#          [--build-dir DIR] [--sidecar P --aggregator P --loadgen P] [--no-append] [--docs FILE] [--keep]
# (--keep leaves the temp dir with every log, the marks and the received alerts.)
# Exit status: 0 when every spike reached both sinks, 1 otherwise or when a step failed, 2 on bad
# usage, 77 (skipped) without node, curl or /usr/bin/prometheus-alertmanager
# (deploy/local/install-deps.sh installs them).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
quick=0
runs=3
spikes=30
interval=1
rates="1000 50000"
build_dir=""
sidecar="" aggregator="" loadgen=""
append=1
keep=0
docs="$repo/docs/benchmarks.md"
am_bin=${SENTINEL_ALERTMANAGER_BIN:-/usr/bin/prometheus-alertmanager}
warm_s=8 # from the start of the load to the first spike (past the warm-up alerts of the background)

die_usage() {
    echo "e2e_bench.sh: $*" >&2
    exit 2
}

while [ $# -gt 0 ]; do
    case "$1" in
    --quick) quick=1 ;;
    --runs) runs=${2:?}; shift ;;
    --spikes) spikes=${2:?}; shift ;;
    --interval) interval=${2:?}; shift ;;
    --rates) rates=${2:?}; shift ;;
    --build-dir) build_dir=${2:?}; shift ;;
    --sidecar) sidecar=${2:?}; shift ;;
    --aggregator) aggregator=${2:?}; shift ;;
    --loadgen) loadgen=${2:?}; shift ;;
    --no-append) append=0 ;;
    --keep) keep=1 ;;
    --docs) docs=${2:?}; shift ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
        exit 0
        ;;
    *) die_usage "unknown option $1 (see --help)" ;;
    esac
    shift
done
if [ "$quick" = 1 ]; then
    runs=1
    spikes=3
    rates=1000
    append=0
fi
case "$runs" in '' | *[!0-9]* | 0) die_usage "--runs must be a positive integer" ;; esac
[ "$runs" -le 10 ] || die_usage "--runs: at most 10"
case "$spikes" in '' | *[!0-9]* | 0) die_usage "--spikes must be a positive integer" ;; esac
case "$interval" in '' | *[!0-9]* | 0) die_usage "--interval must be a positive integer (s)" ;; esac
[ "$spikes" -le 200 ] || die_usage "--spikes: at most 200"
[ "$interval" -le 60 ] || die_usage "--interval: at most 60 s"
for r in $rates; do
    case "$r" in '' | *[!0-9]* | 0) die_usage "--rates: positive integers (spans/s)" ;; esac
    [ "$r" -le 200000 ] || die_usage "--rates: at most 200000 spans/s"
done

[ -n "$build_dir" ] || build_dir="$repo/build"
: "${sidecar:=$build_dir/sidecar/sentinel-sidecar}"
: "${aggregator:=$build_dir/aggregator/sentinel-aggregator}"
: "${loadgen:=$build_dir/tests/load/sentinel-loadgen}"
for b in "$sidecar" "$aggregator" "$loadgen"; do
    [ -x "$b" ] || die_usage "not an executable: $b (build it, or pass --build-dir)"
done
# Missing tools: exit 77, which ctest reports as skipped.
if ! command -v node > /dev/null || ! command -v curl > /dev/null || [ ! -x "$am_bin" ]; then
    echo "e2e_bench.sh: SKIP: needs node, curl and $am_bin (deploy/local/install-deps.sh)" >&2
    exit 77
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/sentinel-e2e.XXXXXX")
pids=()
cleanup() {
    stop_all
    if [ "$keep" = 1 ]; then
        echo "e2e_bench.sh: logs kept in $work" >&2
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM

fail() {
    echo "e2e_bench.sh: FAIL: $*" >&2
    exit 1
}

# log_port FILE PATTERN: the "port" of the first line of FILE holding PATTERN (JSON logs of the
# sentinel programs, or "port=N" of the receiver), waiting up to 20 s.
log_port() {
    local i p
    for i in $(seq 1 200); do
        p=$(grep -F -- "$2" "$1" 2> /dev/null | head -n 1 |
            sed -n 's/.*"port":\([0-9][0-9]*\).*/\1/p; s/^port=\([0-9][0-9]*\)$/\1/p' || true)
        if [ -n "$p" ]; then
            echo "$p"
            return 0
        fi
        sleep 0.1
    done
    echo "no '$2' in $1:" >&2
    tail -n 5 "$1" >&2 || true
    return 1
}

# free_port: a TCP port on 127.0.0.1 that was free a moment ago (Alertmanager cannot listen on
# port 0 and tell us which one it got).
free_port() {
    node -e 'const s = require("net").createServer();
        s.listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); });'
}

# stop_all: SIGTERM to everything started, wait up to 15 s each, then SIGKILL.
stop_all() {
    local p i
    for p in "${pids[@]+"${pids[@]}"}"; do
        kill -TERM "$p" 2> /dev/null || true
    done
    for p in "${pids[@]+"${pids[@]}"}"; do
        for i in $(seq 1 150); do
            kill -0 "$p" 2> /dev/null || break
            sleep 0.1
        done
        kill -KILL "$p" 2> /dev/null || true
        wait "$p" 2> /dev/null || true
    done
    pids=()
}

# run_rate RATE RUN: the whole chain at RATE spans/s, started afresh; leaves e2e_match.mjs's
# JSON in $work/RATE/RUN/match.json and the loadgen's report in .../loadgen.json.
run_rate() {
    local rate=$1 dir="$work/$1/$2"
    mkdir -p "$dir/state" "$dir/am" "$dir/spool"
    local recv="$dir/received.jsonl" marks="$dir/marks.jsonl"
    : > "$recv"

    node "$here/e2e_receiver.mjs" "$recv" > "$dir/receiver.out" 2> "$dir/receiver.err" &
    pids+=($!)
    local rport
    rport=$(log_port "$dir/receiver.out" "port=") || fail "the receiver did not start"

    local amport
    amport=$(free_port)
    cat > "$dir/am/alertmanager.yml" << EOF
route:
  receiver: bench
  group_by: ['...']
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: bench
    webhook_configs:
      - url: http://127.0.0.1:$rport/alertmanager
        send_resolved: false
EOF
    "$am_bin" --config.file="$dir/am/alertmanager.yml" --storage.path="$dir/am/data" \
        --web.listen-address="127.0.0.1:$amport" --cluster.listen-address= --log.level=warn \
        > "$dir/alertmanager.log" 2>&1 &
    pids+=($!)
    local i
    for i in $(seq 1 150); do
        curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$amport/-/ready" && break
        sleep 0.1
    done
    curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$amport/-/ready" ||
        fail "alertmanager did not start: $(tail -n 3 "$dir/alertmanager.log")"

    "$aggregator" --set state.data_dir="$dir/state" --set http.endpoint=127.0.0.1:0 \
        --set ingest.endpoint=127.0.0.1:0 \
        --set sinks.webhook.url="http://127.0.0.1:$rport/webhook" \
        --set sinks.alertmanager.url="http://127.0.0.1:$amport" \
        > "$dir/aggregator.log" 2>&1 &
    pids+=($!)
    local agg_port
    agg_port=$(log_port "$dir/aggregator.log" '"ingest listening"') ||
        fail "the aggregator did not start"

    SENTINEL_OTLP_GRPC_ENDPOINT=127.0.0.1:0 SENTINEL_OTLP_HTTP_ENDPOINT=off \
        SENTINEL_ADMIN_ENDPOINT=127.0.0.1:0 SENTINEL_AGGREGATOR="127.0.0.1:$agg_port" \
        SENTINEL_SPOOL_DIR="$dir/spool" SENTINEL_SIDECAR_NAME="e2e-bench" \
        "$sidecar" > "$dir/sidecar.log" 2>&1 &
    pids+=($!)
    local otlp
    otlp=$(log_port "$dir/sidecar.log" '"OTLP/gRPC listening"') || fail "the sidecar did not start"

    local duration=$((warm_s + (spikes - 1) * interval + 2))
    echo "rate $rate spans/s, run $2/$runs: $spikes spikes, one every ${interval}s," \
        "${duration}s of load" >&2
    "$loadgen" --protocol grpc --target "127.0.0.1:$otlp" --rate "$rate" --batch 512 \
        --concurrency 8 --duration "${duration}s" --spikes "$spikes" \
        --spike-interval "${interval}s" --set spikes.start="${warm_s}s" --marks "$marks" \
        --json > "$dir/loadgen.json" 2> "$dir/loadgen.err" ||
        fail "loadgen: $(tail -n 3 "$dir/loadgen.err")"
    [ "$(wc -l < "$marks")" = "$spikes" ] || fail "loadgen marked $(wc -l < "$marks") spikes, not $spikes"

    # Wait (at most 30 s) until every spike reached both sinks.
    local m
    for i in $(seq 1 60); do
        node "$here/e2e_match.mjs" "$marks" "$recv" > "$dir/match.json"
        m=$(sed -n 's/.*"unmatched":\[\(.*\)\],"early".*/\1/p' "$dir/match.json")
        [ -z "$m" ] && break
        sleep 0.5
    done
    stop_all
}

jnum() { # jnum FILE KEY [NTH]: the NTH (default 1st) number after "KEY": in FILE
    grep -o "\"$2\":[-0-9.eE+]*" "$1" | sed -n "${3:-1}p" | sed 's/.*://'
}

# sinkval FILE SINK KEY: a number of SINK's object in e2e_match.mjs's output.
sinkval() {
    node -e 'const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
        const v = r[process.argv[2]][process.argv[3]];
        console.log(v === null ? "n/a" : Array.isArray(v) ? v.join(" / ") : v);' "$@"
}

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
status=0
table="$work/table.md"
{
    echo "| background load | sink | spikes matched | p50 ms | p99 ms | max ms | p50 of each run, ms |"
    echo "|---|---|---|---|---|---|---|"
} > "$table"
for rate in $rates; do
    sent=""
    for run in $(seq 1 "$runs"); do
        run_rate "$rate" "$run"
        sent="$sent${sent:+, }$(jnum "$work/$rate/$run/loadgen.json" spans_per_s)"
    done
    f="$work/$rate/all.json"
    node "$here/e2e_match.mjs" --combine "$work/$rate"/*/match.json > "$f"
    for sink in webhook alertmanager; do
        matched=$(sinkval "$f" "$sink" matched)
        echo "| $rate spans/s (sent: $sent/s) | $sink | $matched / $((spikes * runs)) |" \
            "$(sinkval "$f" "$sink" p50_ms) | $(sinkval "$f" "$sink" p99_ms) |" \
            "$(sinkval "$f" "$sink" max_ms) | $(sinkval "$f" "$sink" run_p50_ms) |" >> "$table"
        if [ "$matched" != "$((spikes * runs))" ]; then
            echo "e2e_bench.sh: FAIL: rate $rate: $sink got an alert for $matched of" \
                "$((spikes * runs)) spikes" >&2
            status=1
        fi
    done
    other=$(node -e 'const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
        console.log(`${r.other_alerts.webhook} at the webhook, ${r.other_alerts.alertmanager} at Alertmanager; ${r.early.length} before their spike`);' "$f")
    echo "rate $rate: other alerts (background traffic): $other" >&2
    echo "$rate: $other" >> "$work/other.txt"
done
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
cat "$table"

if [ "$append" = 1 ] && [ "$status" = 0 ]; then
    commit=$(git -C "$repo" rev-parse --short HEAD 2> /dev/null || echo unknown)
    cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
    {
        echo
        echo "### End to end, span export to alert at each sink -- $(date -u +%Y-%m-%d) (commit $commit)"
        echo
        echo "Machine: $(nproc) CPUs ($cpu), shared with other work: load average $load_start at the"
        echo "start, $load_end at the end. $runs runs per rate, each with $spikes spikes one every"
        echo "${interval} s, each on a service of its own; \`tests/bench/e2e_bench.sh\` (method above)."
        echo "Delays are wall-clock times from the spike's Export call to the first byte of the alert at"
        echo "the receiver; percentiles over the spikes of all runs."
        echo
        cat "$table"
        echo
        echo "Alerts that were not about a spike (background false positives), per rate, all runs:"
        sed 's/^/- /' "$work/other.txt"
    } >> "$docs"
    echo "appended to $docs" >&2
fi
exit "$status"
