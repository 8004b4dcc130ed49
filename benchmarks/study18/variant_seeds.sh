#!/usr/bin/env bash
# Issue #18 (docs/measurements_study18_crn.md, section 9): a fine-tuning variant of the Genesis arm from one seeded
# checkpoint, over section 8's fine-tuning seeds, against section 8's scratch runs (share_scratch.sh copies them
# from OUT/s8_SETTING_p0, which is not modified), so that the variant pairs seed by seed with both scratch and the
# default trainer's runs from the same checkpoint (OUT/s8_SETTING_pN).
#
#   benchmarks/study18/variant_seeds.sh SETTING CORE PRETRAIN_SEED TRAINER SEED...
#   e.g. benchmarks/study18/variant_seeds.sh deepgrey_n4 1 2 nnUNetTrainerV2_GenesisMixNorm_S18 0 1 2 3 4 5 6 7 8 9
#
# The study folder is OUT/<VARIANT_STUDY_PREFIX of settings.sh>N_<TRAINER without its nnUNetTrainerV2_Genesis
# prefix and the setting's suffix, lower case>, e.g. s9_deepgrey_n4_p2_mixnorm; a rerun resumes it.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
source "$HERE/settings.sh"
SETTING=${1:?setting}; CORE=${2:?core}; P=${3:?pretraining seed}; TRAINER=${4:?Genesis trainer}; shift 4
SEEDS=("$@"); [ ${#SEEDS[@]} -gt 1 ] || { echo "give the fine-tuning seeds, at least two" >&2; exit 2; }
export nnUNet_genesis_allow_unlearned=1
setting_env "$SETTING" "$CORE"
SHORT=${TRAINER#nnUNetTrainerV2_Genesis}; SHORT=${SHORT%"$SUFFIX"}
[ -n "$SHORT" ] && [ "$SHORT" != "$TRAINER" ] || { echo "$TRAINER: not a Genesis variant of this setting (*$SUFFIX)" >&2; exit 2; }
DST=$OUT/$VARIANT_STUDY_PREFIX${P}_$(echo "$SHORT" | tr '[:upper:]' '[:lower:]')
"$HERE/share_scratch.sh" "$OUT/${MORE_SEEDS_PREFIX}0" "$DST" "$SCRATCH"
echo "== $SETTING: $TRAINER from pretraining seed $P, study $(basename "$DST"), seeds ${SEEDS[*]} ($(date -u +%H:%M))"
export "${PREFIX}_PRETRAIN_SEED=$P"
study "$(basename "$DST")" "$TRAINER" "${SEEDS[@]}"
echo "== $SETTING: done ($(date -u +%H:%M))"
