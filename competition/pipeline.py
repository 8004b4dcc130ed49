"""One Decathlon task end to end with the stock nnU-Net v1 commands: ``nnUNet_genesis_run_task``.

The pipeline only *runs commands a user could type*: every step is a stock console script (the scripts
installed beside the running Python), started as a subprocess that inherits the environment, and every
command is printed (``shlex.join``, copy-pasteable) before it runs.  Nothing here trains, converts or
predicts by itself, so a step that fails can be rerun, changed or continued by hand from the printed
line.  The six steps, for a Decathlon folder ``TaskXX_Name`` and ``TASK_ID`` (default XX), giving
``TaskNNN_Name`` with NNN = TASK_ID, and ``PRETRAIN_ID`` (default TASK_ID + 500, or TASK_ID - 500 when
TASK_ID > 500) giving ``TaskMMM_Genesis<Name>``:

1. convert   ``nnUNet_convert_decathlon_task -i TaskXX_Name -output_task_id NNN -p NP``
             done when ``$nnUNet_raw_data_base/nnUNet_raw_data/TaskNNN_Name/dataset.json`` exists (the
             converter copies it last, after every image was split).
2. plan      ``nnUNet_plan_and_preprocess -t NNN -pl2d None -tl NP -tf NP``
             done when the 3D plans ``<PLANS>_plans_3D.pkl`` exist and the last (full-resolution) stage
             folder holds ``.npz`` + ``.pkl`` for every training case of the raw dataset.json
             (with ``--plan_2d`` the 2D plans and their data too).
3. prepare   ``nnUNet_genesis_prepare -t NNN -i TaskXX_Name [EXTRA ...] -o MMM -np NP``
             done when ``prepare_report.json`` of TaskMMM lists exactly these sources, this target and
             plans identifier, and every case it lists has its ``.npz`` + ``.pkl``.  Otherwise the command
             runs again; it is incremental itself (finished cases are kept), so adding ``--unlabeled``
             sources later only prepares the new cases.  Also done once the pretraining is finished (its
             only reader), so its data may be deleted after pretraining to save space.
4. pretrain  ``nnUNet_train 3d_fullres PRETRAINER TaskMMM_Genesis<Name> all``
             done when ``model_final_checkpoint.model`` exists in its ``all`` folder; a started run
             (``model_latest.model`` or ``model_best.model`` there) is continued with ``-c``.
5. finetune  per fold ``nnUNet_train 3d_fullres TRAINER TaskNNN_Name FOLD -pretrained_weights W`` with W =
             ``$RESULTS_FOLDER/nnUNet/3d_fullres/TaskMMM_Genesis<Name>/PRETRAINER__PLANS/all/``
             ``model_final_checkpoint.model``;
             done per fold when ``fold_F/model_final_checkpoint.model`` and ``fold_F/validation_raw/
             summary.json`` exist.  A started fold is continued with ``-c`` instead (nnU-Net ignores
             ``-pretrained_weights`` with ``-c``: the weights are in the checkpoint already); a trained fold
             whose validation did not finish gets ``-val`` (validation only).
             With all five folds, then ``nnUNet_determine_postprocessing -m 3d_fullres -t NNN -tr TRAINER``:
             nnU-Net's postprocessing choice from the cross-validation (``postprocessing.json``, applied by
             nnUNet_predict); done when that file is newer than the five final checkpoints.
6. predict   ``nnUNet_predict -i .../TaskNNN_Name/imagesTs -o PRED_ROOT/TaskXX_Name -t NNN -m 3d_fullres
             -tr TRAINER -f FOLDS ...``
             done when a prediction exists for every test image listed in the Decathlon dataset.json and
             none is older than the model (a fold's final checkpoint, postprocessing.json).  Missing cases
             only: nnUNet_predict predicts just those.  Older predictions (the model was retrained) are redone
             with ``--overwrite_existing``.  The output folder is named as the Decathlon names the task, the
             layout ``nnUNet_genesis_submission -i PRED_ROOT`` reads.

``-p PLANS`` is passed to the training, preparation and prediction commands only when it differs from
nnU-Net's default, so the printed commands read like nnU-Net's documentation.

Resume rules: every step is checked against the files on disk just before it would run; a finished step
prints ``[skip] <step>: <why>`` and costs nothing, so rerunning the same command after an interruption
continues where it stopped.  Each step is checked on its own outputs, not on how its inputs were made: a
finished pretraining is not redone because prepare would now add cases, nor a finished fold because the
pretraining changed (delete the output folder, or pick another ``--pretrain_task_id`` / trainer, to redo one).
After a step's commands succeed, its check must pass, otherwise the pipeline stops and says what is
missing.  A failing command stops the pipeline with the step, the command and its exit status.

Two choices where nnU-Net leaves one open:

* ``--verify_dataset_integrity`` is *not* passed by default.  The Decathlon data are those nnU-Net was
  built and benchmarked on; the check reads every image again, starts ``nnUNet_def_n_proc`` (default 8)
  processes whatever ``-np`` says, and turns small header differences into an exception that stops
  planning even where nnU-Net's author advises ignoring it (LiTS, i.e. the Liver data:
  MIC-DKFZ/nnUNet#850).  Ask for it with ``--verify_dataset_integrity`` (then the flag is passed).
* The 2D configuration is not planned (``-pl2d None``): this pipeline trains ``3d_fullres`` only, and 2D
  preprocessing writes another full-resolution copy of the data set.  ``--plan_2d`` plans it too.

The stock converter deletes hidden files (names starting with '.', e.g. macOS ``._*`` metadata) from the
Decathlon folder's ``imagesTr``, ``labelsTr`` and ``imagesTs``; nothing else there is touched.
"""
import json
import os
import pickle
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

