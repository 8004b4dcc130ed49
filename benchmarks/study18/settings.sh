# Sourced by two_shares.sh and pretrain_seeds.sh (issue #18, docs/measurements_study18_crn.md sections 5 to 7),
# after they set HERE to this folder: the five study settings of the share rule.
#
#   setting_env SETTING CORE   sets COUNT, SUFFIX (of the benchmark trainers), OUT (the studies' root), RUN (the run
#                              script), PREFIX and NAME_VAR (its variables), SCRATCH (the seeded scratch trainer),
#                              GENESIS (the Genesis trainer at the default share 0.3), the study folders' names
#                              (DEFAULT_STUDY: section 6's, seed 0's checkpoint; SEED_STUDY_PREFIX + N: section 7's,
#                              pretraining seed N; MORE_SEEDS_PREFIX + N: section 8's, more_seeds.sh;
#                              RANDOM_CONTROL_PREFIX (+ N for control N > 0): section 9's, random_control.sh;
#                              VARIANT_STUDY_PREFIX + N_variant: section 9's, variant_seeds.sh), and exports
#                              the run script's core, labelled-case count and budgets
#   study NAME GENESIS_TRAINER SEED...   the setting's study OUT/NAME (resumes): SCRATCH against GENESIS_TRAINER
#
# SETTING: deepgrey_n2 | deepgrey_n4   (Task601, 100 fine-tuning iterations, run_study18.sh)
#          headct16_n2 | headct16_n4   (Task602, 16 iterations, ../study18ct/run_study18ct.sh)
#          headct64_n2                 (Task602, 64 iterations)
# Pretraining budgets (30 CPU-minutes, section 6): the run scripts' defaults, Task611 28 x 25 iterations, Task622
# 9 x 25 (run_study18ct.sh's default since 2026-12-05; sections 2 to 5 of the CT study name theirs).
setting_env() {
  case "$1" in
    deepgrey_n2|deepgrey_n4)
      COUNT=${1#deepgrey_n}; SUFFIX=_S18; OUT=/work/data18_run/study18
      RUN="$HERE/run_study18.sh"; PREFIX=STUDY18; NAME_VAR=STUDY18_STUDY
      export STUDY18_CORE=$2 STUDY18_COUNTS=$COUNT ;;
    headct16_n2|headct16_n4|headct64_n2)
      COUNT=${1#headct??_n}; SUFFIX=_S18CT; OUT=/work/data18_run/study18ct
      RUN="$HERE/../study18ct/run_study18ct.sh"; PREFIX=STUDY18CT; NAME_VAR=STUDY18CT_STUDY_NAME
      local iters=${1#headct}; iters=${iters%_n*}
      export STUDY18CT_CORE=$2 STUDY18CT_COUNTS=$COUNT STUDY18CT_FT_EPOCHS=$((iters / 4)) STUDY18CT_FT_ITERS=4 \
             STUDY18CT_FT_VAL_BATCHES=1 ;;
    *) echo "unknown setting $1" >&2; return 2 ;;
  esac
  SCRATCH=nnUNetTrainerV2_ScratchSeeded$SUFFIX
  GENESIS=nnUNetTrainerV2_GenesisMix$SUFFIX
  DEFAULT_STUDY=s6_${1}_mix30
  SEED_STUDY_PREFIX=s7_${1}_p
  MORE_SEEDS_PREFIX=s8_${1}_p
  RANDOM_CONTROL_PREFIX=s9_${1}_random
  VARIANT_STUDY_PREFIX=s9_${1}_p
}

study() {
  local name=$1 trainer=$2; shift 2
  env "$NAME_VAR=$name" "${PREFIX}_SEEDS=$*" "${PREFIX}_GENESIS_TRAINER=$trainer" "${PREFIX}_SCRATCH_TRAINER=$SCRATCH" \
      "$RUN" study
}
