#!/bin/sh
# Checks that the exposition shared/metrics.c renders is what Prometheus accepts:
# `promtool check metrics` (parser and linter) on the output of metrics_sample, which uses every
# feature. Then feeds promtool broken expositions to show it does reject what it should.
# Usage: promtool_check.sh METRICS_SAMPLE PROMTOOL
set -eu
sample=$1
promtool=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$sample" > "$work/sample.prom"
grep -q '^sentinel_detection_duration_seconds_bucket{detector="zscore",le="+Inf"} 100$' "$work/sample.prom"
grep -q '^sentinel_metrics_series_dropped_total 1$' "$work/sample.prom"
grep -q '^process_open_fds ' "$work/sample.prom"
if ! "$promtool" check metrics < "$work/sample.prom" > "$work/out" 2>&1; then
    echo "promtool rejected the exposition:"
    cat "$work/out"
    exit 1
fi
echo "promtool accepts the exposition ($(wc -l < "$work/sample.prom") lines)"

# Negative controls: each must be refused, or the check above proves nothing.
printf '# HELP a_total x\n# TYPE a_total counter\na_total{k="unterminated} 1\n' > "$work/bad1"
printf '# HELP requests x\n# TYPE requests counter\nrequests 1\n' > "$work/bad2"
printf '# HELP g x\n# TYPE g gauge\ng{k="a\\qb"} 1\n' > "$work/bad3"
for f in bad1 bad2 bad3; do
    if "$promtool" check metrics < "$work/$f" > /dev/null 2>&1; then
        echo "promtool accepted $f, which it must refuse"
        exit 1
    fi
done
echo "promtool refuses the broken controls"
