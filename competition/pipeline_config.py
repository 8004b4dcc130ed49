"""The pipeline's configuration: the user's choices (:class:`PipelineOptions`), checked against the Decathlon
folder and the environment, become every name, id and folder the steps need (:class:`PipelineConfig`).

nnU-Net's own names and folders come from :mod:`nnunet_genesis.nnunet_v1.layout`; the steps that use this
configuration are in :mod:`competition.pipeline_steps`, the running in :mod:`competition.pipeline`.
"""
import dataclasses
import json
import os
import re
import sys
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple, Union

from nnunet_genesis.io import raw_dataset
from nnunet_genesis.io.atomic import refuse_output_inside_inputs
from nnunet_genesis.nnunet_v1 import layout

DEFAULT_PLANS_IDENTIFIER = layout.DEFAULT_PLANS_IDENTIFIER
DEFAULT_PRETRAINER = "nnUNetTrainerV2_GenesisPretrain"
DEFAULT_TRAINER = "nnUNetTrainerV2_Genesis"
DEFAULT_FOLDS = (0, 1, 2, 3, 4)
DEFAULT_PRED_ROOT = "genesis_predictions"
PRETRAIN_ID_OFFSET = 500
NETWORK = "3d_fullres"
FIVE_FOLDS = ("0", "1", "2", "3", "4")
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


@dataclass(frozen=True)
class PipelineOptions:
    """The user's choices (``nnUNet_genesis_run_task``'s options), before any check."""
    task_id: Optional[int] = None            # default: the Decathlon folder's XX
    folds: Union[Sequence, str, int] = DEFAULT_FOLDS
    pretrain_task_id: Optional[int] = None   # default: task id + 500 (see default_pretrain_task_id)
    unlabeled: Sequence[str] = ()            # extra sources for prepare
    pretrainer: str = DEFAULT_PRETRAINER
    trainer: str = DEFAULT_TRAINER
    plans_identifier: str = DEFAULT_PLANS_IDENTIFIER
    pred_root: str = DEFAULT_PRED_ROOT
    num_processes: int = 2
    plan_2d: bool = False
    verify_dataset_integrity: bool = False


def nnunet_folders(env) -> layout.NnUNetFolders:
    """nnU-Net's folders for commands started with ``env``; PipelineConfigError unless all three are set."""
    missing = layout.missing_folder_variables(env)
    if missing:
        raise PipelineConfigError(
            "environment variable(s) %s not set: nnU-Net does not know where its folders are. Set all three, "
            "e.g.\n  export nnUNet_raw_data_base=/data/nnUNet_raw_data_base\n  export nnUNet_preprocessed="
            "/data/nnUNet_preprocessed\n  export RESULTS_FOLDER=/data/nnUNet_trained_models\n(see nnU-Net's "
            "documentation/setting_up_paths.md)" % ", ".join(missing))
    return layout.folders_from_env(env)


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
    folders: layout.NnUNetFolders
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
        return layout.trainer_folder(self.folders.results, NETWORK, task_name, trainer, self.plans_identifier)

    @property
    def pretrain_output_dir(self):
        """The pretraining's fold folder (nnU-Net names the folder of fold 'all' just 'all')."""
        return os.path.join(self.trainer_dir(self.pretrain_task_name, self.pretrainer), layout.fold_folder_name("all"))

    @property
    def pretrained_weights(self):
        return os.path.join(self.pretrain_output_dir, layout.FINAL_CHECKPOINT)

    def fold_dir(self, fold):
        return os.path.join(self.trainer_dir(self.task_name, self.trainer), layout.fold_folder_name(fold))

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
    missing = [s for s in raw_dataset.TASK_SUBFOLDERS if not os.path.isdir(os.path.join(folder, s))]
    if missing:
        raise PipelineConfigError("%s: not a Decathlon task folder, %s missing" % (folder, ", ".join(missing)))
    dataset_json = raw_dataset.dataset_json(folder)
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


def make_config(decathlon_dir, options: Optional[PipelineOptions] = None, env=None, bin_dir=None,
                **choices) -> PipelineConfig:
    """Check the inputs and derive every name, id and folder; PipelineConfigError on bad input.

    The user's choices come as ``options`` (a :class:`PipelineOptions`) and/or as keywords of the same names
    (``make_config(d, task_id=3, folds=(0,))``), keywords overriding ``options``.
    """
    options = dataclasses.replace(options or PipelineOptions(), **choices)
    task_id, pretrain_task_id, num_processes = options.task_id, options.pretrain_task_id, options.num_processes
    pretrainer, trainer, plans_identifier = options.pretrainer, options.trainer, options.plans_identifier
    env = os.environ if env is None else env
    folders = nnunet_folders(env)
    decathlon_name, number, test_images = read_decathlon_task(decathlon_dir)
    task_id = _check_task_id(number if task_id is None else task_id, "-t/--task_id")
    task_name = layout.task_name(task_id, layout.short_name_of(decathlon_name))
    pretrain_task_id = _check_task_id(default_pretrain_task_id(task_id) if pretrain_task_id is None
                                      else pretrain_task_id, "--pretrain_task_id")
    if pretrain_task_id == task_id:
        raise PipelineConfigError("--pretrain_task_id %d is the task's own id" % pretrain_task_id)
    from nnunet_genesis.nnunet_v1.prepare import pretraining_task_name   # the name nnUNet_genesis_prepare gives it
    pretrain_task_name = pretraining_task_name(pretrain_task_id, task_name)
    _check_free(folders, task_id, task_name, "-t/--task_id")
    _check_free(folders, pretrain_task_id, pretrain_task_name, "--pretrain_task_id")
    unlabeled = tuple(os.path.abspath(str(s)) for s in options.unlabeled)
    for source in unlabeled:
        if not os.path.exists(source):
            raise PipelineConfigError("--unlabeled source %s does not exist" % source)
    # nothing this pipeline writes (predictions, nnU-Net's folders) lands inside what it reads
    outputs = [("--pred_root", options.pred_root)] + [(variable, env.get(variable)) for variable in layout.FOLDER_VARIABLES]
    if os.path.lexists(options.pred_root) and not os.path.isdir(options.pred_root):
        raise PipelineConfigError("--pred_root %s exists and is not a folder" % options.pred_root)
    for option, output in outputs:
        if output:
            refuse_output_inside_inputs(output, {"-i": decathlon_dir, "--unlabeled": list(unlabeled)}, option)
    if int(num_processes) < 1:
        raise PipelineConfigError("-np must be at least 1")
    for option, name in (("--pretrainer", pretrainer), ("--trainer", trainer), ("-p", plans_identifier)):
        if not name or os.sep in name or name != name.strip():
            raise PipelineConfigError("%s %r is not a class / plans name" % (option, name))
    return PipelineConfig(
        decathlon_dir=os.path.abspath(decathlon_dir), decathlon_name=decathlon_name, task_id=task_id,
        task_name=task_name, pretrain_task_id=pretrain_task_id, pretrain_task_name=pretrain_task_name,
        folds=_normalise_folds(options.folds), unlabeled=unlabeled, pretrainer=pretrainer, trainer=trainer,
        plans_identifier=plans_identifier, pred_root=os.path.abspath(options.pred_root), num_processes=int(num_processes),
        plan_2d=bool(options.plan_2d), verify_dataset_integrity=bool(options.verify_dataset_integrity),
        folders=folders,
        bin_dir=bin_dir or os.path.dirname(sys.executable), test_images=test_images)

