"""nnU-Net v1's layout: where its folders are, and how it names tasks, plans files, stages and results.

The one owner of these names in this repository; every other module asks here.  Each name follows
nnU-Net 1.7.1's own code, cited beside it:

* folders: ``nnunet/paths.py`` reads ``nnUNet_raw_data_base`` (raw data in ``nnUNet_raw_data``, cropped data
  in ``nnUNet_cropped_data`` below it), ``nnUNet_preprocessed`` and ``RESULTS_FOLDER`` (results in its
  ``nnUNet`` subfolder) from the environment, once, when it is first imported.  Code running in this process
  beside nnU-Net's must see the same folders, so :func:`process_folders` reads them from ``nnunet.paths``;
  code that starts nnU-Net's commands with an environment of its own (the pipeline, the study) reads that
  environment with :func:`folders_from_env`.
* tasks: ``TaskNNN_Name`` with a three-digit id (``nnunet/utilities/task_name_id_conversion.py``); an id is
  turned into a name by nnU-Net's own lookup, :func:`resolve_task_name`.
* plans: ``<plans identifier>_plans_3D.pkl`` / ``_plans_2D.pkl`` in the preprocessed task folder, default
  identifier ``nnUNetPlansv2.1`` (``nnunet/paths.py: default_plans_identifier``,
  ``experiment_planning/experiment_planner_baseline_3DUNet_v21.py``).
* stages: the preprocessed data of stage ``s`` lie in ``<data_identifier>_stage<s>``
  (``preprocessing/preprocessing.py: GenericPreprocessor.run``); 3d_fullres trains the last stage of the 3D
  plans, 3d_lowres the first, 2d the (only) stage of the 2D plans (``run/default_configuration.py``).
* results: ``RESULTS_FOLDER/nnUNet/<network>/<task>/<trainer>__<plans identifier>/fold_<f>`` (``all`` for the
  fold ``all``) (``run/default_configuration.py``, ``training/network_training/network_trainer.py``).

The names that need no lookup (variables, folder and file names, task names) are defined in
:mod:`nnunet_genesis.nnunet_v1.names` (standard library only, for ``evaluation/``) and re-exported here.
Standard library and our helpers only at the top: ``nnunet`` is imported where nnU-Net's own lookup is asked.
"""
import os
import re
from dataclasses import dataclass
from typing import List, Mapping, Optional

from nnunet_genesis.io import safe_pickle
from nnunet_genesis.nnunet_v1.names import (  # noqa: F401 (the names without a lookup, re-exported: ask here)
    BEST_CHECKPOINT, CROPPED_DATA_FOLDER, FINAL_CHECKPOINT, FOLDER_VARIABLES, GT_SEGMENTATIONS_FOLDER,
    LATEST_CHECKPOINT, PREPROCESSED_VARIABLE, RAW_BASE_VARIABLE, RAW_DATA_FOLDER, RESULTS_SUBFOLDER,
    RESULTS_VARIABLE, RESUMABLE_CHECKPOINTS, TASK_NAME, VALIDATION_FOLDER, VALIDATION_SUMMARY, is_task_name,
    short_name_of, task_id_of, task_name, task_prefix)

DEFAULT_PLANS_IDENTIFIER = "nnUNetPlansv2.1"
PLANS_SUFFIX = {3: "_plans_3D.pkl", 2: "_plans_2D.pkl"}
NETWORKS = ("2d", "3d_lowres", "3d_fullres", "3d_cascade_fullres")


# ----------------------------------------------------------------------------------------------------------------
# folders
# ----------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class NnUNetFolders:
    """nnU-Net v1's folders; None where the environment variable behind one is not set."""
    raw: Optional[str]            # $nnUNet_raw_data_base/nnUNet_raw_data
    cropped: Optional[str]        # $nnUNet_raw_data_base/nnUNet_cropped_data
    preprocessed: Optional[str]   # $nnUNet_preprocessed
    results: Optional[str]        # $RESULTS_FOLDER/nnUNet

    def task_parents(self) -> List[str]:
        """The folders that hold task folders: raw, cropped, preprocessed and each network's results folder."""
        return [p for p in [self.raw, self.cropped, self.preprocessed] +
                ([os.path.join(self.results, n) for n in NETWORKS] if self.results else []) if p]

    def task_folders(self, task_id) -> List[str]:
        """Every folder named Task<task_id:03d>_* that nnU-Net's id lookup would see (convert_id_to_task_name
        searches the raw, cropped, preprocessed and every network's results folder)."""
        prefix = task_prefix(task_id)
        found = []
        for parent in self.task_parents():
            if parent and os.path.isdir(parent):
                found += [os.path.join(parent, d) for d in sorted(os.listdir(parent))
                          if d.startswith(prefix) and os.path.isdir(os.path.join(parent, d))]
        return found


