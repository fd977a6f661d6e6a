#!/usr/bin/env bash
# Integration test of sentinel-detect, the offline backtest: runs the real program on the
# bundled sample series and on hand-made inputs, and checks its output, errors and exit codes.
# Usage: sentinel_detect.sh PATH/TO/sentinel-detect PATH/TO/latency_ms.csv
set -u
BIN=$1
SAMPLE=$2
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
pass=0
fail=0
check() { # check NAME CONDITION...
    local name=$1
    shift
    if "$@"; then
        pass=$((pass + 1))
    else
        echo "FAIL: $name" >&2
        fail=$((fail + 1))
    fi
}

# 1. The bundled sample: every labelled spike found, the drift found, few false positives.
"$BIN" "$SAMPLE" >"$WORK/out.csv" 2>"$WORK/err.log"
check "sample exits 0" test $? -eq 0
check "header" test "$(head -1 "$WORK/out.csv")" = \
    "timestamp,value,anomaly_score,is_anomaly,detector,severity,label"
check "one output row per input row" test "$(($(wc -l <"$WORK/out.csv") - 1))" -eq \
    "$(($(wc -l <"$SAMPLE") - 1))"
read -r spikes spikes_found drift drift_found normal normal_flagged bad_score < <(awk -F, '
    NR > 1 {
        if ($3 < 0 || $3 > 1) bad++
        if ($7 == "latency_spike") { s++; if ($4 == 1) sf++ }
        else if ($7 == "latency_drift") { d++; if ($4 == 1) df++ }
        else { n++; if ($4 == 1) nf++ }
    }
    END { printf "%d %d %d %d %d %d %d\n", s, sf, d, df, n, nf, bad }' "$WORK/out.csv")
check "scores in [0,1]" test "$bad_score" -eq 0
check "all $spikes spikes flagged ($spikes_found)" test "$spikes_found" -eq "$spikes"
check "drift flagged ($drift_found of $drift)" test "$drift_found" -ge $((drift / 5))
check "false positives under 3% ($normal_flagged of $normal)" \
    test $((normal_flagged * 100)) -lt $((normal * 3))
check "spikes carry a severity" test "$(awk -F, '$7 == "latency_spike" && $6 == "none"' \
    "$WORK/out.csv" | wc -l)" -eq 0
check "cold start has no verdict" test "$(sed -n 2p "$WORK/out.csv" | cut -d, -f3-6)" = \
    "0.000000,0,,none"
check "summary on stderr" grep -q '"msg":"backtest finished".*"rows":3000' "$WORK/err.log"

# 2. Bad rows are reported with their line number and skipped; quoting is preserved.
printf 'value,timestamp,note\n' >"$WORK/bad.csv"
for i in $(seq 1 20); do printf '%d,t%d,"a, b"\n' $((100 + i % 3)) "$i" >>"$WORK/bad.csv"; done
printf 'abc,t21,x\n5,t22\n1e999,t23,x\n,t24,x\n101,t25,x\n' >>"$WORK/bad.csv"
"$BIN" --log-format text "$WORK/bad.csv" >"$WORK/bad.out" 2>"$WORK/bad.err"
check "bad rows: exit 0" test $? -eq 0
check "bad rows: line 22 named" grep -q 'line=22 error="value is not a number"' "$WORK/bad.err"
check "bad rows: line 23 named" grep -q 'line=23 .*2 fields where the header has 3' "$WORK/bad.err"
check "bad rows: line 24 named" grep -q 'line=24 error="value is not a finite number"' "$WORK/bad.err"
check "bad rows: line 25 named" grep -q 'line=25 error="empty value"' "$WORK/bad.err"
check "bad rows: counted" grep -q 'skipped=4' "$WORK/bad.err"
check "bad rows: good rows kept" test "$(($(wc -l <"$WORK/bad.out") - 1))" -eq 21
check "passed-through field re-quoted" grep -q '^t1,101,.*,"a, b"$' "$WORK/bad.out"

# 3. Standard input, a single detector, and static thresholds.
{
    echo "timestamp,value"
    for i in $(seq 1 15); do echo "$i,50"; done
    echo "16,150"
    echo "17,250"
    echo "18,-5"
} >"$WORK/thr.csv"
"$BIN" --detector threshold --set detect.threshold.upper_warn=100 \
    --set detect.threshold.upper_critical=200 --set detect.threshold.lower_warn=0 \
    - <"$WORK/thr.csv" >"$WORK/thr.out" 2>/dev/null
check "threshold: exit 0" test $? -eq 0
check "threshold: quiet below" test "$(sed -n 2p "$WORK/thr.out" | cut -d, -f4-6)" = "0,threshold,none"
check "threshold: warn level" test "$(grep '^16,' "$WORK/thr.out" | cut -d, -f4-6)" = \
    "1,threshold,medium"
check "threshold: critical level" test "$(grep '^17,' "$WORK/thr.out" | cut -d, -f4-6)" = \
    "1,threshold,critical"
check "threshold: lower level" test "$(grep '^18,' "$WORK/thr.out" | cut -d, -f4-6)" = \
    "1,threshold,medium"

# 4. Usage and configuration errors: exit 2 with a line naming the setting.
"$BIN" --set detect.zscore.threshold=abc "$SAMPLE" >/dev/null 2>"$WORK/e1"
check "bad threshold: exit 2" test $? -eq 2
check "bad threshold: named" grep -q 'detect.zscore.threshold' "$WORK/e1"
"$BIN" --detector threshold "$SAMPLE" >/dev/null 2>"$WORK/e2"
check "threshold without levels: exit 2" test $? -eq 2
check "threshold without levels: named" grep -q 'detect.threshold.upper_warn' "$WORK/e2"
"$BIN" --set detect.zscore.high=2 "$SAMPLE" >/dev/null 2>"$WORK/e3"
check "levels out of order: exit 2" test $? -eq 2
check "levels out of order: named" grep -q 'detect.zscore.high' "$WORK/e3"
"$BIN" --window 1 "$SAMPLE" >/dev/null 2>"$WORK/e4"
check "window too small: exit 2" test $? -eq 2
"$BIN" --no-such-flag >/dev/null 2>&1
check "unknown flag: exit 2" test $? -eq 2

# 5. Input errors: exit 1 with a clear message.
printf 'time,val\n1,2\n' >"$WORK/nocol.csv"
"$BIN" "$WORK/nocol.csv" >/dev/null 2>"$WORK/e5"
check "missing column: exit 1" test $? -eq 1
check "missing column: named" grep -q '"column":"timestamp"' "$WORK/e5"
"$BIN" "$WORK/does-not-exist.csv" >/dev/null 2>"$WORK/e6"
check "missing file: exit 1" test $? -eq 1
"$BIN" --value-column val --timestamp-column time "$WORK/nocol.csv" >"$WORK/renamed.out" 2>/dev/null
check "renamed columns" test "$(sed -n 2p "$WORK/renamed.out" | cut -d, -f1,2)" = "1,2"

# 6. Help and version.
check "help lists settings" sh -c "'$BIN' --help | grep -q 'backtest.window'"
check "version" sh -c "'$BIN' --version | grep -q '^sentinel-detect [0-9]'"

echo "sentinel_detect: $pass passed, $fail failed"
test "$fail" -eq 0
