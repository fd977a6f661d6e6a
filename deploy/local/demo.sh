#!/usr/bin/env bash
# make demo: LLM-Sentinel live on one machine. Starts sentinel-aggregator (embedded state, no other
# service), sentinel-sidecar pointed at it, and the sample LLM application (deploy/local/demo-app:
# two services, three models, the official OpenTelemetry JS SDK exporting OTLP/gRPC to the
# sidecar) with incidents on a schedule; shows each incident and each alert as it happens, and a
# summary at the end of which incident was caught. Everything listens on 127.0.0.1 only.
#
#   deploy/local/demo.sh [BUILD_DIR] [--short] [--duration SECONDS] [--summary-json FILE]
#
#   BUILD_DIR        where sentinel-aggregator and sentinel-sidecar were built (default: build;
#                    relative to the repository). Nothing is built here: `make demo` builds first.
#   --short          the 90 s schedule (demo-app/scenario-short.json) instead of the 6 minute one
#   --duration S     stop after S seconds (also DEMO_DURATION); incidents past it do not happen
#   --summary-json F write the summary as JSON to F (also DEMO_SUMMARY_JSON)
#   DEMO_ANY_PORTS=1 use any free ports rather than the usual 4317, 8081, 9090 and 8080
#   DEMO_KEEP=1      keep the logs and state in the temporary directory
#
# Ctrl-C (or SIGTERM) stops the app (which flushes its exporter), then the sidecar (which drains to
# the aggregator), then the aggregator, prints the summary and removes the temporary directory.
# Exit status: 0 when every program started and stopped cleanly, 1 otherwise, 2 for bad usage.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE=$ROOT/deploy/local
APP_DIR=$HERE/demo-app

usage() {
    sed -n '8,19p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit "${1:-2}"
}

BUILD=build
SHORT=0
DURATION=${DEMO_DURATION:-}
SUMMARY_JSON=${DEMO_SUMMARY_JSON:-}
while [ $# -gt 0 ]; do
    case $1 in
    --short) SHORT=1 ;;
    --duration) [ $# -ge 2 ] || usage; DURATION=$2; shift ;;
    --duration=*) DURATION=${1#*=} ;;
    --summary-json) [ $# -ge 2 ] || usage; SUMMARY_JSON=$2; shift ;;
    --summary-json=*) SUMMARY_JSON=${1#*=} ;;
    -h | --help) usage 0 ;;
    -*) echo "demo: unknown option $1" >&2; usage ;;
    *) BUILD=$1 ;;
    esac
    shift
