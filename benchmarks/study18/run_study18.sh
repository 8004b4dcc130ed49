#!/usr/bin/env bash
# Issue #18: the first real downstream study, on Task601_DeepGrey (cases smaller than the patch).
# Reproduces docs/measurements_study18.md. Every training/prediction runs on ONE core (core 1), nice'd,
# single-threaded, one augmentation worker: the budgets below are CPU-minutes on that one core.
#
#   benchmarks/study18/run_study18.sh prepare   # unlabeled Task611_GenesisDeepGrey = Task601's 16 training images
#                                               # (+ Task612 for the restoration check only)
#   benchmarks/study18/run_study18.sh prepare_heads  # Task613: the 16 crops + 4 whole heads (STUDY18_PRETRAIN_TASK=Task613_GenesisDeepGrey)
#   benchmarks/study18/run_study18.sh pretrain  # adamw_inpaint_inside, STUDY18_PRETRAIN_EPOCHS x _ITERS
#                                               # (default 28 x 25: 30 CPU-minutes), fold 0
#   benchmarks/study18/run_study18.sh study     # nnUNet_genesis_study, seeds 0-4, counts 2 4 (STUDY18_COUNTS)
#   benchmarks/study18/run_study18.sh restoration  # independent check of the final checkpoint
#
# Settings (environment): STUDY18_OUT (output root), STUDY18_STUDY (the study's folder in it), STUDY18_CORE
# (the core, default 1), STUDY18_PRETRAINER (a pretraining variant in trainers/study18_trainers.py),
# STUDY18_SEEDS, STUDY18_COUNTS, STUDY18_FT_EPOCHS x STUDY18_FT_ITERS (fine-tuning budget of both arms),
# STUDY18_PRETRAIN_TASK, STUDY18_PRETRAIN_SEED (default 0; another seed pretrains into, and studies from, its own
# results folder: common.sh pretraining_results), STUDY18_WEIGHTS (default: that task's fold-0 final checkpoint),
# STUDY18_GENESIS_TRAINER (a variant in trainers/study18_trainers.py), STUDY18_SCRATCH_TRAINER (default the
# unseeded nnUNetTrainerV2_Scratch_S18; nnUNetTrainerV2_ScratchSeeded_S18 shares the Genesis arm's draws).
#
# Needs: the worktree's venv, /work/data18_run/env.sh (Task601 built and planned, docs/real_tasks.md).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
source "$HERE/common.sh"
OUT=${STUDY18_OUT:-/work/data18_run/study18}
export STUDY18_PRETRAIN_EPOCHS=${STUDY18_PRETRAIN_EPOCHS:-28} STUDY18_PRETRAIN_ITERS=${STUDY18_PRETRAIN_ITERS:-25}
export STUDY18_FT_EPOCHS=${STUDY18_FT_EPOCHS:-10} STUDY18_FT_ITERS=${STUDY18_FT_ITERS:-10}
study_pin "${STUDY18_CORE:-1}" 5
PRETRAINER=${STUDY18_PRETRAINER:-nnUNetTrainerV2_GenesisPretrain_S18Inside}
PRE_TASK=${STUDY18_PRETRAIN_TASK:-Task611_GenesisDeepGrey}
PRE_SEED=${STUDY18_PRETRAIN_SEED-0}
PRE_RESULTS=$(pretraining_results "$PRE_SEED")
PRE_FOLD="$PRE_RESULTS/nnUNet/3d_fullres/$PRE_TASK/${PRETRAINER}__nnUNetPlansv2.1/fold_0"
WEIGHTS=${STUDY18_WEIGHTS:-$PRE_FOLD/model_final_checkpoint.model}
GENESIS_TRAINER=${STUDY18_GENESIS_TRAINER:-nnUNetTrainerV2_Genesis_S18}
STUDY=${STUDY18_STUDY:-study_deepgrey}
mkdir -p "$OUT"
case "${1:?prepare|prepare_heads|pretrain|study|restoration}" in
  prepare)
    # imagesTr only (a plain folder): the Decathlon task folder would bring imagesTs, the test images, too
    "${PIN[@]}" nnUNet_genesis_prepare -t 601 -i "$RAW/Task61_DeepGrey/imagesTr" -o 611 -np 1
    # for the independent restoration check only (never trained on): the 32 unlabelled crops at other brain
    # positions of the training sources (docs/real_tasks.md), with Task601's plans
    "${PIN[@]}" nnUNet_genesis_prepare -t 601 -i "$RAW/Task61_DeepGrey_unlabelled" -o 612 -np 1 ;;
  prepare_heads)
    # Task613_GenesisDeepGrey: Task601's 16 training crops + 4 whole-head T1 volumes of Task601's TRAINING
    # sources (colin27, colin27hr, itkt1, mni2009a; as is, Task63_WholeHead's v0 files), none of its test sources;
    # the shape of the held-out task's pretraining data (its images plus 4 whole-head volumes)
    mkdir -p "$RAW/Task61_heads"
    for s in colin27 colin27hr itkt1 mni2009a; do
      cp -n "$RAW"/Task63_WholeHead/images*/wholehead_${s}_v0.nii.gz "$RAW/Task61_heads/head_${s}.nii.gz"
    done
    "${PIN[@]}" nnUNet_genesis_prepare -t 601 -i "$RAW/Task61_DeepGrey/imagesTr" "$RAW/Task61_heads" -o 613 -np 1 ;;
  pretrain)
    # fold 0: the diagnostics score the fold's held-out validation cases (the same 4 cases the study validates on)
    # seeded (STUDY18_PRETRAIN_SEED, default 0; "" for nnU-Net's own draws): the same data, seed and machine give
    # the same checkpoint again (nnunet_genesis/training_seed.py)
    pretrain_step "$PRE_FOLD" "$STUDY18_PRETRAIN_EPOCHS" "$STUDY18_PRETRAIN_ITERS" \
      "${PIN[@]}" RESULTS_FOLDER="$PRE_RESULTS" nnUNet_genesis_training_seed="$PRE_SEED" \
      nnUNet_train 3d_fullres "$PRETRAINER" "$PRE_TASK" 0 ;;
  study)
    # nnUNet_genesis_allow_unlearned=1: this study measures what fine-tuning does from whatever the pretraining
    # produced; if its record says it did not learn, the verdict is still printed in every Genesis log and in
    # study.md (the trainer would otherwise refuse, issue #18)
    # shellcheck disable=SC2086
    "${PIN[@]}" nnUNet_genesis_allow_unlearned=1 nnUNet_genesis_study -t 601 -w "$WEIGHTS" -o "$OUT/$STUDY" \
      --test_labels "$RAW/Task61_DeepGrey/labelsTs" \
      --seeds ${STUDY18_SEEDS:-0 1 2 3 4} --counts ${STUDY18_COUNTS:-2 4} \
      --scratch_trainer "${STUDY18_SCRATCH_TRAINER:-nnUNetTrainerV2_Scratch_S18}" --genesis_trainer "$GENESIS_TRAINER" ;;
  restoration)
    # the final checkpoint on 20 never-seen crops (Task612), then on Task611 (its 4 fold-0 validation cases among
    # 16; 12 were trained on)
    "${PIN[@]}" nnUNet_genesis_restoration -w "$WEIGHTS" -t 612 -o "$OUT/restoration_task612" --cases 20 || echo "exit $?"
    "${PIN[@]}" nnUNet_genesis_restoration -w "$WEIGHTS" -t 611 -o "$OUT/restoration_task611" --cases 16 || echo "exit $?" ;;
  *) echo "unknown step $1" >&2; exit 2 ;;
esac
