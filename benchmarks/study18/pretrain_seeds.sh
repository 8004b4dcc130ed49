#!/usr/bin/env bash
# Issue #18 (docs/measurements_study18_crn.md, section 7): the pretraining seed as a study factor. For one setting
# (settings.sh) and one pretraining seed N: the seeded pretraining with seed N, into its own results folder
# (common.sh pretraining_results; skipped when its checkpoint exists), then the default-share study from it,
# OUT/s7_SETTING_pN, whose scratch runs are section 6's (OUT/s6_SETTING_mix30, copied by share_scratch.sh: a
# scratch run does not depend on the weights). Section 6's studies are seed 0's.
#
#   benchmarks/study18/pretrain_seeds.sh SETTING CORE N [SEED ...]     # fine-tuning seeds default 0 1 2 3 4
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
source "$HERE/settings.sh"
SETTING=${1:?setting}; CORE=${2:?core}; PRETRAIN_SEED=${3:?pretraining seed}; shift 3
SEEDS=("$@"); [ ${#SEEDS[@]} -gt 0 ] || SEEDS=(0 1 2 3 4)
export nnUNet_genesis_allow_unlearned=1
setting_env "$SETTING" "$CORE"
export "${PREFIX}_PRETRAIN_SEED=$PRETRAIN_SEED"
echo "== $SETTING: pretraining seed $PRETRAIN_SEED ($(date -u +%H:%M))"
"$RUN" pretrain
NAME=$SEED_STUDY_PREFIX$PRETRAIN_SEED
"$HERE/share_scratch.sh" "$OUT/$DEFAULT_STUDY" "$OUT/$NAME" "$SCRATCH"
echo "== $SETTING: study $NAME, seeds ${SEEDS[*]} ($(date -u +%H:%M))"
study "$NAME" "$GENESIS" "${SEEDS[@]}"
echo "== $SETTING: done ($(date -u +%H:%M))"