from competition.msd import MSD_TASKS

DEFAULT_PLANS_IDENTIFIER = "nnUNetPlansv2.1"
DEFAULT_PRETRAINER = "nnUNetTrainerV2_GenesisPretrain"
DEFAULT_TRAINER = "nnUNetTrainerV2_Genesis"
DEFAULT_FOLDS = (0, 1, 2, 3, 4)
DEFAULT_PRED_ROOT = "genesis_predictions"
PRETRAIN_ID_OFFSET = 500
NETWORK = "3d_fullres"

STEP_NAMES = ("convert", "plan", "prepare", "pretrain", "finetune", "predict")
STEP_TITLES = {
    "convert": "Decathlon folder -> nnU-Net raw task",
    "plan": "experiment planning and preprocessing",
    "prepare": "unlabeled volumes -> pretraining task with the target's plans",
    "pretrain": "Models Genesis pretraining",
    "finetune": "fine-tuning from the pretrained weights",
    "predict": "test-set prediction",
}

NNUNET_FOLDER_VARIABLES = ("nnUNet_raw_data_base", "nnUNet_preprocessed", "RESULTS_FOLDER")
PREPARE_REPORT = "prepare_report.json"       # written by nnunet_genesis.unlabeled
FINAL_CHECKPOINT = "model_final_checkpoint.model"
VALIDATION_SUMMARY = os.path.join("validation_raw", "summary.json")   # written by nnUNet_train after training
FIVE_FOLDS = ("0", "1", "2", "3", "4")
RESUMABLE_CHECKPOINTS = ("model_latest.model", "model_best.model")   # what nnUNet_train -c loads, in order
NETWORK_FOLDERS = ("2d", "3d_lowres", "3d_fullres", "3d_cascade_fullres")
_DECATHLON_NAME = re.compile(r"^Task(?P<number>\d\d)_(?P<name>.+)$")


class PipelineConfigError(ValueError):
    """Bad input found before anything ran (the message names the file, folder or option at fault)."""


class PipelineError(RuntimeError):
    """A step failed; ``step`` and ``command`` say which, ``returncode`` how."""

    def __init__(self, message, step=None, command=None, returncode=None):
        super().__init__(message)
        self.step = step
        self.command = command
        self.returncode = returncode


# ----------------------------------------------------------------------------------------------------------------
# configuration: names, folders and ids, all derived from the Decathlon folder and the environment
# ----------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class NnUNetFolders:
    """nnU-Net v1's folders, from the same environment variables nnunet.paths reads."""
    raw: str            # $nnUNet_raw_data_base/nnUNet_raw_data
    cropped: str        # $nnUNet_raw_data_base/nnUNet_cropped_data
    preprocessed: str   # $nnUNet_preprocessed
    results: str        # $RESULTS_FOLDER/nnUNet

    @classmethod
    def from_env(cls, env):
        missing = [name for name in NNUNET_FOLDER_VARIABLES if not env.get(name)]
        if missing:
            raise PipelineConfigError(
                "environment variable(s) %s not set: nnU-Net does not know where its folders are. Set all three, "
                "e.g.\n  export nnUNet_raw_data_base=/data/nnUNet_raw_data_base\n  export nnUNet_preprocessed="
                "/data/nnUNet_preprocessed\n  export RESULTS_FOLDER=/data/nnUNet_trained_models\n(see nnU-Net's "
                "documentation/setting_up_paths.md)" % ", ".join(missing))
        base = os.path.abspath(env["nnUNet_raw_data_base"])
        return cls(raw=os.path.join(base, "nnUNet_raw_data"), cropped=os.path.join(base, "nnUNet_cropped_data"),
                   preprocessed=os.path.abspath(env["nnUNet_preprocessed"]),
                   results=os.path.join(os.path.abspath(env["RESULTS_FOLDER"]), "nnUNet"))

    def task_folders(self, task_id):
        """Every folder named Task<task_id:03d>_* that nnU-Net's id lookup would see (convert_id_to_task_name)."""
        prefix = "Task%03d_" % int(task_id)
        parents = [self.raw, self.cropped, self.preprocessed] + [os.path.join(self.results, n) for n in NETWORK_FOLDERS]
        found = []
        for parent in parents:
            if os.path.isdir(parent):
                found += [os.path.join(parent, d) for d in sorted(os.listdir(parent))
                          if d.startswith(prefix) and os.path.isdir(os.path.join(parent, d))]
        return found


