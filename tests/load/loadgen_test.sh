#!/usr/bin/env bash
# loadgen_test.sh -- sentinel-loadgen against the do-nothing receivers of sentinel-bench-null:
# every request sent is answered and counted by the server, on all three servers; the request
# count, the rate and the duration bound a run; non-loopback targets, unreachable targets and bad
# flags fail with the documented exit status and a message; injected spikes (--spikes) are sent
# once each, when due, and marked (--marks) with their trace id and export time.
#
# Usage: loadgen_test.sh LOADGEN NULL_SERVER
set -euo pipefail

loadgen=${1:?usage: loadgen_test.sh LOADGEN NULL_SERVER}
null=${2:?usage: loadgen_test.sh LOADGEN NULL_SERVER}
work=$(mktemp -d "${TMPDIR:-/tmp}/sentinel-loadgen-test.XXXXXX")
server_pid=""
cleanup() {
    if [ -n "$server_pid" ]; then
        kill -TERM "$server_pid" 2> /dev/null || true
        wait "$server_pid" 2> /dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

failures=0
check() { # check DESCRIPTION CONDITION...
    local what=$1
    shift
    if "$@"; then
        echo "ok: $what"
    else
        echo "FAIL: $what" >&2
        failures=$((failures + 1))
    fi
}

# jnum FILE KEY: a number from the loadgen's JSON report.
jnum() {
    sed -n "s/.*\"$2\":\([-0-9.]*\).*/\1/p" "$1" | head -n 1
}

nserver=0
# start MODE: a do-nothing server on a free port; sets server_pid and port.
start() {
    nserver=$((nserver + 1))
    local out="$work/server$nserver.out"
    "$null" --mode "$1" --log-level warn > "$out" 2> "$work/server$nserver.err" &
    server_pid=$!
    server_out=$out
    port=""
    # The shell creates the output file in the child: it may not exist yet on the first look.
    for _ in $(seq 1 300); do
        port=$(sed -n 's/^port=//p' "$out" 2> /dev/null || true)
        [ -n "$port" ] && return 0
        sleep 0.1
    done
    echo "server $1 did not start: $(cat "$work/server$nserver.err")" >&2
    exit 1
}

# stop_server: SIGTERM, waits for the exit; sets served to the requests the server answered
# and server_rc to its exit status.
stop_server() {
    kill -TERM "$server_pid"
    server_rc=0
    wait "$server_pid" || server_rc=$?
    server_pid=""
    served=$(sed -n 's/^requests=//p' "$server_out")
}

# --- every request answered, and counted by the server, on each receiver ---
for mode in grpc grpc-raw http; do
    proto=grpc
    [ "$mode" = http ] && proto=http
    start "$mode"
    rc=0
    "$loadgen" --protocol "$proto" --target "127.0.0.1:$port" --requests 25 --batch 16 \
        --concurrency 4 --duration 60s --json > "$work/$mode.json" 2> "$work/$mode.err" || rc=$?
    stop_server
    check "$mode: exit status 0" [ "$rc" = 0 ]
    check "$mode: 25 requests sent" [ "$(jnum "$work/$mode.json" sent)" = 25 ]
    check "$mode: 25 answered ok" [ "$(jnum "$work/$mode.json" ok)" = 25 ]
    check "$mode: 400 spans acknowledged" [ "$(jnum "$work/$mode.json" spans_ok)" = 400 ]
    check "$mode: the server answered 25 requests (got $served)" [ "$served" = 25 ]
    check "$mode: the server exited 0 on SIGTERM" [ "$server_rc" = 0 ]
    check "$mode: every span gets fresh ids on each send" \
        grep -q '"spans_with_fixed_ids":0,' "$work/$mode.err"
    check "$mode: latency percentiles are ordered" awk -v a="$(jnum "$work/$mode.json" p50)" \
        -v b="$(jnum "$work/$mode.json" p99)" -v c="$(jnum "$work/$mode.json" max)" \
        'BEGIN { exit !(a > 0 && a <= b && b <= c) }'
done

# --- a fixed rate: 2000 spans/s in 100-span requests for 1 s is 20 requests, never more than 21 ---
start grpc
"$loadgen" --target "127.0.0.1:$port" --rate 2000 --batch 100 --duration 1s --json \
    --log-level warn > "$work/rate.json"
stop_server
sent=$(jnum "$work/rate.json" sent)
check "rate: at most 21 requests in 1 s at 20 requests/s (sent $sent)" [ "$sent" -le 21 ]
# Only a floor that proves the pacing sends at all: on a loaded machine the 1 s can pass with few
# requests started (the rate itself is a benchmark figure, not a test assertion).
check "rate: at least 2 requests (sent $sent)" [ "$sent" -ge 2 ]
check "rate: the server saw every one" [ "$served" = "$sent" ]

# --- a labelled scenario (docs/scenarios.md): every event sent once, labels on the wall clock ---
scenario=$(cd "$(dirname "$0")/../data/scenarios/quick" && pwd)/obvious_spike.json
for proto in grpc http; do
    mode=$proto
    start "$mode"
    t0=$(date +%s)
    rc=0
    # 900 simulated seconds at speed 300: 3 s; at speed 0 (http) as fast as the server answers.
    speed=300
    [ "$proto" = http ] && speed=0
    "$loadgen" --protocol "$proto" --target "127.0.0.1:$port" --scenario "$scenario" \
        --labels "$work/labels-$proto.jsonl" --speed "$speed" --batch 256 --json \
        > "$work/scen-$proto.json" 2> "$work/scen-$proto.err" || rc=$?
    t1=$(date +%s)
    stop_server
    events=$(sed -n 's/.*"msg":"scenario sent".*"events":\([0-9]*\).*/\1/p' "$work/scen-$proto.err")
    check "scenario $proto: exit status 0" [ "$rc" = 0 ]
    check "scenario $proto: 8000..10000 events generated (got $events)" \
        [ "${events:-0}" -ge 8000 -a "${events:-0}" -le 10000 ]
    check "scenario $proto: every event acknowledged" \
        [ "$(jnum "$work/scen-$proto.json" spans_ok)" = "$events" ]
    check "scenario $proto: the server answered every request" \
        [ "$served" = "$(jnum "$work/scen-$proto.json" sent)" ]
    check "scenario $proto: one label line" [ "$(wc -l < "$work/labels-$proto.jsonl")" = 1 ]
    check "scenario $proto: the label names the incident" \
        grep -q '"id":"spike","type":"latency_spike","service":"chatbot-api","model":"gpt-4o"' \
        "$work/labels-$proto.jsonl"
    lstart=$(sed -n 's/.*"start_unix_nano":\([0-9]*\).*/\1/p' "$work/labels-$proto.jsonl")
    if [ "$proto" = grpc ]; then
        # 600 simulated seconds in at speed 300: 2 s after the run's start, on the wall clock.
        check "scenario grpc: the label starts 2 s into the run" \
            [ $((lstart / 1000000000)) -ge $((t0 + 1)) -a $((lstart / 1000000000)) -le $((t1 + 1)) ]
        check "scenario grpc: paced by the scenario (took $((t1 - t0)) s)" [ $((t1 - t0)) -ge 2 ]
    else
        # speed 0 keeps the scenario's own times: 2026-01-01T00:10:00Z.
        check "scenario http: the label keeps the scenario's time" [ "$lstart" = 1767226200000000000 ]
    fi
done
rc=0
"$loadgen" --labels "$work/x.jsonl" --duration 1s > /dev/null 2> "$work/nolabels.err" || rc=$?
check "--labels without --scenario is a usage error (status 2)" [ "$rc" = 2 ]
check "... naming scenario.labels" grep -q "scenario.labels" "$work/nolabels.err"
echo '{"duration_s": 10, "services": []}' > "$work/bad-scenario.json"
rc=0
"$loadgen" --scenario "$work/bad-scenario.json" > /dev/null 2> "$work/badscen.err" || rc=$?
check "a bad scenario file is a usage error (status 2)" [ "$rc" = 2 ]
check "... naming the field" grep -q "services" "$work/badscen.err"
rc=0
"$loadgen" --scenario "$scenario" --speed 0.1 > /dev/null 2> "$work/slow.err" || rc=$?
check "a scenario longer than 1 h of wall time is refused (status 2)" [ "$rc" = 2 ]
check "... naming scenario.speed" grep -q "scenario.speed" "$work/slow.err"

# --- injected spikes (--spikes, --marks): one mark per spike, each request sent once ---
for proto in grpc http; do
    start "$proto"
    marks="$work/marks-$proto.jsonl"
    t0=$(date +%s%N)
    rc=0
    "$loadgen" --protocol "$proto" --target "127.0.0.1:$port" --rate 2000 --batch 100 \
        --duration 2s --spikes 3 --spike-interval 300ms --set spikes.start=500ms \
        --set spikes.warmup=20 --marks "$marks" --json > "$work/spikes-$proto.json" \
        2> "$work/spikes-$proto.err" || rc=$?
    t1=$(date +%s%N)
    stop_server
    sent=$(jnum "$work/spikes-$proto.json" sent)
    check "spikes $proto: exit status 0" [ "$rc" = 0 ]
    check "spikes $proto: three marks" [ "$(wc -l < "$marks")" = 3 ]
    for i in 0 1 2; do
        check "spikes $proto: mark $i names spike-00$i and a 32-digit trace id" grep -Eq \
            "^\\{\"spike\":$i,\"service\":\"spike-00$i\",\"model\":\"[^\"]+\",\"trace_id\":\"[0-9a-f]{32}\"" \
            "$marks"
    done
    check "spikes $proto: three distinct trace ids" \
        [ "$(sed -n 's/.*"trace_id":"\([0-9a-f]*\)".*/\1/p' "$marks" | sort -u | wc -l)" = 3 ]
    # Each spike is sent when due, never before: 500, 800, 1100 ms into the run (which
    # started after t0), and in order.
    check "spikes $proto: export times within the run, in order, none before it was due" \
        awk -v t0="$t0" -v t1="$t1" '{ match($0, /"export_unix_nano":[0-9]+/)
            t = substr($0, RSTART + 19, RLENGTH - 19) + 0
            if (t - t0 < (500 + 300 * (NR - 1)) * 1e6 || t > t1 || (NR > 1 && t <= prev)) bad = 1
            prev = t }
            END { exit bad || NR != 3 }' "$marks"
    # 3 warm-up requests of 20 spans and 3 spike requests of one span ride on the paced load.
    check "spikes $proto: the server saw every request (sent $sent, served $served)" \
        [ "$served" = "$sent" ]
    check "spikes $proto: warm-up and spike spans acknowledged on top of the load" \
        [ $(( $(jnum "$work/spikes-$proto.json" spans_ok) % 100 )) = 63 ]
    check "spikes $proto: the log counts 3 spikes sent" \
        grep -q '"msg":"spikes sent","spikes":3,"sent":3,"marks":3' "$work/spikes-$proto.err"
