#!/usr/bin/env bash
# Issue #18 (docs/measurements_study18_crn.md, section 8): more fine-tuning seeds for one setting (settings.sh),
# from both seeded checkpoints of sections 6 and 7. The study's unit is the fine-tuning seed (its labelled subset
# and its training draws); five of them left every interval wide, so this study goes on to the seeds given.
#
#   benchmarks/study18/more_seeds.sh SETTING CORE SEED...       # e.g. deepgrey_n2 1 0 1 2 3 4 5 6 7 8 9
#   PRETRAIN_SEEDS="0 1 2" benchmarks/study18/more_seeds.sh ...  # the checkpoints to go through (default 0 1)
#
# For pretraining seed 0 the study OUT/s8_SETTING_p0 starts as a copy of section 6's OUT/s6_SETTING_mix30, for
# seed N > 0 OUT/s8_SETTING_pN as a copy of section 7's OUT/s7_SETTING_pN (pretrain_seeds.sh; whole folders, through
# a temporary name; the sources are not modified, so sections 6 and 7 keep their own records). nnUNet_genesis_study
# reuses each copied run its records allow and trains the new seeds; the scratch runs of the new seeds are trained
# once, in p0, and copied into the others (share_scratch.sh). The checkpoints are not retrained (their sha256 is in
# each study.json).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
source "$HERE/settings.sh"
SETTING=${1:?setting}; CORE=${2:?core}; shift 2
SEEDS=("$@"); [ ${#SEEDS[@]} -gt 1 ] || { echo "give the fine-tuning seeds, at least two" >&2; exit 2; }
export nnUNet_genesis_allow_unlearned=1
setting_env "$SETTING" "$CORE"
source "$HERE/copy_once.sh"
# copy_study SRC DST: the whole study folder SRC as DST (copy_once), unless DST exists
copy_study() {
  [ -f "$1/study.json" ] || [ -e "$2" ] || { echo "$1: no finished study to start from" >&2; exit 1; }
  copy_once "$1" "$2" || echo "$2 exists: resumed"
}
read -r -a PRETRAIN <<< "${PRETRAIN_SEEDS:-0 1}"
[ "${PRETRAIN[0]}" = 0 ] || {
  echo "PRETRAIN_SEEDS must start with 0 (its study trains the new seeds' scratch runs)" >&2; exit 2; }
for P in "${PRETRAIN[@]}"; do
  if [ "$P" = 0 ]; then SRC=$OUT/$DEFAULT_STUDY; else SRC=$OUT/$SEED_STUDY_PREFIX$P; fi
  DST=$OUT/$MORE_SEEDS_PREFIX$P
  copy_study "$SRC" "$DST"
  [ "$P" = 0 ] || "$HERE/share_scratch.sh" "$OUT/${MORE_SEEDS_PREFIX}0" "$DST" "$SCRATCH"
  echo "== $SETTING: pretraining seed $P, study $(basename "$DST"), seeds ${SEEDS[*]} ($(date -u +%H:%M))"
  export "${PREFIX}_PRETRAIN_SEED=$P"
  study "$(basename "$DST")" "$GENESIS" "${SEEDS[@]}"
done
echo "== $SETTING: done ($(date -u +%H:%M))"
