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

study_pin() {
  PIN=(taskset -c "$1" nice -n "$2" env OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 nnUNet_n_proc_DA=1)
}