done
case $BUILD in
/*) BUILD_PATH=$BUILD ;;
*) BUILD_PATH=$ROOT/$BUILD ;;
esac
if [ -n "$DURATION" ] && ! [[ $DURATION =~ ^[0-9]+([.][0-9]+)?$ && $DURATION != 0 ]]; then
    echo "demo: the duration must be a positive number of seconds (got \"$DURATION\")" >&2
    exit 2
fi
AGGREGATOR=$BUILD_PATH/aggregator/sentinel-aggregator
SIDECAR=$BUILD_PATH/sidecar/sentinel-sidecar
for bin in "$AGGREGATOR" "$SIDECAR"; do
    if [ ! -x "$bin" ]; then
        echo "demo: $bin is missing; run 'make build' first" >&2
        exit 1
    fi
done
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "demo: node and npm are needed for the sample application (deploy/local/install-deps.sh)" >&2
    exit 1
fi
if [ "$SHORT" = 1 ]; then
    SCENARIO=$APP_DIR/scenario-short.json
    WARMUP=15
else
    SCENARIO=$APP_DIR/scenario.json
    WARMUP=30
fi

# The app's packages, pinned by its package-lock.json; installed once, again when the lock changes.
if [ ! -f "$APP_DIR/node_modules/.package-lock.json" ] ||
    [ "$APP_DIR/package-lock.json" -nt "$APP_DIR/node_modules/.package-lock.json" ]; then
    echo "demo: installing the sample app's packages (npm ci in deploy/local/demo-app)"
    (cd "$APP_DIR" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/sentinel-demo.XXXXXX")
AGG_PID= SC_PID= APP_PID= VIEW_PID=
STATUS=0

# Ends whatever is still running (an error path) and removes the temporary directory.
cleanup() {
    local pid
    for pid in $APP_PID $SC_PID $AGG_PID $VIEW_PID; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in $APP_PID $SC_PID $AGG_PID $VIEW_PID; do
        wait "$pid" 2>/dev/null || true
    done
    if [ "${DEMO_KEEP:-0}" = 1 ]; then
        echo "demo: logs kept in $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT

# Waits until FILE has a line matching PATTERN, while PID runs, for at most SECONDS.
wait_for() {
    local file=$1 pattern=$2 pid=$3 seconds=$4 what=$5 i=0
    until grep -q "$pattern" "$file" 2>/dev/null; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "demo: $what exited at start:" >&2
            tail -n 5 "$file" >&2
            return 1
        fi
        i=$((i + 1))
        if [ $i -gt $((seconds * 10)) ]; then
            echo "demo: $what did not start within $seconds s:" >&2
            tail -n 5 "$file" >&2
            return 1
        fi
        sleep 0.1
    done
}

# Sends SIGTERM to PID and waits for it; prints and remembers a bad exit status.
stop() {
    local pid=$1 what=$2 rc=0
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" || rc=$?
    if [ $rc -ne 0 ]; then
        echo "demo: $what exited with status $rc (log: $3)" >&2
        STATUS=1
    fi
}

# Free loopback ports, the usual ones when they are free: API, ingest, OTLP/gRPC, sidecar admin.
if [ "${DEMO_ANY_PORTS:-0}" = 1 ]; then
    read -r P_HTTP P_INGEST P_OTLP P_ADMIN < <(node "$HERE/demo-view.mjs" ports 4)
else
    read -r P_HTTP P_INGEST P_OTLP P_ADMIN < <(node "$HERE/demo-view.mjs" ports 4 8080 9090 4317 8081)
fi

# Each program runs in a session of its own (setsid), so a Ctrl-C in the terminal reaches only this
# script, which then stops them in order: the app flushes, the sidecar drains to the aggregator.
# SENTINEL_HTTP_ENDPOINT and SENTINEL_DATA_DIR are the aggregator's API address and embedded state
# (contracts). The demo compresses hours into seconds, so the windowed checks are compressed too
# (docs/aggregator.md, Detection): the error-rate window is 20 s instead of 60 s so the short
# error burst stands out, and the drift CUSUM runs on 5 s interval means (10 calls at least,
# verdicts after 6 intervals, a reference of about 12) instead of 60 s ones, or the 40 s cost
# drift would end before its first interval closed. The contract's k and h are kept. (The short
# schedule's drift grows 8 % per 10 s: at 5 % it was caught after 37 s of its 40.) The demo's
# throughput drop halves each call's generation speed (tokens/s per call) at an unchanged call
# rate, which only the per-call tokens_per_second metric sees -- off by default (the aggregator
# judges throughput by tokens per wall-clock bucket) -- so the demo turns it on. The drift check
# runs on cost only: no latency drift is scheduled, and a reference of twelve 5 s intervals is
# too short to hold latency's spread (claude-sonnet-4 at 1-2 calls/s drew an 8 % "drift" in one
# run of the 90 s test); in a real deployment the 60 s intervals and hour-long reference apply.
SENTINEL_HTTP_ENDPOINT=127.0.0.1:$P_HTTP SENTINEL_DATA_DIR=$WORK/data \
    setsid "$AGGREGATOR" --log-format json --set ingest.endpoint=127.0.0.1:"$P_INGEST" \
    --set engine.error_rate.window=20s --set engine.error_rate.min_calls=10 \
    --set engine.detect.cusum.interval=5s --set engine.detect.cusum.min_calls=10 \
    --set engine.detect.cusum.min_samples=6 --set engine.detect.cusum.reference=12 \
    --set engine.metrics.tokens_per_second.enabled=true \
    --set engine.metrics.latency_ms.cusum.enabled=false \
    >"$WORK/aggregator.log" 2>&1 &
AGG_PID=$!
mkdir -p "$WORK/data"
wait_for "$WORK/aggregator.log" '"msg":"ingest listening"' "$AGG_PID" 20 sentinel-aggregator

# The sidecar's per-call Z-score runs at 5 sigma here, not the default 3: at 30 calls/s over
# four (service, model) baselines a 3-sigma test on every call of a log-normal workload fires on
# ordinary calls every few seconds, while every scheduled incident is past 10 sigma.
setsid "$SIDECAR" --log-format json --aggregator 127.0.0.1:"$P_INGEST" --spool-dir "$WORK/spool" \
    --set otlp.grpc_endpoint=127.0.0.1:"$P_OTLP" --set otlp.http_endpoint=off \
    --set admin.endpoint=127.0.0.1:"$P_ADMIN" --set sidecar.name=demo \
    --set local.zscore.threshold=5 --set local.zscore.high=6 --set local.zscore.critical=8 \
    --set local.zscore.min_samples=50 \
    >"$WORK/sidecar.log" 2>&1 &
SC_PID=$!
wait_for "$WORK/sidecar.log" '"msg":"sentinel-sidecar started"' "$SC_PID" 20 sentinel-sidecar

if (exec 3<>"/dev/tcp/127.0.0.1/$P_HTTP") 2>/dev/null; then
    API_NOTE=""
else
    API_NOTE="  (not served by this build yet)"
fi
MINUTES=$(node -e 'const s=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8"));const d=Number(process.argv[2]||s.duration_s);console.log(d>=120?`${(d/60).toFixed(d%60?1:0)} minutes`:`${d} s`)' "$SCENARIO" "$DURATION")
echo "== LLM-Sentinel demo: live =="
echo "  app         deploy/local/demo-app: chatbot-api and rag-search calling gpt-4o, claude-sonnet-4 and"
echo "              gemini-2.5-flash; OpenTelemetry JS SDK -> OTLP/gRPC 127.0.0.1:$P_OTLP; incidents from"
echo "              ${SCENARIO#"$ROOT"/}"
echo "  sidecar     sentinel-sidecar       metrics   http://127.0.0.1:$P_ADMIN/metrics"
echo "  aggregator  sentinel-aggregator    ingest    127.0.0.1:$P_INGEST"
echo "                                     API       http://127.0.0.1:$P_HTTP/api/v1/anomalies$API_NOTE"
echo "                                     dashboard http://127.0.0.1:$P_HTTP/$API_NOTE"
echo "  runs $MINUTES; Ctrl-C stops it early. LOCAL = the sidecar's per-call check; FIRING/RESOLVED = the aggregator."
echo

setsid node "$HERE/demo-view.mjs" watch --dir "$WORK" --truth "$WORK/truth.json" --warmup "$WARMUP" \
    ${SUMMARY_JSON:+--summary-json "$SUMMARY_JSON"} &
VIEW_PID=$!

OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$P_OTLP OTEL_EXPORTER_OTLP_PROTOCOL=grpc \
    setsid node "$APP_DIR/app.mjs" --scenario "$SCENARIO" --truth "$WORK/truth.json" \
    ${DURATION:+--duration "$DURATION"} >"$WORK/app.log" 2>&1 &
APP_PID=$!

# Until the app stops by itself; a Ctrl-C or SIGTERM asks it to stop (it flushes its exporter).
INTERRUPTED=0
trap 'INTERRUPTED=1' INT TERM
APP_RC=
while [ -z "$APP_RC" ]; do
    rc=0
    wait "$APP_PID" || rc=$?
    if [ "$INTERRUPTED" = 1 ]; then
        INTERRUPTED=2
        kill -TERM "$APP_PID" 2>/dev/null || true
        continue
    fi
    # wait returns >128 when a trapped signal interrupted it while the app still runs.
    if [ $rc -gt 128 ] && kill -0 "$APP_PID" 2>/dev/null; then
        continue
    fi
    APP_RC=$rc
done
trap '' INT TERM
if [ "$APP_RC" -ne 0 ]; then
    echo "demo: the demo app exited with status $APP_RC (log: app.log)" >&2
    STATUS=1
fi
APP_PID=
for p in "$SC_PID:sentinel-sidecar" "$AGG_PID:sentinel-aggregator"; do
    if ! kill -0 "${p%%:*}" 2>/dev/null; then
        echo "demo: ${p#*:} stopped during the demo" >&2
        STATUS=1
    fi
done
stop "$SC_PID" sentinel-sidecar sidecar.log
SC_PID=
stop "$AGG_PID" sentinel-aggregator aggregator.log
AGG_PID=
touch "$WORK/stop"
rc=0
wait "$VIEW_PID" || rc=$?
VIEW_PID=
[ $rc -eq 0 ] || STATUS=1
exit $STATUS
