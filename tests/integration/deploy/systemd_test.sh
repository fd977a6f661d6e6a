#!/bin/sh
# deploy/systemd units: `systemd-analyze verify` reports nothing (unknown keys, bad values and
# missing executables are reported as warnings, so any output fails), and the hardening scores
# an exposure of at most 2.0 in `systemd-analyze security --offline`. Controls: a misspelt key
# must be reported, and a unit stripped of its hardening must score worse.
#   systemd_test.sh REPO AGGREGATOR_BIN SIDECAR_BIN SYSTEMD_ANALYZE
set -u
root=$1 aggregator=$2 sidecar=$3 sa=$4
work=$(mktemp -d "${TMPDIR:-/tmp}/sentinel-systemd.XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT
passed=0 failed=0
ok() { passed=$((passed + 1)); }
fail() { failed=$((failed + 1)); echo "FAIL: $*"; }

# The units name the installed paths; point them at the built programs for verify.
place() { # unit -> $work/<unit> with ExecStart on the build
    sed -e "s#/usr/local/bin/sentinel-aggregator#$aggregator#" -e "s#/usr/local/bin/sentinel-sidecar#$sidecar#" \
        "$root/deploy/systemd/$1" >"$work/$1"
}

exposure() { # unit file -> overall exposure number
    SYSTEMD_LOG_LEVEL=err "$sa" security --offline=yes --no-pager "$1" 2>/dev/null |
        sed -n 's/.*Overall exposure level for .*: \([0-9.]*\).*/\1/p'
}

for unit in sentinel-aggregator.service sentinel-sidecar.service; do
    place "$unit"
    out=$(SYSTEMD_LOG_LEVEL=warning "$sa" verify "$work/$unit" 2>&1)
    if [ $? -eq 0 ] && [ -z "$out" ]; then ok; else fail "$unit: systemd-analyze verify: $out"; fi
    for key in DynamicUser=yes StateDirectory=sentinel ProtectSystem=strict NoNewPrivileges=yes \
        RestartPreventExitStatus=2 KillSignal=SIGTERM; do
        if grep -q "^$key" "$work/$unit"; then ok; else fail "$unit: no $key"; fi
    done
    score=$(exposure "$work/$unit")
    if [ -n "$score" ] && awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }'; then ok; else fail "$unit: exposure '$score' > 2.0"; fi
done

# Controls.
sed 's/^NoNewPrivileges=yes/NoNewPrivilegs=yes/' "$work/sentinel-aggregator.service" >"$work/typo.service"
out=$(SYSTEMD_LOG_LEVEL=warning "$sa" verify "$work/typo.service" 2>&1)
case $out in *NoNewPrivilegs*) ok ;; *) fail "control: a misspelt key is not reported: $out" ;; esac
grep -v -e '^Protect' -e '^Restrict' -e '^Private' -e '^DynamicUser' -e '^SystemCall' -e '^Capability' \
    "$work/sentinel-aggregator.service" >"$work/soft.service"
soft=$(exposure "$work/soft.service")
hard=$(exposure "$work/sentinel-aggregator.service")
if [ -n "$soft" ] && [ -n "$hard" ] && awk -v s="$soft" -v h="$hard" 'BEGIN { exit !(s > h + 3) }'; then ok; else
    fail "control: unhardened unit scores $soft vs $hard"
fi

echo "systemd units: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
