#!/usr/bin/env bash
# What the test suite writes to the temporary folder: for each commit, a clean clone runs the tests (by default what
# CI runs: .ci/run, the README's test command) while a sampler adds up, every 20 s, pytest's base folders and the
# suite's private nnU-Net workspaces (tests/conftest.py); prints the peak and what is left after the run.
# docs/measurements.md section 1.
#
#   benchmarks/tests_disk.sh COMMIT [COMMIT ...]      # e.g. 9f2bdd0 HEAD (one after the other, about 25 min each)
#   TESTS_DISK_COMMAND='...' benchmarks/tests_disk.sh COMMIT   # another command, run in the clone
#
# Run it with nothing else writing pytest folders: what is there already is reported as "before".
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
COMMAND=${TESTS_DISK_COMMAND:-CI=true bash .ci/run}
TMP=${TMPDIR:-/tmp}
ROOT="$TMP/pytest-of-$(id -un)"
used() { { du -sb "$ROOT" "$TMP"/nnunet_genesis_tests_* 2>/dev/null || true; } | awk '{s += $1} END {print s + 0}'; }
gb() { awk -v b="$1" 'BEGIN {printf "%.2f GB", b / 1e9}'; }
for COMMIT in "$@"; do
  CLONE=$(mktemp -d "$TMP/tests_disk.XXXXXX")
  git clone -q "$REPO" "$CLONE" && git -C "$CLONE" checkout -q "$COMMIT"
  before=$(used); peak=$before
  (cd "$CLONE" && bash -c "$COMMAND" > "$CLONE.log" 2>&1; echo $? > "$CLONE.rc") &
  while [ ! -e "$CLONE.rc" ]; do now=$(used); [ "$now" -gt "$peak" ] && peak=$now; sleep 20; done
  wait
  echo "$COMMIT: exit $(cat "$CLONE.rc"), $(grep -aE '[0-9]+ passed' "$CLONE.log" | tail -1);" \
       "temporary folder: $(gb "$before") before, $(gb "$peak") at the peak, $(gb "$(used)") after (log: $CLONE.log)"
  rm -rf "$CLONE" "$CLONE.rc"
done
