#!/usr/bin/env bash
# Issue #18: rebuild, on a fresh machine, the data the study18 scripts read (docs/real_tasks.md says what each task
# is and where its sources come from): the sources, Task61_DeepGrey and Task62_HeadCT in the Decathlon's raw
# format, their stock nnU-Net v1 conversion (601, 602) and planning, and the unlabeled pretraining tasks 611/612
# (Task601's plans) and 622 (Task602's). Then `run_study18.sh pretrain` and `../study18ct/run_study18ct.sh pretrain`.
#
#   benchmarks/study18/rebuild_data.sh [ROOT]     # ROOT defaults to /work/data18_run; needs root for apt-get
#
# A step whose output is already there is left as it is (the builder refuses to replace a task; nnU-Net's
# converter and planner are not re-run when their folder exists), so an interrupted rebuild is resumed by
# running it again.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
ROOT=${1:-/work/data18_run}
mkdir -p "$ROOT"
cat > "$ROOT/env.sh.partial" <<ENV
export nnUNet_raw_data_base=$ROOT/nnUNet_raw_data_base
export nnUNet_preprocessed=$ROOT/nnUNet_preprocessed
export RESULTS_FOLDER=$ROOT/RESULTS_FOLDER
ENV
mv "$ROOT/env.sh.partial" "$ROOT/env.sh"
source "$REPO/.venv/bin/activate"
source "$ROOT/env.sh"
mkdir -p "$nnUNet_raw_data_base" "$nnUNet_preprocessed" "$RESULTS_FOLDER"

# the sources (docs/real_tasks.md, "Sources"); the wheels are read as files, never imported
if [ ! -f /usr/share/mricron/templates/ch2.nii.gz ] \
   || [ ! -f /usr/share/doc/invesalius-examples/examples/Cranium.inv3 ] \
   || [ ! -d /usr/share/doc/insighttoolkit5-examples ]; then
  apt-get update -qq && apt-get install -y -qq mricron-data invesalius-examples insighttoolkit5-examples
fi
python -c "import importlib.util as u, sys
sys.exit(0 if all(u.find_spec(m) for m in ('nilearn', 'nimare', 'pydeface')) else 1)" \
  || pip install -q --no-deps nilearn nimare pydeface

for pair in "deepgrey Task61_DeepGrey 601" "headct Task62_HeadCT 602"; do
  set -- $pair
  [ -d "$ROOT/raw/$2" ] || python "$REPO/benchmarks/real_tasks.py" -o "$ROOT/raw" --tasks "$1"
  [ -d "$nnUNet_raw_data_base/nnUNet_raw_data/Task$3_${2#Task??_}" ] \
    || nnUNet_convert_decathlon_task -i "$ROOT/raw/$2" -output_task_id "$3" -p 1
  ls -d "$nnUNet_preprocessed"/Task$3_* > /dev/null 2>&1 || nnUNet_plan_and_preprocess -t "$3" -tl 1 -tf 1
done
# nnUNet_genesis_prepare keeps the cases it finished
"$HERE/run_study18.sh" prepare
"$REPO/benchmarks/study18ct/run_study18ct.sh" prepare
echo "rebuilt under $ROOT"