@dataclass(frozen=True)
class PipelineConfig:
    """Everything the steps need; built and checked by :func:`make_config`."""
    decathlon_dir: str               # absolute, e.g. /data/Task03_Liver
    decathlon_name: str              # Task03_Liver (the leaderboard / submission folder name)
    task_id: int                     # 3
    task_name: str                   # Task003_Liver
    pretrain_task_id: int            # 503
    pretrain_task_name: str          # Task503_GenesisLiver
    folds: Tuple[str, ...]           # ("0", "1", ...) or ("all",)
    unlabeled: Tuple[str, ...]       # extra sources for prepare (absolute)
    pretrainer: str
    trainer: str
    plans_identifier: str
    pred_root: str                   # absolute
    num_processes: int
    plan_2d: bool
    verify_dataset_integrity: bool
    folders: NnUNetFolders
    bin_dir: str                     # where the stock console scripts are
    test_images: Tuple[str, ...]     # basenames of the Decathlon dataset.json test list

    # --- where things are ---------------------------------------------------------------------------------
    @property
    def raw_task_dir(self):
        return os.path.join(self.folders.raw, self.task_name)

    @property
    def preprocessed_task_dir(self):
        return os.path.join(self.folders.preprocessed, self.task_name)

    @property
    def pretrain_preprocessed_dir(self):
        return os.path.join(self.folders.preprocessed, self.pretrain_task_name)

    def trainer_dir(self, task_name, trainer):
        return os.path.join(self.folders.results, NETWORK, task_name, "%s__%s" % (trainer, self.plans_identifier))

    @property
    def pretrain_output_dir(self):
        """The pretraining's fold folder (nnU-Net names the folder of fold 'all' just 'all')."""
        return os.path.join(self.trainer_dir(self.pretrain_task_name, self.pretrainer), "all")

    @property
    def pretrained_weights(self):
        return os.path.join(self.pretrain_output_dir, FINAL_CHECKPOINT)

    def fold_dir(self, fold):
        fold = str(fold)
        return os.path.join(self.trainer_dir(self.task_name, self.trainer), "all" if fold == "all" else "fold_" + fold)

    @property
    def all_five_folds(self):
        """nnU-Net decides its postprocessing only from the cross-validation of all five folds."""
        return set(FIVE_FOLDS) <= set(self.folds)

    @property
    def postprocessing_file(self):
        return os.path.join(self.trainer_dir(self.task_name, self.trainer), "postprocessing.json")

    @property
    def prediction_dir(self):
        return os.path.join(self.pred_root, self.decathlon_name)

    @property
    def prepare_sources(self):
        return (self.decathlon_dir,) + tuple(self.unlabeled)

    def script(self, name):
        return os.path.join(self.bin_dir, name)

    def plans_option(self):
        """``-p PLANS`` only when it is not nnU-Net's default (the printed commands stay the documented ones)."""
        return [] if self.plans_identifier == DEFAULT_PLANS_IDENTIFIER else ["-p", self.plans_identifier]


def default_pretrain_task_id(task_id):
    """TASK_ID + 500 (3 -> 503), or TASK_ID - 500 for ids above 500 (903 -> 403): in 1..999 and never TASK_ID.

    Task 500 has no default (0 is no task id); PipelineConfigError asks for --pretrain_task_id.
    """
    task_id = int(task_id)
    if task_id == PRETRAIN_ID_OFFSET:
        raise PipelineConfigError("task id %d has no default pretraining task id: give --pretrain_task_id"
                                  % task_id)
    return task_id + PRETRAIN_ID_OFFSET if task_id < PRETRAIN_ID_OFFSET else task_id - PRETRAIN_ID_OFFSET


def _check_task_id(value, option):
    try:
        task_id = int(value)
    except (TypeError, ValueError):
        raise PipelineConfigError("%s %r is not an integer" % (option, value)) from None
    if not 1 <= task_id <= 999:
        raise PipelineConfigError("%s %d is outside 1..999 (nnU-Net task ids have three digits)" % (option, task_id))
    return task_id


def _check_free(folders, task_id, task_name, option):
    """The id must not already belong to a task of another name: nnU-Net's id lookup would refuse it later."""
    clash = [p for p in folders.task_folders(task_id) if os.path.basename(p) != task_name]
    if clash:
        raise PipelineConfigError("task id %03d is already used by %s (this pipeline needs it for %s); choose "
                                  "another id with %s" % (task_id, clash[0], task_name, option))