def missing_folder_variables(env: Optional[Mapping[str, str]] = None, names=FOLDER_VARIABLES) -> List[str]:
    """Which of ``names`` are unset or empty in ``env`` (default: this process's environment)."""
    env = os.environ if env is None else env
    return [name for name in names if not env.get(name)]


def folders_from_env(env: Optional[Mapping[str, str]] = None) -> NnUNetFolders:
    """The folders nnU-Net's commands started with ``env`` will use (absolute paths; None where unset)."""
    env = os.environ if env is None else env
    base = os.path.abspath(env[RAW_BASE_VARIABLE]) if env.get(RAW_BASE_VARIABLE) else None
    return NnUNetFolders(
        raw=os.path.join(base, RAW_DATA_FOLDER) if base else None,
        cropped=os.path.join(base, CROPPED_DATA_FOLDER) if base else None,
        preprocessed=os.path.abspath(env[PREPROCESSED_VARIABLE]) if env.get(PREPROCESSED_VARIABLE) else None,
        results=os.path.join(os.path.abspath(env[RESULTS_VARIABLE]), RESULTS_SUBFOLDER)
        if env.get(RESULTS_VARIABLE) else None)


def process_folders() -> NnUNetFolders:
    """The folders nnU-Net's code in *this* process uses: ``nnunet.paths``, read when it was first imported
    (importing it creates the raw and cropped folders, as nnU-Net does)."""
    from nnunet import paths
    return NnUNetFolders(raw=paths.nnUNet_raw_data, cropped=paths.nnUNet_cropped_data,
                         preprocessed=paths.preprocessing_output_dir, results=paths.network_training_output_dir)


def unset_process_variables() -> List[str]:
    """The raw-data and preprocessed variables ``nnunet.paths`` found unset (what preparing data needs)."""
    folders = process_folders()
    return [name for name, value in ((RAW_BASE_VARIABLE, folders.raw), (PREPROCESSED_VARIABLE, folders.preprocessed))
            if value is None]


# ----------------------------------------------------------------------------------------------------------------
# task names and ids
# ----------------------------------------------------------------------------------------------------------------

def check_task_id(task_id) -> int:
    """``task_id`` as an int; ValueError unless it is a three-digit id 1..999 (nnU-Net's ``Task%03d_`` names and
    its id lookup know no other)."""
    try:
        value = int(str(task_id).strip())
    except ValueError:
        raise ValueError("task id %r is not a number" % (task_id,)) from None
    if not 0 < value < 1000:
        raise ValueError("task id %d is not a three-digit id (1..999)" % value)
    return value


class NoSuchTask(ValueError):
    """A task id or name no folder of nnU-Net carries: one line with the nearest existing names."""


def existing_task_names(folders: Optional[NnUNetFolders] = None) -> List[str]:
    """Every TaskNNN_Name folder in the raw, cropped, preprocessed and results folders (sorted, once each)."""
    folders = process_folders() if folders is None else folders
    names = set()
    for parent in folders.task_parents():
        if os.path.isdir(parent):
            names.update(d for d in os.listdir(parent) if TASK_NAME.match(d) and os.path.isdir(os.path.join(parent, d)))
    return sorted(names)


def _id_in(name: str) -> Optional[int]:
    found = re.match(r"^\D*(\d+)", name)
    return int(found.group(1)) if found else None


def nearest_names(asked, existing: List[str], count: int = 5) -> List[str]:
    """The ``count`` existing names nearest to ``asked`` (v1 and v2): for an id, the nearest ids; for a name, those
    with its id first, then by spelling (difflib's ratio)."""
    import difflib
    text, asked_id = str(asked), _id_in(str(asked))
    if text.isdigit():
        return sorted(existing, key=lambda name: (abs(_id_in(name) - asked_id), name))[:count]
    return sorted(existing, key=lambda name: (_id_in(name) != asked_id,
                                              -difflib.SequenceMatcher(None, text.lower(), name.lower()).ratio(),
                                              name))[:count]


def no_such_line(kind: str, asked, existing: List[str], where: str) -> str:
    """'no such task Task071_Typo (looked in ...); nearest existing: ...' (v1 and v2)."""
    nearest = nearest_names(asked, existing)
    shown = ("with id %d" % int(asked)) if str(asked).isdigit() else str(asked)
    return "no such %s %s (looked in %s); %s" % (
        kind, shown, where, ("nearest existing: " + ", ".join(nearest)) if nearest else "none exists there")


