# Sourced by the issue-#18 study run scripts (run_study18.sh, ../study18ct/run_study18ct.sh,
# ../study18wh/run_study18wh.sh) after they set HERE to their own folder: the set-up they share.
#   - the worktree's venv and /work/data18_run/env.sh (nnU-Net v1 folders; docs/real_tasks.md builds the tasks);
#   - RAW: the raw task folders; nnUNet_extTrainer: the calling script's trainers/ folder;
#   - study_pin CORE NICE: sets PIN, the prefix that runs a command on ONE core, nice'd, single-threaded, with one
#     augmentation worker (so a budget is CPU time on that core).
REPO="$(cd "$HERE/../.." && pwd)"
source "$REPO/.venv/bin/activate"
source /work/data18_run/env.sh
RAW=/work/data18_run/raw
export nnUNet_extTrainer="$HERE/trainers"

# pretraining_results SEED: where the pretraining with seed SEED writes its checkpoint: RESULTS_FOLDER for seed 0 and
# for "" (unseeded), as always; RESULTS_FOLDER_pretrain_seedN beside it for another seed, so that no seed's
# checkpoint replaces another's (the pretraining seed as a study factor, docs/measurements_study18_crn.md section 7).
pretraining_results() {
  case "$1" in 0|"") echo "$RESULTS_FOLDER" ;; *) echo "${RESULTS_FOLDER}_pretrain_seed$1" ;; esac
}

# pretrain_step FOLD EPOCHS ITERS COMMAND...: the pretraining COMMAND (a budget of EPOCHS x ITERS iterations),
# unless FOLD holds its final checkpoint: a checkpoint is never trained over (move the folder away to train again),
# and one trained with another budget (nnU-Net's debug.json: max_num_epochs, num_batches_per_epoch) stops the step
# instead of being used as this one's; with -c where FOLD holds an interrupted one's latest
pretrain_step() {
  local fold=$1 epochs=$2 iters=$3; shift 3
  if [ -f "$fold/model_final_checkpoint.model" ]; then
    python - "$fold" "$epochs" "$iters" <<'PY' || return 1
import json, os, sys
fold, epochs, iters = sys.argv[1:]
try:
    with open(os.path.join(fold, "debug.json")) as f:
        debug = json.load(f)
    trained = (debug["max_num_epochs"], debug["num_batches_per_epoch"])
except (OSError, ValueError, KeyError) as error:
    sys.exit("%s: its final checkpoint's budget cannot be read from debug.json (%s)" % (fold, error))
if trained != (epochs, iters):
    sys.exit("%s: its final checkpoint was trained %s x %s iterations, this step asks for %s x %s: move the folder "
             "away to train it again" % (fold, trained[0], trained[1], epochs, iters))
PY
    echo "[skip] pretraining: $fold/model_final_checkpoint.model exists (${epochs} x ${iters} iterations)"
  elif [ -f "$fold/model_latest.model" ]; then
    "$@" -c
  else
    "$@"
  fi
}

study_pin() {
  PIN=(taskset -c "$1" nice -n "$2" env OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 nnUNet_n_proc_DA=1)
}