def read_decathlon_task(decathlon_dir):
    """(TaskXX_Name, XX, test image basenames) of a Decathlon task folder; PipelineConfigError when the folder
    is not one that ``nnUNet_convert_decathlon_task`` accepts."""
    folder = os.path.abspath(decathlon_dir)
    name = os.path.basename(folder)
    if not os.path.isdir(folder):
        raise PipelineConfigError("Decathlon task folder %s does not exist" % folder)
    match = _DECATHLON_NAME.match(name)
    if match is None:
        raise PipelineConfigError("%s: a Decathlon task folder is named TaskXX_Name with a two-digit XX (e.g. "
                                  "Task03_Liver), as nnUNet_convert_decathlon_task requires" % folder)
    missing = [s for s in ("imagesTr", "labelsTr", "imagesTs") if not os.path.isdir(os.path.join(folder, s))]
    if missing:
        raise PipelineConfigError("%s: not a Decathlon task folder, %s missing" % (folder, ", ".join(missing)))
    dataset_json = os.path.join(folder, "dataset.json")
    try:
        with open(dataset_json) as f:
            dataset = json.load(f)
    except OSError as err:
        raise PipelineConfigError("%s: cannot read (%s)" % (dataset_json, err.strerror or err)) from None
    except ValueError as err:
        raise PipelineConfigError("%s: not valid JSON (%s)" % (dataset_json, err)) from None
    if not isinstance(dataset, dict) or not isinstance(dataset.get("training"), list):
        raise PipelineConfigError("%s: no 'training' list" % dataset_json)
    test = dataset.get("test", [])
    if not isinstance(test, list) or not all(isinstance(t, str) for t in test):
        raise PipelineConfigError("%s: 'test' must be a list of image paths" % dataset_json)
    return name, int(match.group("number")), tuple(os.path.basename(t) for t in test)


def _normalise_folds(folds):
    if isinstance(folds, (str, int)):
        folds = [folds]
    out = []
    for fold in folds:
        text = str(fold)
        if text != "all" and not (text.isdigit()):
            raise PipelineConfigError("fold %r: a fold is a number (0..4 for nnU-Net's 5-fold split) or 'all'" % fold)
        text = text if text == "all" else str(int(text))
        if text not in out:
            out.append(text)
    if not out:
        raise PipelineConfigError("no fold given")
    return tuple(out)


def make_config(decathlon_dir, task_id=None, folds=DEFAULT_FOLDS, pretrain_task_id=None, unlabeled=(),
                pretrainer=DEFAULT_PRETRAINER, trainer=DEFAULT_TRAINER, plans_identifier=DEFAULT_PLANS_IDENTIFIER,
                pred_root=DEFAULT_PRED_ROOT, num_processes=2, plan_2d=False, verify_dataset_integrity=False,
                env=None, bin_dir=None) -> PipelineConfig:
    """Check the inputs and derive every name, id and folder; PipelineConfigError on bad input."""
    env = os.environ if env is None else env
    folders = NnUNetFolders.from_env(env)
    decathlon_name, number, test_images = read_decathlon_task(decathlon_dir)
    task_id = _check_task_id(number if task_id is None else task_id, "-t/--task_id")
    task_name = "Task%03d_%s" % (task_id, decathlon_name.split("_", 1)[1])
    pretrain_task_id = _check_task_id(default_pretrain_task_id(task_id) if pretrain_task_id is None
                                      else pretrain_task_id, "--pretrain_task_id")
    if pretrain_task_id == task_id:
        raise PipelineConfigError("--pretrain_task_id %d is the task's own id" % pretrain_task_id)
    from nnunet_genesis.unlabeled import pretraining_task_name   # the name nnUNet_genesis_prepare gives it
    pretrain_task_name = pretraining_task_name(pretrain_task_id, task_name)
    _check_free(folders, task_id, task_name, "-t/--task_id")
    _check_free(folders, pretrain_task_id, pretrain_task_name, "--pretrain_task_id")
    unlabeled = tuple(os.path.abspath(str(s)) for s in unlabeled)
    for source in unlabeled:
        if not os.path.exists(source):
            raise PipelineConfigError("--unlabeled source %s does not exist" % source)
    if int(num_processes) < 1:
        raise PipelineConfigError("-np must be at least 1")
    for option, name in (("--pretrainer", pretrainer), ("--trainer", trainer), ("-p", plans_identifier)):
        if not name or os.sep in name or name != name.strip():
            raise PipelineConfigError("%s %r is not a class / plans name" % (option, name))
    return PipelineConfig(
        decathlon_dir=os.path.abspath(decathlon_dir), decathlon_name=decathlon_name, task_id=task_id,
        task_name=task_name, pretrain_task_id=pretrain_task_id, pretrain_task_name=pretrain_task_name,
        folds=_normalise_folds(folds), unlabeled=unlabeled, pretrainer=pretrainer, trainer=trainer,
        plans_identifier=plans_identifier, pred_root=os.path.abspath(pred_root), num_processes=int(num_processes),
        plan_2d=bool(plan_2d), verify_dataset_integrity=bool(verify_dataset_integrity), folders=folders,
        bin_dir=bin_dir or os.path.dirname(sys.executable), test_images=test_images)


# ----------------------------------------------------------------------------------------------------------------
# steps: commands and done-checks, pure functions of the configuration and the files on disk
# ----------------------------------------------------------------------------------------------------------------

@dataclass
class Part:
    """One command of a step: ``done`` says why it need not run (None: it must run), ``note`` why/how it runs."""
    command: List[str]
    done: Optional[str] = None
    note: Optional[str] = None