def _where(folders: NnUNetFolders) -> str:
    return ", ".join(p for p in (folders.raw, folders.preprocessed, folders.results) if p) or "no folder (unset)"


def resolve_task_name(task, folders: Optional[NnUNetFolders] = None) -> str:
    """'3', 3 or 'Task003_Liver' -> 'Task003_Liver', ids through nnU-Net's own lookup (convert_id_to_task_name,
    which raises RuntimeError when several folders carry the id).  NoSuchTask (a ValueError), naming the nearest
    existing tasks, when no folder of ``folders`` (default: this process's, :func:`process_folders`) carries the
    id or the name; ValueError for anything else."""
    text = str(task).strip()
    if not is_task_name(text) and not text.isdigit():
        raise ValueError("task %r is neither a task id nor a TaskNNN_Name" % (task,))
    folders = process_folders() if folders is None else folders
    existing = existing_task_names(folders)
    if is_task_name(text):
        if text not in existing:
            raise NoSuchTask(no_such_line("task", text, existing, _where(folders)))
        return text
    if not any(name.startswith(task_prefix(int(text))) for name in existing):
        raise NoSuchTask(no_such_line("task", text, existing, _where(folders)))
    from nnunet.utilities.task_name_id_conversion import convert_id_to_task_name
    return convert_id_to_task_name(int(text))


# ----------------------------------------------------------------------------------------------------------------
# plans and stages
# ----------------------------------------------------------------------------------------------------------------

def plans_dims(network: str) -> int:
    """2 for the 2d network (its plans file is the 2D one), 3 for every 3D network."""
    return 2 if network == "2d" else 3


def plans_file_name(plans_identifier: str = DEFAULT_PLANS_IDENTIFIER, dims: int = 3) -> str:
    """'nnUNetPlansv2.1_plans_3D.pkl' (dims 3) or '..._plans_2D.pkl' (dims 2)."""
    return plans_identifier + PLANS_SUFFIX[dims]


def plans_file(task_dir: str, plans_identifier: str = DEFAULT_PLANS_IDENTIFIER, dims: int = 3) -> str:
    """The plans file in a preprocessed task folder."""
    return os.path.join(task_dir, plans_file_name(plans_identifier, dims))


def load_plans(path: str) -> dict:
    """The plans dict pickled in ``path`` (nnU-Net's format), read with the restricted unpickler."""
    return safe_pickle.load(path)


def last_stage(plans: Mapping):
    """The stage 3d_fullres trains (the last of the 3D plans)."""
    return max(plans["plans_per_stage"].keys())


def stage_for_network(plans: Mapping, network: str = "3d_fullres"):
    """The stage ``network`` trains, as ``nnunet/run/default_configuration.py`` picks it: stage 0 for 2d and
    3d_lowres, the last stage for 3d_fullres and 3d_cascade_fullres.  ValueError where nnU-Net refuses: 3d_lowres
    or the cascade asked of plans with a single stage."""
    stages = sorted(plans["plans_per_stage"].keys())
    if network in ("3d_lowres", "3d_cascade_fullres") and len(stages) == 1:
        raise ValueError("a single 3D stage: %s does not exist, use 3d_fullres" % network)
    return stages[0] if network in ("2d", "3d_lowres") else stages[-1]


def stage_folder_name(plans: Mapping, stage) -> str:
    """'nnUNetData_plans_v2.1_stage1': where nnU-Net's preprocessor writes the data of ``stage``."""
    return "%s_stage%s" % (plans["data_identifier"], stage)


def stage_folder(task_dir: str, plans: Mapping, stage) -> str:
    return os.path.join(task_dir, stage_folder_name(plans, stage))


# ----------------------------------------------------------------------------------------------------------------
# results
# ----------------------------------------------------------------------------------------------------------------

def trainer_folder(results: str, network: str, task: str, trainer: str,
                   plans_identifier: str = DEFAULT_PLANS_IDENTIFIER) -> str:
    """``results/<network>/<task>/<trainer>__<plans identifier>`` (``results`` = $RESULTS_FOLDER/nnUNet)."""
    return os.path.join(results, network, task, "%s__%s" % (trainer, plans_identifier))


def fold_folder_name(fold) -> str:
    """'fold_0' for fold 0; 'all' for the fold 'all'."""
    return "all" if str(fold) == "all" else "fold_%d" % int(fold)


def fold_folder(results: str, network: str, task: str, trainer: str, fold,
                plans_identifier: str = DEFAULT_PLANS_IDENTIFIER) -> str:
    return os.path.join(trainer_folder(results, network, task, trainer, plans_identifier), fold_folder_name(fold))
