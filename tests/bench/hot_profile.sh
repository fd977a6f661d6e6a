#!/bin/sh
# hot_profile.sh -- regenerates sidecar/hot_sections.ld: relinks sentinel-sidecar with a link
# map, runs it under callgrind against loopback OTLP/gRPC and OTLP/HTTP load (its own
# aggregator receiving the batches), instruments 3 s of idle after it listens, then the load
# (not start-up or shutdown), and turns the executed addresses into the linker script
# (tests/bench/hot_layout.sh).
#
# Usage: tests/bench/hot_profile.sh BUILD_DIR OUT_LD
#
#   BUILD_DIR  a configured and built tree (static sidecar; the aggregator and the loadgen built)
#   OUT_LD     where to write the linker script (sidecar/hot_sections.ld to update it)
#
# Needs valgrind. Takes about a minute. Prints the callgrind outputs and the summary of
# hot_layout.sh; keeps its work files in a temporary directory it names (deleted on success
# unless HOT_PROFILE_KEEP=1 is set: the map, the profiled binary, callgrind.out, the logs and
# the loadgen results). Exit status 0, 1 on failure, 2 on bad usage.
set -eu
if [ $# -ne 2 ]; then
    echo "usage: hot_profile.sh BUILD_DIR OUT_LD" >&2
    exit 2
fi
build=$(cd "$1" && pwd)
out_ld=$2
here=$(cd "$(dirname "$0")" && pwd)
w=$(mktemp -d)
echo "hot_profile.sh: work files in $w"
pids=""
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

# 1. The sidecar relinked with a map (same command CMake uses, another output).
link=$(sed "s| -o sentinel-sidecar | -o $w/sentinel-sidecar |" \
    "$build/sidecar/CMakeFiles/sentinel-sidecar.dir/link.txt")
(cd "$build/sidecar" && eval "$link -Wl,-Map=$w/map")
bin=$w/sentinel-sidecar

# 2. An aggregator to ship to.
mkdir "$w/agg"
SENTINEL_INGEST_ENDPOINT=127.0.0.1:0 "$build/aggregator/sentinel-aggregator" \
    --set state.data_dir="$w/agg" --set http.endpoint=127.0.0.1:0 > "$w/agg.log" 2>&1 &
pids="$pids $!"
i=0
until grep -q '"ingest listening"' "$w/agg.log" 2>/dev/null; do
    i=$((i + 1)); [ $i -lt 100 ] || { echo "aggregator did not start" >&2; exit 1; }
    sleep 0.1
done
agg=$(grep '"ingest listening"' "$w/agg.log" | sed 's/.*"port":\([0-9]*\).*/\1/')

# 3. The sidecar under callgrind, instrumentation off until the load starts.
mkdir "$w/spool"
SENTINEL_MEMORY_LIMIT=0 SENTINEL_OTLP_GRPC_ENDPOINT=127.0.0.1:0 \
    SENTINEL_OTLP_HTTP_ENDPOINT=127.0.0.1:0 SENTINEL_ADMIN_ENDPOINT=127.0.0.1:0 \
    SENTINEL_AGGREGATOR=127.0.0.1:$agg SENTINEL_SPOOL_DIR="$w/spool" \
    valgrind --tool=callgrind --dump-instr=yes --compress-strings=no --compress-pos=no \
    --instr-atstart=no --callgrind-out-file="$w/callgrind.out" "$bin" > "$w/sidecar.log" 2>&1 &
sc=$!
pids="$pids $sc"
i=0
until grep -q '"OTLP/HTTP listening"' "$w/sidecar.log" 2>/dev/null; do
    i=$((i + 1)); [ $i -lt 600 ] || { echo "sidecar did not start" >&2; exit 1; }
    sleep 0.1
done
gport=$(grep '"OTLP/gRPC listening"' "$w/sidecar.log" | sed 's/.*"port":\([0-9]*\).*/\1/')
hport=$(grep '"OTLP/HTTP listening"' "$w/sidecar.log" | sed 's/.*"port":\([0-9]*\).*/\1/')
base=$(awk -v b="$bin" '$6 == b { split($1, r, "-"); print "0x" r[1]; exit }' "/proc/$sc/maps")
# idle: the first 3 s after it listens (what runs after start-up dropped its pages)
callgrind_control -i on "$sc" > /dev/null
sleep 3
callgrind_control -d "$sc" > /dev/null # callgrind.out.1
lg=$build/tests/load/sentinel-loadgen
for proto in grpc http; do
    port=$gport
    [ $proto = grpc ] || port=$hport
    # steady load, then flat out (requests of 512 spans, as in docs/benchmarks.md)
    "$lg" --protocol $proto --rate 1000 --batch 512 --concurrency 8 --duration 10s \
        --target 127.0.0.1:"$port" --json > "$w/lg-$proto-rate.json" 2>&1
    "$lg" --protocol $proto --rate 0 --batch 512 --concurrency 32 --duration 5s \
        --target 127.0.0.1:"$port" --json > "$w/lg-$proto-flood.json" 2>&1
done
sleep 1
callgrind_control -i off "$sc" > /dev/null
kill -TERM "$sc"
wait "$sc" || true
ls "$w"/callgrind.out*
"$here/hot_layout.sh" "$w/map" "$base" "$w/callgrind.out.1" "$w/callgrind.out" > "$out_ld"
trap - EXIT
cleanup
[ "${HOT_PROFILE_KEEP:-0}" = 1 ] || rm -rf "$w"
