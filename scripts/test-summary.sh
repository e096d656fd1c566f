#!/usr/bin/env bash
# The last line of `make test`: "summary: N passed, N failed, N skipped", summed over cargo's
# "test result:" lines in the given logs. A log whose step failed (its name listed in FAILED,
# space-separated) without printing any "test result:" line (the bed, an image or a build broke
# before the tests ran) counts as one failed test, so a broken step never looks green.
# Above it, each failed test and why (scripts/test-failures.py), where a reader of the log's
# end sees them.
# Usage: FAILED="e2e" scripts/test-summary.sh NAME=LOG ...
set -uo pipefail
p=0 f=0 s=0
for arg in "$@"; do
  name=${arg%%=*} log=${arg#*=}
  read -r lp lf ls < <(awk '/^test result:/ { p += $4; f += $6; s += $8; n++ }
    END { printf "%d %d %d\n", p, f, s }' "$log" 2>/dev/null || echo "0 0 0")
  p=$((p + lp)) f=$((f + lf)) s=$((s + ls))
  if [[ " ${FAILED:-} " == *" $name "* ]] && ! grep -q '^test result:' "$log" 2>/dev/null; then
    echo "$name: failed before its tests ran (see $log)"
    f=$((f + 1))
  fi
done
logs=()
for arg in "$@"; do logs+=("${arg#*=}"); done
python3 "$(dirname "$0")/test-failures.py" "${logs[@]}" || true
echo "summary: $p passed, $f failed, $s skipped"
