#!/bin/sh
# Runs one libFuzzer target for ctest: run-fuzzer.sh FUZZER ARTIFACT_PREFIX CORPUS_DIR...
# The first corpus dir receives new inputs; a crash is saved under ARTIFACT_PREFIX and fails
# the test. SENTINEL_FUZZ_SECONDS (default 10) is how long it fuzzes after the corpus.
set -eu
# One allocation over 256 MiB is a finding (-malloc_limit_mb): no decoder may allocate what the
# input claims before checking it against a limit (the Ingest fuzzer's message limit is 1 MiB).
fuzzer=$1
prefix=$2
shift 2
exec "$fuzzer" -max_total_time="${SENTINEL_FUZZ_SECONDS:-10}" -timeout=25 -rss_limit_mb=2048 -malloc_limit_mb=256 \
    -print_final_stats=1 -artifact_prefix="$prefix" "$@"
