#!/usr/bin/env bash
# Issue #18: the CT downstream study, on Task602_HeadCT (one real head CT, crops about the patch's size).
# Reproduces docs/measurements_study18_headct.md. Same protocol as the Task601_DeepGrey study (benchmarks/study18
# on the recipe18 branch). Every training/prediction runs on ONE core (core 0, shared with other jobs), nice 19,
# single-threaded, one augmentation worker: the budgets below are wall-minutes on that one core.
#
#   benchmarks/study18ct/run_study18ct.sh prepare   # unlabeled Task622_GenesisHeadCT = Task602's 24 training images
#   benchmarks/study18ct/run_study18ct.sh pretrain  # adamw_inpaint_inside, STUDY18CT_PRETRAIN_EPOCHS x _ITERS
#                                                   # (default 9 x 25: 30 CPU-minutes), fold 0
#                                                   # (STUDY18CT_PRETRAINER: a variant in trainers/)
#   benchmarks/study18ct/run_study18ct.sh study     # nnUNet_genesis_study, seeds 0-4, counts 2 4 (STUDY18CT_COUNTS)
#                                                   # (STUDY18CT_SCRATCH_TRAINER / _GENESIS_TRAINER: the arms;
#                                                   #  STUDY18CT_WEIGHTS: other weights than the pretraining's;
#                                                   #  STUDY18CT_PRETRAIN_SEED: as in ../study18/run_study18.sh)
#   benchmarks/study18ct/run_study18ct.sh restoration ARGS  # nnUNet_genesis_restoration, independent check
#
# Needs: the worktree's venv, /work/data18_run/env.sh (Task602 built and planned, docs/real_tasks.md).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
source "$HERE/../study18/common.sh"
OUT=${STUDY18CT_OUT:-/work/data18_run/study18ct}
export STUDY18CT_PRETRAIN_EPOCHS=${STUDY18CT_PRETRAIN_EPOCHS:-9} STUDY18CT_PRETRAIN_ITERS=${STUDY18CT_PRETRAIN_ITERS:-25}
export STUDY18CT_FT_EPOCHS=${STUDY18CT_FT_EPOCHS:-8} STUDY18CT_FT_ITERS=${STUDY18CT_FT_ITERS:-10}
export STUDY18CT_FT_VAL_BATCHES=${STUDY18CT_FT_VAL_BATCHES:-2}
study_pin "${STUDY18CT_CORE:-0}" 19
PRETRAINER=${STUDY18CT_PRETRAINER:-nnUNetTrainerV2_GenesisPretrain_S18CTInside}
PRE_SEED=${STUDY18CT_PRETRAIN_SEED-0}
PRE_RESULTS=$(pretraining_results "$PRE_SEED")
PRE_FOLD="$PRE_RESULTS/nnUNet/3d_fullres/Task622_GenesisHeadCT/${PRETRAINER}__nnUNetPlansv2.1/fold_0"
WEIGHTS=${STUDY18CT_WEIGHTS:-$PRE_FOLD/model_final_checkpoint.model}
mkdir -p "$OUT"
case "${1:?prepare|pretrain|study|restoration}" in
  prepare)
    # imagesTr only (a plain folder): the Decathlon task folder would bring imagesTs, the test images, too
    "${PIN[@]}" nnUNet_genesis_prepare -t 602 -i "$RAW/Task62_HeadCT/imagesTr" -o 622 -np 1 ;;
  pretrain)
    # fold 0: the diagnostics score the fold's held-out validation cases
    # seeded (STUDY18CT_PRETRAIN_SEED, default 0; "" for nnU-Net's own draws): the same data, seed and machine give
    # the same checkpoint again (nnunet_genesis/training_seed.py)
    pretrain_step "$PRE_FOLD" "$STUDY18CT_PRETRAIN_EPOCHS" "$STUDY18CT_PRETRAIN_ITERS" \
      "${PIN[@]}" RESULTS_FOLDER="$PRE_RESULTS" nnUNet_genesis_training_seed="$PRE_SEED" \
      nnUNet_train 3d_fullres "$PRETRAINER" Task622_GenesisHeadCT 0 ;;
  study)
    # shellcheck disable=SC2086
    "${PIN[@]}" nnUNet_genesis_study -t 602 -w "$WEIGHTS" -o "$OUT/${STUDY18CT_STUDY_NAME:-study_headct}" \
      --test_labels "$RAW/Task62_HeadCT/labelsTs" \
      --seeds ${STUDY18CT_SEEDS:-0 1 2 3 4} --counts ${STUDY18CT_COUNTS:-2 4} \
      --scratch_trainer "${STUDY18CT_SCRATCH_TRAINER:-nnUNetTrainerV2_Scratch_S18CT}" --genesis_trainer "${STUDY18CT_GENESIS_TRAINER:-nnUNetTrainerV2_Genesis_S18CT}" ;;
  restoration)
    "${PIN[@]}" nnUNet_genesis_restoration "${@:2}" ;;
  *) echo "unknown step $1" >&2; exit 2 ;;
esac
