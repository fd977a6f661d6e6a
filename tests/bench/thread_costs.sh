#!/bin/bash
# thread_costs.sh -- what each thread of a running process spends while a command runs: context
# switches (voluntary + involuntary), minor page faults and CPU time, from /proc/PID/task.
#
# Usage: tests/bench/thread_costs.sh [--per N] PID -- COMMAND [ARG...]
#
# Reads every thread's counters of PID, runs COMMAND (typically sentinel-loadgen with
# --requests N against the process), reads them again and prints, per thread that changed, the
# differences divided by N (--per; default 1), then the process's totals and its VmHWM. Threads
# that started or ended during the command are left out (their counters have no "before").
# COMMAND's output goes to stderr. Exit status: COMMAND's; 2 on bad usage or an unknown PID.
# Used for docs/benchmarks.md, "the OTLP/gRPC receive path".
set -euo pipefail
per=1
if [ "${1:-}" = "--per" ]; then
    per=${2:-}
    shift 2 || true
fi
if [ $# -lt 3 ] || [ "$2" != "--" ] || ! [[ "$per" =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: thread_costs.sh [--per N] PID -- COMMAND [ARG...]" >&2
    exit 2
fi
pid=$1
shift 2
if [ ! -d "/proc/$pid/task" ]; then
    echo "thread_costs.sh: no process $pid" >&2
    exit 2
fi

# One line per thread: "TID_NAME context-switches minor-faults cpu-ticks". stat's second field
# (the name, in parentheses) may hold spaces, so the numbers are counted from its end.
snapshot() {
    local t name cs rest
    for t in /proc/"$pid"/task/*; do
        name=$(tr ' ' '_' 2> /dev/null < "$t/comm") || continue
        cs=$(awk '/^(non)?voluntary_ctxt_switches/ { n += $2 } END { print n + 0 }' \
            "$t/status" 2> /dev/null) || continue
        rest=$(sed 's/.*) //' "$t/stat" 2> /dev/null) || continue
        # after the name: state(1) ppid ... minflt is field 8, utime 12, stime 13 of the rest
        echo "${t##*/}_$name $cs $(echo "$rest" | awk '{ print $8, $12 + $13 }')"
    done | sort
}

before=$(mktemp)
after=$(mktemp)
trap 'rm -f "$before" "$after"' EXIT
snapshot > "$before"
rc=0
"$@" >&2 || rc=$?
snapshot > "$after"
hz=$(getconf CLK_TCK)
join "$before" "$after" | awk -v n="$per" -v hz="$hz" '
    { cs = $5 - $2; mf = $6 - $3; ms = ($7 - $4) * 1000 / hz
      tcs += cs; tmf += mf; tms += ms
      if (cs > 0 || mf > 0 || ms > 0)
          printf "%-32s switches %8.2f  minor faults %8.1f  CPU ms %8.3f\n", $1, cs / n, mf / n, ms / n }
    END { printf "%-32s switches %8.2f  minor faults %8.1f  CPU ms %8.3f  (per %d)\n", "total", tcs / n, tmf / n, tms / n, n }'
awk '/^VmHWM/ { print "VmHWM " $2 " kB" }' "/proc/$pid/status" 2> /dev/null || true
exit "$rc"
