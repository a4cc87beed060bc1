#!/usr/bin/env bash
# make check-fuzz: a short run of every libFuzzer target (tests/fuzz) from
# generated seeds.  Usage: scripts/run-fuzz.sh BUILD_DIR [SECONDS_PER_TARGET]
# The corpus grows in BUILD_DIR/fuzz-corpus/<target> across runs; crashes
# are written there as crash-* files and fail the run.
set -uo pipefail
build=$1
secs=${2:-30}
src=$(cd "$(dirname "$0")/.." && pwd)
corpus=$build/fuzz-corpus
python3 "$src/tests/fuzz/make-seeds.py" "$corpus" || exit 1
passed=0
failed=0
for t in fuzz-qmp-input fuzz-nbd-server; do
    exe=$build/tests/fuzz/$t
    mkdir -p "$corpus/$t"
    log=$build/tests/fuzz/$t.log
    if (cd "$corpus" && ASAN_OPTIONS=detect_leaks=1 \
        UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
        "$exe" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
               -artifact_prefix="$corpus/$t-" "$corpus/$t" >"$log" 2>&1); then
        echo "$t pass [$(grep -c '^#' "$log") status lines, $(ls "$corpus/$t" | wc -l) corpus files]"
        passed=$((passed + 1))
    else
        echo "$t fail: see $log"
        tail -30 "$log"
        failed=$((failed + 1))
    fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
