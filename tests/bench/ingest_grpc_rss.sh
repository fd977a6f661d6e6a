#!/usr/bin/env bash
# ingest_grpc_rss.sh -- the aggregator's peak memory and ingest rate under sidecar-like clients
# over gRPC (docs/benchmarks.md, "aggregator gRPC read buffers").
#
# For each round (--runs), each configuration (--configs) and each load (--loads), on loopback
# with a fresh temp state dir: starts sentinel-aggregator with grpc.tcp_read_chunks and
# ingest.window as the configuration says (nothing else changed), waits for "ingest listening",
# runs sentinel-bench-ingest-grpc against it for --seconds, then reads the aggregator's VmHWM
# (/proc/PID/status) and utime + stime (/proc/PID/stat) and stops it with SIGTERM.
# Configurations run interleaved within a round (the machine's speed drifts between rounds).
#
#   configuration  ON:WINDOW  -- ON true/false for grpc.tcp_read_chunks, WINDOW for ingest.window
#                  (bytes; 0: gRPC's own flow control). Default "true:0 false:0 false:65536".
#   load           CLIENTSxEVENTS -- clients (a connection and one call in flight each) and
#                  events per batch. Default "64x2000 16x16384" (the sidecar's batch.max_events;
#                  the aggregator's ingest.max_batch_events, the largest batch it takes).
#
# Prints one line per run, then per (configuration, load) the median peak RSS (MiB), events per
# second (wall) and the aggregator's CPU microseconds per event. --quick (ctest
# bench.ingest_grpc_quick): one run of the default configuration, 2 clients x 2000 events for
# 1 s; asserts that batches were acknowledged, none failed, and the aggregator exited 0 --
# nothing about memory or time.
#
# Usage: tests/bench/ingest_grpc_rss.sh [--quick] [--runs N] [--seconds S] [--configs "..."]
#          [--loads "..."] [--build-dir DIR] [--aggregator P --bench P]
# Exit status: 0 when every run acknowledged batches and none failed, 1 otherwise, 2 on bad usage.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
quick=0
runs=3
seconds=10
configs="true:0 false:0 false:65536"
loads="64x2000 16x16384"
build_dir=""
aggregator="" bench=""

die_usage() {
    echo "ingest_grpc_rss.sh: $*" >&2
    exit 2
}

while [ $# -gt 0 ]; do
    case "$1" in
    --quick) quick=1 ;;
    --runs) runs=${2:-}; shift ;;
    --seconds) seconds=${2:-}; shift ;;
    --configs) configs=${2:-}; shift ;;
    --loads) loads=${2:-}; shift ;;
    --build-dir) build_dir=${2:-}; shift ;;
    --aggregator) aggregator=${2:-}; shift ;;
    --bench) bench=${2:-}; shift ;;
    --help | -h) sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die_usage "unknown option $1 (see --help)" ;;
    esac
    shift
done
case "$runs" in '' | *[!0-9]* | 0) die_usage "--runs must be a positive integer" ;; esac
case "$seconds" in '' | *[!0-9]* | 0) die_usage "--seconds must be a positive integer" ;; esac
[ "$runs" -le 20 ] || die_usage "--runs: at most 20"
[ "$seconds" -le 120 ] || die_usage "--seconds: at most 120"
for c in $configs; do
    case "$c" in true:[0-9]* | false:[0-9]*) ;; *) die_usage "bad configuration $c (ON:WINDOW)" ;; esac
done
for l in $loads; do
    case "$l" in [1-9]*x[1-9]*) ;; *) die_usage "bad load $l (CLIENTSxEVENTS)" ;; esac
done
if [ "$quick" = 1 ]; then
    runs=1
    seconds=1
    configs="false:65536"
    loads="2x2000"