done
rc=0
"$loadgen" --scenario "$scenario" --spikes 2 > /dev/null 2> "$work/spk-scen.err" || rc=$?
check "--spikes with --scenario is a usage error (status 2)" [ "$rc" = 2 ]
check "... naming spikes.count" grep -q "spikes.count" "$work/spk-scen.err"
rc=0
"$loadgen" --marks "$work/m.jsonl" --duration 1s > /dev/null 2> "$work/marks-only.err" || rc=$?
check "--marks without --spikes is a usage error (status 2)" [ "$rc" = 2 ]
rc=0
"$loadgen" --spikes 5 --duration 4s > /dev/null 2> "$work/spk-short.err" || rc=$?
check "spikes that do not fit in the duration are a usage error (status 2)" [ "$rc" = 2 ]
check "... naming load.duration" grep -q "load.duration" "$work/spk-short.err"

# --- refusals ---
rc=0
"$loadgen" --target 192.0.2.1:4317 --duration 1s > /dev/null 2> "$work/remote.err" || rc=$?
check "a non-loopback target is refused with status 2" [ "$rc" = 2 ]
check "... naming --allow-remote" grep -q -- "--allow-remote" "$work/remote.err"

start grpc
stop_server # the port is now closed
for proto in grpc http; do
    rc=0
    "$loadgen" --protocol "$proto" --target "127.0.0.1:$port" --duration 1s \
        > "$work/down-$proto.out" 2> "$work/down-$proto.err" || rc=$?
    check "$proto: an unreachable target exits 1" [ "$rc" = 1 ]
    check "$proto: ... with a message" grep -q -i "connect\|no HTTP answer" "$work/down-$proto.err"
    check "$proto: ... and no report" [ ! -s "$work/down-$proto.out" ]
done

rc=0
"$loadgen" --batch 0 > /dev/null 2> "$work/batch.err" || rc=$?
check "--batch 0 is a usage error (status 2)" [ "$rc" = 2 ]
check "... naming load.batch" grep -q "load.batch" "$work/batch.err"
check "--help exits 0 and lists --rate" sh -c "'$loadgen' --help | grep -q -- --rate"
check "--version prints the version" sh -c "'$loadgen' --version | grep -q '[0-9]\.[0-9]'"

if [ "$failures" -gt 0 ]; then
    echo "$failures check(s) failed" >&2
    exit 1
fi
echo "all checks passed"
