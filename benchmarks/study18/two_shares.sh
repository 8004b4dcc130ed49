#!/usr/bin/env bash
# Issue #18 (docs/measurements_study18_crn.md, sections 5 and 6): one study setting, Genesis with the default
# pretrained share 0.3 against share 0.1, both against the same scratch runs, seed by seed.
#
#   benchmarks/study18/two_shares.sh SETTING CORE [SEED ...]      # seeds default 0 1 2 3 4
#
# SETTING: deepgrey_n2 | deepgrey_n4   (Task601, 100 fine-tuning iterations, run_study18.sh)
#          headct16_n2 | headct16_n4   (Task602, 16 iterations, ../study18ct/run_study18ct.sh)
#          headct64_n2                 (Task602, 64 iterations)
# For each seed in turn: the share-0.3 study (scratch + Genesis, seeds so far), its finished scratch runs copied
# into the share-0.1 study (share_scratch.sh), then the share-0.1 study (seeds so far; the scratch runs reused).
# So at any time the two studies hold the same seeds, give or take the one under way. Each study resumes: run it
# again after an interruption. Weights: the scripts' default (their seeded pretraining checkpoint).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
SETTING=${1:?setting}; CORE=${2:?core}; shift 2
SEEDS=("$@"); [ ${#SEEDS[@]} -gt 0 ] || SEEDS=(0 1 2 3 4)
export nnUNet_genesis_allow_unlearned=1
case "$SETTING" in
  deepgrey_n2|deepgrey_n4)
    COUNT=${SETTING#deepgrey_n}; SUFFIX=_S18; OUT=/work/data18_run/study18
    RUN=("$HERE/run_study18.sh" study); PREFIX=STUDY18; NAME_VAR=STUDY18_STUDY
    export STUDY18_CORE=$CORE STUDY18_COUNTS=$COUNT ;;
  headct16_n2|headct16_n4|headct64_n2)
    COUNT=${SETTING#headct??_n}; SUFFIX=_S18CT; OUT=/work/data18_run/study18ct
    RUN=("$HERE/../study18ct/run_study18ct.sh" study); PREFIX=STUDY18CT; NAME_VAR=STUDY18CT_STUDY_NAME
    ITERS=${SETTING#headct}; ITERS=${ITERS%_n*}
    export STUDY18CT_CORE=$CORE STUDY18CT_COUNTS=$COUNT STUDY18CT_FT_EPOCHS=$((ITERS / 4)) STUDY18CT_FT_ITERS=4 \
           STUDY18CT_FT_VAL_BATCHES=1 ;;
  *) echo "unknown setting $SETTING" >&2; exit 2 ;;
esac
SCRATCH=nnUNetTrainerV2_ScratchSeeded$SUFFIX
A=s6_${SETTING}_mix30; B=s6_${SETTING}_mix10
study() {   # study NAME GENESIS_TRAINER SEEDS...
  local name=$1 trainer=$2; shift 2
  env "$NAME_VAR=$name" "${PREFIX}_SEEDS=$*" "${PREFIX}_GENESIS_TRAINER=$trainer" "${PREFIX}_SCRATCH_TRAINER=$SCRATCH" \
      "${RUN[@]}"
}
done_seeds=()
for seed in "${SEEDS[@]}"; do
  done_seeds+=("$seed")
  echo "== $SETTING: seeds ${done_seeds[*]} ($(date -u +%H:%M))"
  study "$A" "nnUNetTrainerV2_GenesisMix$SUFFIX" "${done_seeds[@]}"
  "$HERE/share_scratch.sh" "$OUT/$A" "$OUT/$B" "$SCRATCH"
  study "$B" "nnUNetTrainerV2_GenesisMix10$SUFFIX" "${done_seeds[@]}"
done
echo "== $SETTING: done ($(date -u +%H:%M))"
