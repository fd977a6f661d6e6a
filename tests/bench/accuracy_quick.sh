#!/usr/bin/env bash
# accuracy_quick.sh -- bench.accuracy_quick: the accuracy suite runs, and its numbers come from the
# data. No tuning-dependent threshold is asserted: only what any working detector must give.
#
#   accuracy_quick.sh SENTINEL-ACCURACY SCENARIO-DIR
#
# 1. One obvious latency spike (x10 for 60 s after 10 minutes of clean traffic): recall 1, one
#    incident, a delay inside the incident, --require-detected exits 0.
# 2. The same scenario with a label whose incident changes nothing: recall 0, exit 1 with
#    --require-detected -- the suite does not credit a label it has no evidence for.
# 3. The same file twice gives the same report (simulated time, fixed seed).
# 4. A bad scenario file fails with a message naming the field.
# 5. Engine settings from the scenario and --set reach the engine; bad ones fail, named.
set -euo pipefail
acc=$1
data=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

"$acc" --json --require-detected "$data/quick/obvious_spike.json" >"$tmp/spike.json" ||
    fail "obvious spike: not detected (exit $?)"
row() { jq -e --arg t "$2" '.types[] | select(.type == $t)' "$1"; }
row "$tmp/spike.json" latency_spike >"$tmp/row.json" || fail "no latency_spike row"
[ "$(jq .incidents "$tmp/row.json")" = 1 ] || fail "obvious spike: incidents != 1"
[ "$(jq .detected "$tmp/row.json")" = 1 ] || fail "obvious spike: detected != 1"
[ "$(jq .recall "$tmp/row.json")" = 1 ] || [ "$(jq .recall "$tmp/row.json")" = 1.0 ] ||
    fail "obvious spike: recall != 1"
jq -e '.true_alerts >= 1 and .delay_p50_s >= 0 and .delay_max_s <= 90' "$tmp/row.json" >/dev/null ||
    fail "obvious spike: no true alert or a delay outside the incident: $(cat "$tmp/row.json")"
jq -e '.incidents == [.incidents[0]] and .incidents[0].id == "spike" and .incidents[0].detected
       and .incidents[0].delay_s == (.types[] | select(.type == "latency_spike") | .delay_p50_s)' \
    "$tmp/spike.json" >/dev/null || fail "obvious spike: the per-incident list does not match"
events=$(jq .events "$tmp/spike.json")
# 10 calls/s for 900 s (Poisson): far outside 8000..10000 means the generator is broken.
[ "$events" -ge 8000 ] && [ "$events" -le 10000 ] || fail "obvious spike: $events events"

if "$acc" --json --require-detected "$data/quick/no_effect.json" >"$tmp/none.json"; then
    fail "no_effect: --require-detected passed a label without an incident"
fi
row "$tmp/none.json" latency_spike >"$tmp/row.json" || fail "no_effect: no latency_spike row"
[ "$(jq .detected "$tmp/row.json")" = 0 ] || fail "no_effect: credited a detection"
[ "$(jq .recall "$tmp/row.json")" = 0 ] || [ "$(jq .recall "$tmp/row.json")" = 0.0 ] ||
    fail "no_effect: recall != 0"

"$acc" --json "$data/quick/obvious_spike.json" >"$tmp/again.json"
cmp -s "$tmp/spike.json" "$tmp/again.json" || fail "two runs of one scenario differ"

printf '{"duration_s": 60, "services": [{"name": "a", "models": [{"model": "m", "rate": 1,
 "latency_ms": {"median": 100}, "input_tokens": {"median": 10}, "output_tokens": {"median": 10}}]}],
 "incidents": [{"id": "x", "type": "nonsense", "service": "a", "model": "m", "start_s": 1,
 "duration_s": 1, "magnitude": 2}]}' >"$tmp/bad.json"
if "$acc" "$tmp/bad.json" >/dev/null 2>"$tmp/err"; then fail "a bad scenario was accepted"; fi
grep -q 'incidents\[0\].*type' "$tmp/err" || fail "bad scenario: message does not name the field: $(cat "$tmp/err")"
# Engine settings: a scenario's own and --set are applied (a bad one fails, naming it).
jq '.engine = {"detect.zscore.threshold": 0}' "$data/quick/obvious_spike.json" >"$tmp/badeng.json"
if "$acc" "$tmp/badeng.json" >/dev/null 2>"$tmp/err"; then fail "a bad engine setting was accepted"; fi
grep -q 'engine.detect.zscore.threshold' "$tmp/err" ||
    fail "bad engine setting: message does not name it: $(cat "$tmp/err")"
if "$acc" --set engine.no.such=1 "$data/quick/obvious_spike.json" >/dev/null 2>"$tmp/err"; then
    fail "an unknown --set path was accepted"
fi
grep -q 'engine.no.such' "$tmp/err" || fail "--set: message does not name the path: $(cat "$tmp/err")"
# Leaving only the static threshold detector on (no levels set) through the scenario makes the
# spike undetected: the settings really reach the engine.
jq '.engine = {"detect.zscore.enabled": false, "detect.iqr.enabled": false,
               "detect.mad.enabled": false, "detect.cusum.enabled": false,
               "detect.threshold.enabled": true}' \
    "$data/quick/obvious_spike.json" >"$tmp/off.json"
if "$acc" --json --require-detected "$tmp/off.json" >"$tmp/off.out" 2>/dev/null; then
    fail "the spike was detected with only the threshold detector on"
fi
row "$tmp/off.out" latency_spike >"$tmp/row.json" || fail "detectors off: no latency_spike row"
[ "$(jq .detected "$tmp/row.json")" = 0 ] || fail "detectors off: still detected"

echo "accuracy quick: OK ($events events; delay $(jq -r '.types[] | select(.type=="latency_spike") | .delay_p50_s' "$tmp/spike.json") s)"
