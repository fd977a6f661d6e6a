#!/bin/sh
# Runs one libFuzzer target for ctest: run-fuzzer.sh FUZZER ARTIFACT_PREFIX CORPUS_DIR...
# The first corpus dir receives new inputs; a crash is saved as ARTIFACT_PREFIX<kind>-<sha1> and
# fails the test. SENTINEL_FUZZ_SECONDS (default 10) is how long it fuzzes after the corpus.
# One allocation over 256 MiB is a finding (-malloc_limit_mb): no decoder may allocate what the
# input claims before checking it against a limit (the Ingest fuzzer's message limit is 1 MiB).
# libFuzzer's progress goes to ARTIFACT_PREFIXfuzz.log; what ctest shows is its last lines (the
# crash report when there is one).
set -u
fuzzer=$1
prefix=$2
shift 2
log="${prefix}fuzz.log"
"$fuzzer" -max_total_time="${SENTINEL_FUZZ_SECONDS:-10}" -timeout=25 -rss_limit_mb=2048 \
    -malloc_limit_mb=256 -print_final_stats=1 -artifact_prefix="$prefix" "$@" >"$log" 2>&1
rc=$?
if [ "$rc" -ne 0 ]; then
    tail -n 80 "$log"
    echo "run-fuzzer: $(basename "$fuzzer") failed (exit $rc); full log: $log"
    exit "$rc"
fi
grep -E '^#[0-9]+ +DONE|^stat::number_of_executed_units|^stat::peak_rss_mb' "$log"
exit 0
