#!/usr/bin/env bash
# make demo-backtest: the offline backtest (sentinel-detect) over a bundled latency series with
# labelled incidents -- latency spikes and a slow provider degradation -- showing what each
# detector finds. (make demo runs the whole system live: demo.sh.)
set -euo pipefail
BUILD=${1:-build}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DETECT="$ROOT/$BUILD/aggregator/sentinel-detect"
SERIES="$ROOT/tests/data/series/latency_ms.csv"
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

if [ ! -x "$DETECT" ]; then
    echo "demo: $DETECT is missing; run 'make build' first" >&2
    exit 1
fi

echo "== LLM-Sentinel demo: offline backtest =="
echo "series: $SERIES"
echo "        $(($(wc -l <"$SERIES") - 1)) latency samples (ms) of one service/model, one per second,"
echo "        with labelled incidents: 5 latency spikes and a 5-minute slow degradation"
echo

for det in ensemble z_score iqr mad cusum; do
    "$DETECT" --log-format text --detector "$det" "$SERIES" >"$OUT/$det.csv" 2>"$OUT/$det.log"
done

echo "Per detector (a row is flagged when is_anomaly=1):"
printf '  %-9s %8s %8s %10s %12s\n' detector spikes drift "normal FP" "FP rate"
for det in ensemble z_score iqr mad cusum; do
    awk -F, -v det="$det" '
        NR > 1 {
            if ($7 == "latency_spike") { s++; if ($4 == 1) sf++ }
            else if ($7 == "latency_drift") { d++; if ($4 == 1) df++ }
            else { n++; if ($4 == 1) nf++ }
        }
        END { printf "  %-9s %4d/%-3d %4d/%-3d %10d %11.2f%%\n", det, sf, s, df, d, nf, 100 * nf / n }
    ' "$OUT/$det.csv"
done
echo
echo "Alerts from the ensemble around the incidents (timestamp, value, score, detector, severity):"
awk -F, 'NR > 1 && $4 == 1 && $7 != "normal" { printf "  %s  %9.1f ms  score %.3f  %-8s %-8s [%s]\n", $1, $2, $3, $5, $6, $7 }' \
    "$OUT/ensemble.csv" | head -20
echo "  ..."
echo
echo "Summary line the backtest writes to stderr:"
sed 's/^/  /' "$OUT/ensemble.log"
echo
echo "Try it on your own history:"
echo "  $BUILD/aggregator/sentinel-detect --detector mad --set detect.mad.threshold=4 your.csv > scores.csv"
echo "  $BUILD/aggregator/sentinel-detect --help"