@dataclass
class Step:
    """A pipeline step as planned from the files on disk (see :func:`plan_steps`)."""
    number: int
    name: str
    title: str
    parts: List[Part] = field(default_factory=list)

    @property
    def commands(self) -> List[List[str]]:
        """The commands still to run (argv lists, the script as an absolute path)."""
        return [p.command for p in self.parts if p.done is None]

    @property
    def done(self) -> bool:
        return not self.commands

    @property
    def skip_reasons(self) -> List[str]:
        return [p.done for p in self.parts if p.done is not None]

    @property
    def pending(self) -> List[str]:
        """Why the commands still to run are needed."""
        return [p.note for p in self.parts if p.done is None and p.note]


@dataclass
class StepResult:
    name: str
    commands: List[List[str]]        # what ran (or, in a dry run, would run); [] when skipped
    status: str                      # "ran", "skipped" or "dry_run"
    seconds: float


def _cases_without_data(folder, case_ids):
    """Case ids lacking ``<id>.npz`` or ``<id>.pkl`` in ``folder`` (nnU-Net's preprocessed pair)."""
    return [c for c in case_ids if not (os.path.isfile(os.path.join(folder, c + ".npz"))
                                        and os.path.isfile(os.path.join(folder, c + ".pkl")))]


def _load_pickle(path):
    with open(path, "rb") as f:
        return pickle.load(f)


def _load_json(path):
    with open(path) as f:
        return json.load(f)


def _strip_nii_gz(name):
    return name[:-len(".nii.gz")] if name.endswith(".nii.gz") else os.path.splitext(name)[0]


def convert_status(config: PipelineConfig) -> Tuple[bool, str]:
    dataset_json = os.path.join(config.raw_task_dir, "dataset.json")
    if os.path.isfile(dataset_json):
        return True, "%s exists" % dataset_json
    return False, "no %s" % dataset_json


def _stage_status(config, plans_file, what):
    """(done, why) for one plans file and the data of its last stage."""
    if not os.path.isfile(plans_file):
        return False, "no %s plans %s" % (what, plans_file)
    try:
        plans = _load_pickle(plans_file)
        stage = max(plans["plans_per_stage"].keys())
        stage_dir = os.path.join(config.preprocessed_task_dir, "%s_stage%d" % (plans["data_identifier"], stage))
    except Exception as err:  # a damaged plans file means: plan again
        return False, "%s unreadable (%s: %s)" % (plans_file, type(err).__name__, err)
    try:
        training = _load_json(os.path.join(config.raw_task_dir, "dataset.json"))["training"]
        cases = [_strip_nii_gz(os.path.basename(t["image"])) for t in training]
    except (OSError, ValueError, KeyError, TypeError):
        return False, "no readable training list in %s" % os.path.join(config.raw_task_dir, "dataset.json")
    missing = _cases_without_data(stage_dir, cases)
    if missing:
        return False, "%d of %d training case(s) not preprocessed in %s (e.g. %s)" % (
            len(missing), len(cases), stage_dir, missing[0])
    return True, "%s and %d preprocessed case(s) in %s" % (os.path.basename(plans_file), len(cases), stage_dir)


def plan_status(config: PipelineConfig) -> Tuple[bool, str]:
    kinds = [("3D", "_plans_3D.pkl")] + ([("2D", "_plans_2D.pkl")] if config.plan_2d else [])
    reasons = []
    for what, suffix in kinds:
        done, why = _stage_status(config, os.path.join(config.preprocessed_task_dir,
                                                       config.plans_identifier + suffix), what)
        if not done:
            return False, why
        reasons.append(why)
    return True, "; ".join(reasons)


