#!/usr/bin/env bash
# Issue #18: are two trainings of one study run repeatable? Trains TRAINER (default the seeded scratch arm,
# trainers/study18ct_trainers.py) twice on Task602_HeadCT fold 0 at the study's 16-iteration budget, one per core,
# into two results folders, then compares their final weights and nnU-Net's validation Dice per label. Both
# trainings get nnUNet_genesis_training_seed=12345 (nnunet_genesis/training_seed.py); a trainer that does not
# honour it (the plain scratch arm) draws nnU-Net's own unseeded numbers.
#   benchmarks/study18ct/seeded_repeat.sh                                     # nnUNetTrainerV2_Seeded
#   TRAINER=nnUNetTrainerV2_Scratch_S18CT benchmarks/study18ct/seeded_repeat.sh  # the study's plain scratch arm
# Needs what run_study18ct.sh needs (Task602 planned). Writes /work/data18_run/repeat_<TRAINER>_{0,1}.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
source "$HERE/../study18/common.sh"
TRAINER=${TRAINER:-nnUNetTrainerV2_ScratchSeeded_S18CT}
export STUDY18CT_FT_EPOCHS=4 STUDY18CT_FT_ITERS=4 STUDY18CT_FT_VAL_BATCHES=1 nnUNet_genesis_training_seed=12345
for c in 0 1; do
  study_pin "$c" 5
  RESULTS_FOLDER="/work/data18_run/repeat_${TRAINER}_$c" "${PIN[@]}" \
    nnUNet_train 3d_fullres "$TRAINER" Task602_HeadCT 0 > "/work/data18_run/repeat_${TRAINER}_$c.log" 2>&1 &
done
wait
python - "$TRAINER" <<'PY'
import json, sys
import torch
from nnunet_genesis.checkpoints.files import load_state_dict_from_checkpoint  # the package's restricted loader
folds = ["/work/data18_run/repeat_%s_%d/nnUNet/3d_fullres/Task602_HeadCT/%s__nnUNetPlansv2.1/fold_0"
         % (sys.argv[1], c, sys.argv[1]) for c in (0, 1)]
a, b = [load_state_dict_from_checkpoint(f + "/model_final_checkpoint.model") for f in folds]
print("final weights identical:", all(torch.equal(a[k], b[k]) for k in a),
      "; largest difference: %.3g" % max(float((a[k].float() - b[k].float()).abs().max()) for k in a))
for f in folds:
    mean = json.load(open(f + "/validation_raw/summary.json"))["results"]["mean"]
    print("validation Dice per label:", {k: round(v["Dice"], 4) for k, v in mean.items() if k != "0"})
PY
