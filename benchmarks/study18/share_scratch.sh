#!/usr/bin/env bash
# Issue #18: start a study folder for a Genesis-arm variant that reuses an earlier study's finished scratch runs.
#
#   benchmarks/study18/share_scratch.sh SRC_STUDY DST_STUDY SCRATCH_TRAINER
#
# Copies (never moves; SRC is not modified) every scratch run of SRC that has a final checkpoint: its fold folder in
# nnUNet_results (with the trainer folder's plans.pkl), its predictions, its evaluation and its log. DST must not
# exist. With them goes SRC's study_record.json (task, fold, plans, validation cases). nnUNet_genesis_study then decides from each copied run's own records (study_training.json: arm, trainer,
# count, seed, training cases, plans; the prediction and evaluation records: checkpoint, test images, labels)
# whether it may be reused: a scratch training records no weights, so it stays valid whatever the Genesis arm is,
# and any difference (other seeds, counts, split or plans) is refused or recomputed by the study itself.
# A study run with the same counts and seeds as SRC gives each (count, seed) the same fold index, so the copies
# line up; anything else is the study's to refuse.
set -euo pipefail
SRC=${1:?source study folder}; DST=${2:?new study folder}; TRAINER=${3:?scratch trainer}
[ -d "$SRC" ] || { echo "$SRC: not a folder" >&2; exit 1; }
[ -e "$DST" ] && { echo "$DST exists: choose a new study folder" >&2; exit 1; }
TMP="$DST.partial.$$"
trap 'rm -rf "$TMP"' EXIT
copied=0
for fold in "$SRC"/nnUNet_results/nnUNet/*/*/"${TRAINER}"__*/fold_*; do
  [ -f "$fold/model_final_checkpoint.model" ] || continue
  rel=${fold#"$SRC"/}
  mkdir -p "$TMP/$(dirname "$rel")"
  cp -a "$fold" "$TMP/$rel"
  cp -a "$(dirname "$fold")/plans.pkl" "$TMP/$(dirname "$rel")/" 2>/dev/null || true
  copied=$((copied + 1))
done
[ "$copied" -gt 0 ] || { echo "$SRC: no finished $TRAINER run" >&2; exit 1; }
for sub in predictions evaluation; do
  [ -d "$SRC/$sub/$TRAINER" ] && mkdir -p "$TMP/$sub" && cp -a "$SRC/$sub/$TRAINER" "$TMP/$sub/"
done
cp -a "$SRC/study_record.json" "$TMP/"   # the study's task, fold, plans and validation cases: a mismatch is refused
mkdir -p "$TMP/logs"
cp -a "$SRC"/logs/*"__${TRAINER}.log" "$TMP/logs/" 2>/dev/null || true
mv "$TMP" "$DST"
trap - EXIT
echo "$DST: $copied finished $TRAINER run(s) copied from $SRC"
