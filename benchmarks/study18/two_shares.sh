#!/usr/bin/env bash
# Issue #18 (docs/measurements_study18_crn.md, sections 5 and 6): one study setting, Genesis with the default
# pretrained share 0.3 against share 0.1, both against the same scratch runs, seed by seed.
#
#   benchmarks/study18/two_shares.sh SETTING CORE [SEED ...]      # seeds default 0 1 2 3 4
#
# SETTING: one of settings.sh. For each seed in turn: the share-0.3 study (scratch + Genesis, seeds so far), its
# finished scratch runs copied into the share-0.1 study (share_scratch.sh), then the share-0.1 study (seeds so far;
# the scratch runs reused). So at any time the two studies hold the same seeds, give or take the one under way.
# Each study resumes: run it again after an interruption. Weights: the run scripts' default (their seeded
# pretraining checkpoint, seed 0).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
source "$HERE/settings.sh"
SETTING=${1:?setting}; CORE=${2:?core}; shift 2
SEEDS=("$@"); [ ${#SEEDS[@]} -gt 0 ] || SEEDS=(0 1 2 3 4)
export nnUNet_genesis_allow_unlearned=1
setting_env "$SETTING" "$CORE"
A=$DEFAULT_STUDY; B=s6_${SETTING}_mix10
done_seeds=()
for seed in "${SEEDS[@]}"; do
  done_seeds+=("$seed")
  echo "== $SETTING: seeds ${done_seeds[*]} ($(date -u +%H:%M))"
  study "$A" "$GENESIS" "${done_seeds[@]}"
  "$HERE/share_scratch.sh" "$OUT/$A" "$OUT/$B" "$SCRATCH"
  study "$B" "nnUNetTrainerV2_GenesisMix10$SUFFIX" "${done_seeds[@]}"
done
echo "== $SETTING: done ($(date -u +%H:%M))"
