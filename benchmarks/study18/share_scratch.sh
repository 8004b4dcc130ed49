#!/usr/bin/env bash
# Issue #18: give a study folder for a Genesis-arm variant the finished scratch runs of an earlier study, so that
# they are not trained twice.
#
#   benchmarks/study18/share_scratch.sh SRC_STUDY DST_STUDY SCRATCH_TRAINER
#
# Copies (never moves; SRC is not modified) every scratch run of SRC that has a final checkpoint and that DST does
# not hold yet: its fold folder in nnUNet_results (with the trainer folder's plans.pkl), its predictions, its
# evaluation and its log; and SRC's study_record.json (task, fold, plans, validation cases) when DST has none.
# Nothing DST holds is replaced, and each piece is copied under a temporary name and then renamed, so an
# interrupted copy leaves whole pieces or none. DST may not exist yet (it is created) or may be a study that runs
# seed by seed beside SRC (copy, run DST's next seed, copy again). nnUNet_genesis_study then decides from each
# copied run's own records (study_training.json: arm, trainer, count, seed, training cases, plans; the prediction
# and evaluation records: checkpoint, test images, labels) whether it may be reused: a scratch training records
# no weights, so it stays valid whatever the Genesis arm is, and any difference (other seeds, counts, split or
# plans) is refused or recomputed by the study itself. The study numbers its folds in the order it first meets
# each (count, seed): run DST with SRC's counts and seeds, in SRC's order, so the copies line up; anything else is
# the study's to refuse. Run it while no study writes into SRC or DST.
set -euo pipefail
SRC=${1:?source study folder}; DST=${2:?study folder to add to}; TRAINER=${3:?scratch trainer}
[ -d "$SRC" ] || { echo "$SRC: not a folder" >&2; exit 1; }
[ -e "$DST" ] && [ ! -d "$DST" ] && { echo "$DST: exists and is not a folder" >&2; exit 1; }

source "$(cd "$(dirname "$0")" && pwd)/copy_once.sh"

copied=0
for fold in "$SRC"/nnUNet_results/nnUNet/*/*/"${TRAINER}"__*/fold_*; do
  [ -f "$fold/model_final_checkpoint.model" ] || continue
  rel=${fold#"$SRC"/}
  copy_once "$(dirname "$fold")/plans.pkl" "$DST/$(dirname "$rel")/plans.pkl" || true
  copy_once "$fold" "$DST/$rel" && copied=$((copied + 1)) || true
done
for sub in predictions evaluation; do
  for run in "$SRC/$sub/$TRAINER"/*; do
    [ -d "$run" ] && { copy_once "$run" "$DST/$sub/$TRAINER/$(basename "$run")" || true; }
  done
done
for log in "$SRC"/logs/*"__${TRAINER}.log"; do
  [ -f "$log" ] && { copy_once "$log" "$DST/logs/$(basename "$log")" || true; }
done
# the study's task, fold, plans and validation cases: a mismatch is refused by the study
copy_once "$SRC/study_record.json" "$DST/study_record.json" || true
echo "$DST: $copied finished $TRAINER run(s) added from $SRC"