def prepare_status(config: PipelineConfig) -> Tuple[bool, str]:
    report_file = os.path.join(config.pretrain_preprocessed_dir, PREPARE_REPORT)
    if not os.path.isfile(report_file):
        return False, "no %s" % report_file
    try:
        report = _load_json(report_file)
        sources = sorted(os.path.abspath(s) for s in report["sources"])
        cases = [c["case_id"] for c in report["cases"]]
        data_dir = report["data_dir"]
        target, plans_identifier = report["target_task"], report["plans_identifier"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        return False, "%s unreadable (%s)" % (report_file, err)
    if target != config.task_name or plans_identifier != config.plans_identifier:
        return False, "%s was prepared for %s with %s" % (report_file, target, plans_identifier)
    if sources != sorted(config.prepare_sources):
        added = sorted(set(config.prepare_sources) - set(sources))
        return False, "other sources than last time (%s)" % (
            "new: " + ", ".join(added) if added else "last time: " + ", ".join(sources))
    plans_file = os.path.join(config.pretrain_preprocessed_dir, config.plans_identifier + "_plans_3D.pkl")
    if not os.path.isfile(plans_file):
        return False, "no %s" % plans_file
    missing = _cases_without_data(data_dir, cases)
    if missing:
        return False, "%d of %d prepared case(s) missing in %s" % (len(missing), len(cases), data_dir)
    return True, "%s: %d case(s) from the same source(s) in %s" % (PREPARE_REPORT, len(cases), data_dir)


def _training_status(output_dir):
    """('done', file) / ('started', file) / ('new', None) for one nnUNet_train output (fold) folder."""
    final = os.path.join(output_dir, FINAL_CHECKPOINT)
    if os.path.isfile(final):
        return "done", final
    for name in RESUMABLE_CHECKPOINTS:
        if os.path.isfile(os.path.join(output_dir, name)):
            return "started", os.path.join(output_dir, name)
    return "new", None


def _predictions_state(config):
    """(missing predictions, stale predictions, why): stale = older than a fold's final checkpoint or the
    postprocessing.json used (or a checkpoint is missing: that fold is still to be trained, so whatever
    prediction is there came from another model)."""
    outputs = [os.path.join(config.prediction_dir, name) for name in config.test_images]
    missing = [p for p in outputs if not os.path.isfile(p)]
    present = [p for p in outputs if os.path.isfile(p)]
    checkpoints = [os.path.join(config.fold_dir(f), FINAL_CHECKPOINT) for f in config.folds]
    absent = [c for c in checkpoints if not os.path.isfile(c)]
    if absent:
        why = "no final checkpoint %s yet, so the existing predictions come from another model" % absent[0]
        return missing, present, why if present else ""
    models = checkpoints + ([config.postprocessing_file] if config.all_five_folds and
                            os.path.isfile(config.postprocessing_file) else [])
    newest = max(os.stat(m).st_mtime_ns for m in models) if models else 0
    stale = [p for p in present if os.stat(p).st_mtime_ns < newest]
    why = "%d prediction(s) older than the model (final checkpoints, postprocessing.json)" % len(stale) \
        if stale else ""
    return missing, stale, why


# --- the six step planners -------------------------------------------------------------------------------------

def _part(command, done, why):
    """A single-command step's part: ``why`` explains the done state either way."""
    return Part(command, why if done else None, None if done else why)


def plan_convert(config: PipelineConfig) -> List[Part]:
    done, why = convert_status(config)
    command = [config.script("nnUNet_convert_decathlon_task"), "-i", config.decathlon_dir,
               "-output_task_id", str(config.task_id), "-p", str(config.num_processes)]
    return [_part(command, done, why)]


def plan_plan(config: PipelineConfig) -> List[Part]:
    done, why = plan_status(config)
    command = [config.script("nnUNet_plan_and_preprocess"), "-t", str(config.task_id)]
    if not config.plan_2d:
        command += ["-pl2d", "None"]
    command += ["-tl", str(config.num_processes), "-tf", str(config.num_processes)]
    if config.verify_dataset_integrity:
        command.append("--verify_dataset_integrity")
    return [_part(command, done, why)]


def plan_prepare(config: PipelineConfig) -> List[Part]:
    done, why = prepare_status(config)
    if not done and os.path.isfile(config.pretrained_weights):
        # only the pretraining reads these data; once it is finished they may have been deleted to save space
        done, why = True, "the pretraining is finished (%s exists), its data are not needed again" % \
            config.pretrained_weights
    command = [config.script("nnUNet_genesis_prepare"), "-t", str(config.task_id), "-i"] + \
        list(config.prepare_sources) + ["-o", str(config.pretrain_task_id), "-np", str(config.num_processes)] + \
        config.plans_option()
    return [_part(command, done, why)]


def plan_pretrain(config: PipelineConfig) -> List[Part]:
    state, checkpoint = _training_status(config.pretrain_output_dir)
    command = [config.script("nnUNet_train"), NETWORK, config.pretrainer, config.pretrain_task_name, "all"] + \
        config.plans_option()
    if state == "done":
        return [Part(command, "%s exists" % checkpoint)]
    if state == "started":
        return [Part(command + ["-c"], None, "continuing the started pretraining from %s (-c)" % checkpoint)]
    return [Part(command, None, "no %s" % os.path.join(config.pretrain_output_dir, FINAL_CHECKPOINT))]


def plan_finetune(config: PipelineConfig) -> List[Part]:
    parts = []
    for fold in config.folds:
        state, checkpoint = _training_status(config.fold_dir(fold))
        command = [config.script("nnUNet_train"), NETWORK, config.trainer, config.task_name, fold] + \
            config.plans_option()
        summary = os.path.join(config.fold_dir(fold), VALIDATION_SUMMARY)
        if state == "done" and os.path.isfile(summary):
            parts.append(Part(command, "fold %s: %s and %s exist" % (fold, FINAL_CHECKPOINT, VALIDATION_SUMMARY)))
        elif state == "done":
            # trained, but the validation that nnUNet_train runs afterwards did not finish
            parts.append(Part(command + ["-val"], None, "fold %s: trained, no %s: validation only (-val)"
                              % (fold, summary)))
        elif state == "started":
            # nnU-Net ignores -pretrained_weights with -c: the transferred weights are in the checkpoint
            parts.append(Part(command + ["-c"], None, "fold %s: continuing from %s (-c)" % (fold, checkpoint)))
        else:
            parts.append(Part(command + ["-pretrained_weights", config.pretrained_weights], None,
                              "fold %s: new, from the pretrained weights" % fold))
    if config.all_five_folds:
        parts.append(_postprocessing_part(config))
    return parts


def _postprocessing_part(config: PipelineConfig) -> Part:
    """nnU-Net's postprocessing choice (keep only the largest component per class where that helped in the
    cross-validation), made once all five folds are validated; nnUNet_predict applies it when present."""
    command = [config.script("nnUNet_determine_postprocessing"), "-m", NETWORK, "-t", str(config.task_id),
               "-tr", config.trainer]
    if config.plans_identifier != DEFAULT_PLANS_IDENTIFIER:
        command += ["-pl", config.plans_identifier]
    pp_file = config.postprocessing_file
    checkpoints = [os.path.join(config.fold_dir(f), FINAL_CHECKPOINT) for f in FIVE_FOLDS]
    if os.path.isfile(pp_file) and all(os.path.isfile(c) for c in checkpoints) and \
            os.stat(pp_file).st_mtime_ns >= max(os.stat(c).st_mtime_ns for c in checkpoints):
        return Part(command, "%s exists, newer than the five folds' checkpoints" % pp_file)
    return Part(command, None, "postprocessing from the five folds' validation: no up-to-date %s" % pp_file)


def plan_predict(config: PipelineConfig) -> List[Part]:
    command = [config.script("nnUNet_predict"), "-i", os.path.join(config.raw_task_dir, "imagesTs"),
               "-o", config.prediction_dir, "-t", str(config.task_id), "-m", NETWORK, "-tr", config.trainer,
               "-f"] + list(config.folds) + config.plans_option() + \
        ["--num_threads_preprocessing", str(config.num_processes),
         "--num_threads_nifti_save", str(config.num_processes)]
    if not config.test_images:
        return [Part(command, "%s/dataset.json lists no test images" % config.decathlon_dir)]
    missing, stale, why_stale = _predictions_state(config)
    if not missing and not stale:
        return [Part(command, "a prediction for each of the %d test image(s) in %s, newer than the model"
                     % (len(config.test_images), config.prediction_dir))]
    if stale:
        return [Part(command + ["--overwrite_existing"], None, why_stale + ": predicting every case again")]
    return [Part(command, None, "%d of %d test image(s) without a prediction in %s"
                 % (len(missing), len(config.test_images), config.prediction_dir))]


STEP_PLANNERS: Dict[str, Callable[[PipelineConfig], List[Part]]] = {
    "convert": plan_convert, "plan": plan_plan, "prepare": plan_prepare,
    "pretrain": plan_pretrain, "finetune": plan_finetune, "predict": plan_predict,
}


def plan_step(name, config: PipelineConfig) -> Step:
    """One step as the files on disk stand now."""
    return Step(STEP_NAMES.index(name) + 1, name, STEP_TITLES[name], STEP_PLANNERS[name](config))


def _steps_until(stop_after):
    if stop_after is None:
        return STEP_NAMES
    if stop_after not in STEP_NAMES:
        raise PipelineConfigError("--stop_after %r is not one of %s" % (stop_after, ", ".join(STEP_NAMES)))
    return STEP_NAMES[:STEP_NAMES.index(stop_after) + 1]


def plan_steps(decathlon_dir, task_id=None, folds=DEFAULT_FOLDS, pretrain_task_id=None, unlabeled=(),
               pretrainer=DEFAULT_PRETRAINER, trainer=DEFAULT_TRAINER, plans_identifier=DEFAULT_PLANS_IDENTIFIER,
               pred_root=DEFAULT_PRED_ROOT, stop_after=None, num_processes=2, plan_2d=False,
               verify_dataset_integrity=False, env=None, bin_dir=None) -> List[Step]:
    """The steps up to ``stop_after`` with their commands, each checked against the files on disk now.

    Pure apart from reading the disk: nothing is run or written.  A step whose ``commands`` is empty is done.
    (Run for real, each step is planned again just before it runs, since earlier steps change the disk.)
    """
    config = make_config(decathlon_dir, task_id=task_id, folds=folds, pretrain_task_id=pretrain_task_id,
                         unlabeled=unlabeled, pretrainer=pretrainer, trainer=trainer,
                         plans_identifier=plans_identifier, pred_root=pred_root, num_processes=num_processes,
                         plan_2d=plan_2d, verify_dataset_integrity=verify_dataset_integrity, env=env,
                         bin_dir=bin_dir)
    return [plan_step(name, config) for name in _steps_until(stop_after)]


# ----------------------------------------------------------------------------------------------------------------
# running
# ----------------------------------------------------------------------------------------------------------------

def format_command(command, env=None):
    """The copy-pasteable line for ``command``: the script by name when the PATH finds that very script,
    by absolute path otherwise."""
    env = os.environ if env is None else env
    script = command[0]
    name = os.path.basename(script)
    found = shutil.which(name, path=env.get("PATH", ""))
    shown = name if found and os.path.realpath(found) == os.path.realpath(script) else script
    return shlex.join([shown] + [str(a) for a in command[1:]])


def format_seconds(seconds):
    """'12.3 s' below a minute, 'H:MM:SS' above."""
    if seconds < 60:
        return "%.1f s" % seconds
    seconds = int(round(seconds))
    return "%d:%02d:%02d" % (seconds // 3600, seconds // 60 % 60, seconds % 60)


def _run_command(step, command, env):
    line = format_command(command, env)
    sys.stdout.flush()
    sys.stderr.flush()
    if not os.path.isfile(command[0]):
        raise PipelineError("step %s: %s not found: is nnU-Net installed in this Python environment (%s)?"
                            % (step.name, command[0], sys.executable), step=step.name, command=line)
    try:
        returncode = subprocess.run(command, env=env).returncode
    except OSError as err:
        raise PipelineError("step %s: cannot start %s (%s)" % (step.name, line, err), step=step.name,
                            command=line) from None
    if returncode != 0:
        raise PipelineError("step %d/%d %s failed (exit status %d) running:\n  %s\nFix the cause (see the output "
                            "above) and run the same nnUNet_genesis_run_task command again: finished steps are "
                            "skipped." % (step.number, len(STEP_NAMES), step.name, returncode, line),
                            step=step.name, command=line, returncode=returncode)


def run_task(decathlon_dir, task_id=None, folds=DEFAULT_FOLDS, pretrain_task_id=None, unlabeled=(),
             pretrainer=DEFAULT_PRETRAINER, trainer=DEFAULT_TRAINER, plans_identifier=DEFAULT_PLANS_IDENTIFIER,
             pred_root=DEFAULT_PRED_ROOT, stop_after=None, dry_run=False, num_processes=2, env=None, log=print,
             plan_2d=False, verify_dataset_integrity=False) -> List[StepResult]:
    """Run a Decathlon task end to end with the stock commands (see the module docstring for the steps).

    Prints (through ``log``) a header per step, every command before it runs and the time each step took;
    finished steps print ``[skip] <step>: <why>``.  ``dry_run`` prints the commands the current disk state
    calls for and runs nothing.  Raises PipelineConfigError on bad input (before anything runs) and
    PipelineError when a command fails or a step leaves its output incomplete.
    """
    env = dict(os.environ if env is None else env)
    config = make_config(decathlon_dir, task_id=task_id, folds=folds, pretrain_task_id=pretrain_task_id,
                         unlabeled=unlabeled, pretrainer=pretrainer, trainer=trainer,
                         plans_identifier=plans_identifier, pred_root=pred_root, num_processes=num_processes,
                         plan_2d=plan_2d, verify_dataset_integrity=verify_dataset_integrity, env=env)
    names = _steps_until(stop_after)
    log("%s -> %s (pretraining task %s), folds %s%s" % (config.decathlon_name, config.task_name,
                                                         config.pretrain_task_name, " ".join(config.folds),
                                                         " [dry run: nothing is run]" if dry_run else ""))
    results = []
    total_start = time.time()
    for name in names:
        start = time.time()
        step = plan_step(name, config)       # planned now: the earlier steps have just changed the disk
        log("[%d/%d] %s: %s" % (step.number, len(STEP_NAMES), name, step.title))
        if step.done:
            log("[skip] %s: %s" % (name, "; ".join(step.skip_reasons)))
            results.append(StepResult(name, [], "skipped", time.time() - start))
            continue
        for reason in step.skip_reasons:
            log("[skip] %s %s" % (name, reason))
        for part in step.parts:
            if part.done is not None:
                continue
            if part.note:
                log("  (%s)" % part.note)
            log("%s %s" % ("[dry run]" if dry_run else "$", format_command(part.command, env)))
            if not dry_run:
                _run_command(step, part.command, env)
        if not dry_run:
            after = plan_step(name, config)
            if not after.done:
                raise PipelineError("step %d/%d %s: its command(s) succeeded but its output is incomplete: %s"
                                    % (step.number, len(STEP_NAMES), name, "; ".join(after.pending)), step=name)
        seconds = time.time() - start
        results.append(StepResult(name, step.commands, "dry_run" if dry_run else "ran", seconds))
        if not dry_run:
            log("[%d/%d] %s finished in %s" % (step.number, len(STEP_NAMES), name, format_seconds(seconds)))
    if stop_after is not None and stop_after != STEP_NAMES[-1]:
        log("stopped after %s (as asked: stop_after)" % stop_after)
    elif not dry_run:
        log("predictions: %s" % config.prediction_dir)
        if config.decathlon_name in MSD_TASKS:
            log("next, check them for the leaderboard (and pack all ten tasks with -o submission.zip):\n  %s"
                % shlex.join(["nnUNet_genesis_submission", "-i", config.pred_root, "-d",
                              os.path.dirname(config.decathlon_dir), "--tasks", config.decathlon_name,
                              "--check_only"]))
    if not dry_run:
        log("total time %s" % format_seconds(time.time() - total_start))
    return results
