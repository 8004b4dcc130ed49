#!/usr/bin/env bash
# Issue #18: the whole-head study, on Task603_WholeHead (whole-head T1 volumes, 24x the study's 64^3 patch).
# Reproduces docs/measurements_study18_wholehead.md. Protocol of the DeepGrey study (benchmarks/study18); the
# patch and the sliding window's step are the study's (trainers/study18wh_trainers.py says why). Every run is
# pinned to ONE core (STUDY18WH_CORE), single-threaded, one augmentation worker.
#
#   benchmarks/study18wh/run_study18wh.sh prepare   # unlabeled Task633_GenesisWholeHead = Task603's 16 training
#                                                   # images + 2 unlabelled heads (colin27 brain-extracted, INIA19 macaque)
#   benchmarks/study18wh/run_study18wh.sh pretrain  # adamw_inpaint_inside, STUDY18_PRETRAIN_EPOCHS x _ITERS, fold 0
#   benchmarks/study18wh/run_study18wh.sh study     # nnUNet_genesis_study, STUDY18WH_SEEDS x STUDY18WH_COUNTS
#
# Settings (environment): STUDY18WH_OUT, STUDY18WH_STUDY (the study's folder), STUDY18WH_CORE, STUDY18WH_SEEDS,
# STUDY18WH_COUNTS, STUDY18WH_PATCH, STUDY18WH_STEP, STUDY18_PRETRAIN_EPOCHS x _ITERS, STUDY18_FT_EPOCHS x _ITERS,
# STUDY18WH_GENESIS_TRAINER, STUDY18WH_PRETRAINER (nnUNetTrainerV2_GenesisPretrain_S18WHSmall: pretraining at
# STUDY18WH_PRETRAIN_PATCH, default 32 x 32 x 64; the study then fine-tunes from its checkpoint).
# Needs: the worktree's venv, /work/data18_run/env.sh (Task603 built and planned, docs/real_tasks.md).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
source "$HERE/../study18/common.sh"
OUT=${STUDY18WH_OUT:-/work/data18_run/study18wh}
export STUDY18_PRETRAIN_EPOCHS=${STUDY18_PRETRAIN_EPOCHS:-20} STUDY18_PRETRAIN_ITERS=${STUDY18_PRETRAIN_ITERS:-10}
export STUDY18_FT_EPOCHS=${STUDY18_FT_EPOCHS:-5} STUDY18_FT_ITERS=${STUDY18_FT_ITERS:-10}
study_pin "${STUDY18WH_CORE:-0}" 5
PRETRAINER=${STUDY18WH_PRETRAINER:-nnUNetTrainerV2_GenesisPretrain_S18WHInside}
PRE_FOLD="$RESULTS_FOLDER/nnUNet/3d_fullres/Task633_GenesisWholeHead/${PRETRAINER}__nnUNetPlansv2.1/fold_0"
mkdir -p "$OUT"
case "${1:?prepare|pretrain|study}" in
  prepare)
    # imagesTr only (plain folders): the task folder would bring imagesTs, the test images, too
    "${PIN[@]}" nnUNet_genesis_prepare -t 603 -i "$RAW/Task63_WholeHead/imagesTr" "$RAW/Task63_WholeHead_unlabelled" -o 633 -np 1 ;;
  pretrain)
    "${PIN[@]}" nnUNet_train 3d_fullres "$PRETRAINER" Task633_GenesisWholeHead 0 ;;
  study)
    # nnUNet_genesis_allow_unlearned=1: as in the DeepGrey study, the verdict is printed in every Genesis log and study.md
    # shellcheck disable=SC2086
    "${PIN[@]}" nnUNet_genesis_allow_unlearned=1 nnUNet_genesis_study -t 603 -w "$PRE_FOLD/model_final_checkpoint.model" \
      -o "$OUT/${STUDY18WH_STUDY:-study_wholehead}" --test_labels "$RAW/Task63_WholeHead/labelsTs" \
      --seeds ${STUDY18WH_SEEDS:-0 1 2} --counts ${STUDY18WH_COUNTS:-2 4} \
      --scratch_trainer nnUNetTrainerV2_Scratch_S18WH --genesis_trainer "${STUDY18WH_GENESIS_TRAINER:-nnUNetTrainerV2_Genesis_S18WH}" ;;
  *) echo "unknown step $1" >&2; exit 2 ;;
esac