fi
[ -n "$build_dir" ] || build_dir="$repo/build"
: "${aggregator:=$build_dir/aggregator/sentinel-aggregator}"
: "${bench:=$build_dir/tests/bench/sentinel-bench-ingest-grpc}"
for b in "$aggregator" "$bench"; do
    [ -x "$b" ] || die_usage "not an executable: $b (build it, or pass --build-dir)"
done

work=$(mktemp -d "${TMPDIR:-/tmp}/sentinel-ingest-rss.XXXXXX")
agg_pid=""
cleanup() {
    if [ -n "$agg_pid" ]; then
        kill -KILL "$agg_pid" 2> /dev/null || true
        wait "$agg_pid" 2> /dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

fail=0
results="$work/results"
: > "$results"
# run ON WINDOW CLIENTS EVENTS: one aggregator, one load; appends a line to $results.
run() {
    local on=$1 win=$2 clients=$3 events=$4 d="$work/run" port="" out hwm cpu st=0
    rm -rf "$d"
    mkdir -p "$d"
    # The environment's GRPC_EXPERIMENTS would win over the setting: not inherited.
    env -u GRPC_EXPERIMENTS "$aggregator" --set ingest.endpoint=127.0.0.1:0 \
        --set "state.data_dir=$d/state" --set http.endpoint=127.0.0.1:0 \
        --set "grpc.tcp_read_chunks=$on" --set "ingest.window=$win" > "$d/agg.log" 2>&1 &
    agg_pid=$!
    for _ in $(seq 1 150); do
        port=$(sed -n 's/.*"msg":"ingest listening".*"port":\([0-9]*\).*/\1/p' "$d/agg.log")
        [ -n "$port" ] && break
        kill -0 "$agg_pid" 2> /dev/null || break
        sleep 0.1
    done
    if [ -z "$port" ]; then
        echo "ingest_grpc_rss.sh: the aggregator did not start:" >&2
        tail -5 "$d/agg.log" >&2
        fail=1
        return
    fi
    out=$("$bench" --target "127.0.0.1:$port" --clients "$clients" --events "$events" \
        --seconds "$seconds") || fail=1
    hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$agg_pid/status")
    cpu=$(awk '{print $14 + $15}' "/proc/$agg_pid/stat")
    kill -TERM "$agg_pid"
    wait "$agg_pid" || st=$?
    agg_pid=""
    if [ "$st" != 0 ]; then
        echo "ingest_grpc_rss.sh: the aggregator exited $st" >&2
        fail=1
    fi
    echo "config=$on:$win load=${clients}x$events hwm_kib=$hwm cpu_ticks=$cpu $out" | tee -a "$results"
}

for _ in $(seq 1 "$runs"); do
    for c in $configs; do
        for l in $loads; do
            run "${c%%:*}" "${c#*:}" "${l%%x*}" "${l#*x}"
        done
    done
done

# Medians per (configuration, load).
tick=$(getconf CLK_TCK)
echo
echo "configuration (tcp_read_chunks:window)  load  runs  peak RSS MiB (median)  events/s  CPU us/event"
for c in $configs; do
    for l in $loads; do
        grep "^config=$c load=$l " "$results" | awk -v c="$c" -v l="$l" -v tick="$tick" '
            function med(a, n,    i, j, t) {
                for (i = 2; i <= n; i++)
                    for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
                return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
            }
            {
                for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
                n++
                h[n] = v["hwm_kib"] / 1024
                e[n] = v["events_per_s"]
                ev = v["ok"] * v["events_per_batch"]
                u[n] = ev > 0 ? v["cpu_ticks"] * 1e6 / tick / ev : 0
            }
            END {
                if (n > 0)
                    printf "%-40s %-10s %d  %.1f  %.0f  %.2f\n", c, l, n, med(h, n), med(e, n), med(u, n)
            }'
    done
done
if [ "$quick" = 1 ]; then
    grep -q " ok=[1-9]" "$results" || fail=1
    grep -q " failed=0 " "$results" || fail=1
fi
exit "$fail"
