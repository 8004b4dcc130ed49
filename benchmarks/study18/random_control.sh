#!/usr/bin/env bash
# Issue #18 (docs/measurements_study18_crn.md, section 9): the Genesis arm of section 8 with the pretrained
# checkpoint replaced by random_checkpoint.py's control (the shapes and weight norms of pretraining seed N's
# checkpoint, nothing learned), against section 8's scratch runs, so that a gain can be told apart from the smaller
# weights the 0.3 mix leaves.
#
#   benchmarks/study18/random_control.sh SETTING CORE SEED...                 # e.g. deepgrey_n4 1 0 1 2 3 4 5 6 7 8 9
#   CONTROL_SEED=1 benchmarks/study18/random_control.sh SETTING CORE SEED...  # a second control (default 0)
#
# Control N is drawn once, under a lock (random seed N, the norms of pretraining seed N's checkpoint) into
# /work/data18_run/weights/task611_random_sN and reused; its study OUT/RANDOM_CONTROL_PREFIX (settings.sh) for N = 0,
# + N for N > 0, gets section 8's finished scratch runs (share_scratch.sh from OUT/s8_SETTING_p0, which is not
# modified) and trains the Genesis arm with the default trainer GENESIS of settings.sh.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
source "$HERE/settings.sh"
SETTING=${1:?setting}; CORE=${2:?core}; shift 2
SEEDS=("$@"); [ ${#SEEDS[@]} -gt 1 ] || { echo "give the fine-tuning seeds, at least two" >&2; exit 2; }
N=${CONTROL_SEED:-0}
export nnUNet_genesis_allow_unlearned=1      # the control has no pretraining record: measured on purpose
setting_env "$SETTING" "$CORE"
source "$HERE/common.sh"
[ "$PREFIX" = STUDY18 ] || { echo "$SETTING: the control is set up for Task601's settings only" >&2; exit 2; }
PRE=$(pretraining_results "$N")/nnUNet/3d_fullres/Task611_GenesisDeepGrey/nnUNetTrainerV2_GenesisPretrain_S18Inside__nnUNetPlansv2.1
CONTROL=/work/data18_run/weights/task611_random_s$N
# drawn under a lock, so that two halves started together (one per count) draw it once
( flock 9
  [ -f "$CONTROL/model_final_checkpoint.model" ] || \
    python "$HERE/random_checkpoint.py" "$PRE/fold_0/model_final_checkpoint.model" "$CONTROL" --seed "$N"
) 9> "$CONTROL.lock"
DST=$OUT/$RANDOM_CONTROL_PREFIX; [ "$N" = 0 ] || DST=$DST$N
"$HERE/share_scratch.sh" "$OUT/${MORE_SEEDS_PREFIX}0" "$DST" "$SCRATCH"
echo "== $SETTING: control $N, study $(basename "$DST"), seeds ${SEEDS[*]} ($(date -u +%H:%M))"
export "${PREFIX}_WEIGHTS=$CONTROL/model_final_checkpoint.model"
study "$(basename "$DST")" "$GENESIS" "${SEEDS[@]}"
echo "== $SETTING: done ($(date -u +%H:%M))"
