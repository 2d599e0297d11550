#!/usr/bin/env bash
# The test suite's reliability check (#10): N fresh-clone `make test` runs in a row,
# each while two busy loops load the machine, then the same for a reference commit.
#
#   bench/suite_under_load.sh [RUNS] [REFERENCE_REV]     (defaults: 5, none)
#
# Prints one line per run: exit status, wall seconds, pytest's summary, load average.
# Every clone lives in a temp dir that is removed; the busy loops are killed by PID.
set -u
runs=${1:-5}
reference=${2:-}
repo=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)

one_run() {  # one_run LABEL REV
    local dir pids="" start rc log
    dir=$(mktemp -d /tmp/netmetrix-suite-XXXXXX)
    log="$dir.log"
    git clone -q "$repo" "$dir/x" && git -C "$dir/x" checkout -q "$2"
    for _ in 1 2; do timeout 1800 sh -c 'while :; do :; done' & pids="$pids $!"; done
    start=$(date +%s)
    (cd "$dir/x" && PYTEST_ADDOPTS="--durations=20" make test >"$log" 2>&1)
    rc=$?
    kill $pids 2>/dev/null
    echo "$1 $(git -C "$dir/x" rev-parse --short HEAD) rc=$rc wall=$(($(date +%s) - start))s" \
        "$(grep -E '[0-9]+ (passed|failed)' "$log" | tail -1) (load $(cut -d' ' -f1-3 /proc/loadavg); log $log)"
    rm -rf "$dir"
}

head=$(git -C "$repo" rev-parse HEAD)
for i in $(seq 1 "$runs"); do one_run "run $i/$runs" "$head"; done
[ -n "$reference" ] && one_run "reference" "$reference"
exit 0
