"""nnU-Net v2's layout: where its folders are, and how it names datasets, plans, configurations and results.

The one owner of these names for v2 in this repository (``nnunet_v1/layout.py`` is v1's); every other module
asks here.  Each name follows nnunetv2 2.8.1's own code, cited beside it, and nnunetv2's own helpers are called
where they exist instead of re-deriving them:

* folders: ``nnunetv2/paths.py`` reads ``nnUNet_raw``, ``nnUNet_preprocessed`` and ``nnUNet_results`` from the
  environment *each time* they are used (``_EnvPath``), so this process and nnU-Net v2's code see the same
  folders; :func:`require_folder` turns an unset one into one line instead of nnunetv2's paragraph.
* datasets: ``DatasetXXX_Name`` with a three-digit id; an id becomes a name through nnunetv2's own lookup
  (``utilities/dataset_name_id_conversion.py``: ``find_candidate_datasets``, ``convert_dataset_name_to_id``).
* plans: ``<plans identifier>.json`` in the preprocessed dataset folder, default identifier ``nnUNetPlans``
  (``run/run_training.py``); the residual-encoder presets write ``nnUNetResEncUNet{M,L,XL}Plans``
  (``experiment_planning/experiment_planners/residual_unets/residual_encoder_unet_planners.py``).  Plans are
  read with ``utilities/plans_handling/plans_handler.py``'s ``PlansManager`` (configuration inheritance,
  preprocessor class, label manager).
* configurations: the preprocessed data of a configuration lie in ``<preprocessed dataset>/<data_identifier>``,
  normally ``<plans identifier>_<configuration>`` (``preprocessing/preprocessors/default_preprocessor.py:
  DefaultPreprocessor.run``; ``training/nnUNetTrainer/nnUNetTrainer.py: preprocessed_dataset_folder``).
* dataset.json (``channel_names``, ``labels``, ``numTraining``, ``file_ending``) and
  ``dataset_fingerprint.json`` beside the plans (the trainer copies both into its results folder).
* results: ``nnUNet_results/<dataset>/<trainer>__<plans identifier>__<configuration>/fold_<fold>``, ``fold_all``
  for the fold ``all``; the finished training's checkpoint is ``checkpoint_final.pth``
  (``nnUNetTrainer.__init__`` and ``on_train_end``; ``run/run_training.py: maybe_load_checkpoint``).

The names that need no lookup (variables, checkpoint and folder names, dataset names) are defined in
:mod:`nnunet_genesis.nnunet_v2.names` (standard library only, for ``evaluation/``) and re-exported here.
Standard library and our helpers only at the top: ``nnunetv2`` is imported where its own helpers are asked.
"""
import json
import os
from dataclasses import dataclass
from typing import List, Mapping, Optional

from nnunet_genesis.io import raw_dataset
from nnunet_genesis.nnunet_v2.names import (  # noqa: F401 (the names without a lookup, re-exported: ask here)
    BEST_CHECKPOINT, DATASET_NAME, FINAL_CHECKPOINT, FOLDER_VARIABLES, LATEST_CHECKPOINT, PREPROCESSED_VARIABLE,
    RAW_VARIABLE, RESULTS_VARIABLE, VALIDATION_FOLDER, VALIDATION_SUMMARY, LayoutError, _check_id, dataset_name,
    dataset_prefix, is_dataset_name)

_FOLDER_ATTRIBUTES = {RAW_VARIABLE: "raw", PREPROCESSED_VARIABLE: "preprocessed", RESULTS_VARIABLE: "results"}
_FOLDER_ROLES = {RAW_VARIABLE: "raw datasets", PREPROCESSED_VARIABLE: "preprocessed datasets",
                 RESULTS_VARIABLE: "trained models"}

DEFAULT_PLANS_IDENTIFIER = "nnUNetPlans"
RESENC_PLANS_IDENTIFIERS = ("nnUNetResEncUNetMPlans", "nnUNetResEncUNetLPlans", "nnUNetResEncUNetXLPlans")
DEFAULT_CONFIGURATION = "3d_fullres"
DATASET_JSON = raw_dataset.DATASET_JSON
FINGERPRINT_JSON = "dataset_fingerprint.json"


class NoSuchDataset(LayoutError):
    """A dataset id or name no folder of nnU-Net v2 carries: one line with the nearest existing names."""


# ----------------------------------------------------------------------------------------------------------------
# folders
# ----------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class NnUNetV2Folders:
    """nnU-Net v2's folders; None where the environment variable behind one is not set."""
    raw: Optional[str]            # $nnUNet_raw
    preprocessed: Optional[str]   # $nnUNet_preprocessed
    results: Optional[str]        # $nnUNet_results

    def dataset_folders(self, dataset_id) -> List[str]:
        """Every folder named Dataset<id:03d>_* in the raw, preprocessed and results folders (where
        nnunetv2's ``find_candidate_datasets`` looks)."""
        prefix = dataset_prefix(dataset_id)
        found = []
        for parent in (self.raw, self.preprocessed, self.results):
            if parent and os.path.isdir(parent):
                found += [os.path.join(parent, d) for d in sorted(os.listdir(parent))
                          if d.startswith(prefix) and os.path.isdir(os.path.join(parent, d))]
        return found


def missing_folder_variables(env: Optional[Mapping[str, str]] = None, names=FOLDER_VARIABLES) -> List[str]:
    """Which of ``names`` (default: v2's three) are unset or empty in ``env`` (default: this process's)."""
    from nnunet_genesis.nnunet_v1.layout import missing_folder_variables as missing   # the same test as v1's
    return missing(env, names)


def folders_from_env(env: Optional[Mapping[str, str]] = None) -> NnUNetV2Folders:
    """The folders nnU-Net v2 uses with ``env`` (default: this process's; absolute paths, None where unset)."""
    env = os.environ if env is None else env
    get = lambda name: os.path.abspath(env[name]) if env.get(name) else None   # noqa: E731
    return NnUNetV2Folders(raw=get(RAW_VARIABLE), preprocessed=get(PREPROCESSED_VARIABLE),
                           results=get(RESULTS_VARIABLE))


def require_folder(variable: str, env: Optional[Mapping[str, str]] = None) -> str:
    """The folder ``variable`` names (absolute); LayoutError in one line when it is unset."""
    missing = missing_folder_variables(env, (variable,))
    if missing:
        raise LayoutError("environment variable %s is not set: nnU-Net v2 does not know where its %s are"
                          % (variable, _FOLDER_ROLES.get(variable, "folders")))
    return getattr(folders_from_env(env), _FOLDER_ATTRIBUTES[variable])


# ----------------------------------------------------------------------------------------------------------------
# dataset names and ids
# ----------------------------------------------------------------------------------------------------------------

def dataset_id_of(name: str) -> int:
    """4 for 'Dataset004_Hippocampus' (nnunetv2's ``convert_dataset_name_to_id``)."""
    if not is_dataset_name(name):
        raise LayoutError("%r is not a dataset name DatasetXXX_Name" % (name,))
    from nnunetv2.utilities.dataset_name_id_conversion import convert_dataset_name_to_id
    return convert_dataset_name_to_id(name)


def short_name_of(name: str) -> str:
    """'Hippocampus' for 'Dataset004_Hippocampus'."""
    if not is_dataset_name(name):
        raise LayoutError("%r is not a dataset name DatasetXXX_Name" % (name,))
    return DATASET_NAME.match(name).group(2)


def resolve_dataset_name(dataset) -> str:
    """4, '4' or 'Dataset004_Hippocampus' -> 'Dataset004_Hippocampus'.

    Ids go through nnunetv2's own lookup (``find_candidate_datasets``: the raw, preprocessed and results folders
    that are set); NoSuchDataset (a LayoutError) naming the nearest existing datasets when no folder carries the
    id or the name; LayoutError in one line when several carry the id, or for anything else.
    """
    from nnunet_genesis.nnunet_v1.layout import no_such_line   # the one 'no such ... nearest existing' line
    text = str(dataset).strip()
    folders = folders_from_env()
    where = ", ".join("%s=%s" % (v, getattr(folders, a) or "(unset)") for v, a in _FOLDER_ATTRIBUTES.items())
    if is_dataset_name(text):
        if text not in existing_dataset_names(folders):
            raise NoSuchDataset(no_such_line("dataset", text, existing_dataset_names(folders), where))
        return text
    if not text.isdigit():
        raise LayoutError("dataset %r is neither a dataset id nor a DatasetXXX_Name" % (dataset,))
    dataset_id = _check_id(text)
    from nnunetv2.utilities.dataset_name_id_conversion import find_candidate_datasets
    candidates = [str(c) for c in find_candidate_datasets(dataset_id)]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise NoSuchDataset(no_such_line("dataset", str(dataset_id), existing_dataset_names(folders), where))
    raise LayoutError("dataset id %d is ambiguous: %s (in %s)" % (dataset_id, ", ".join(candidates), where))


def existing_dataset_names(folders: Optional[NnUNetV2Folders] = None) -> List[str]:
    """Every DatasetXXX_Name folder in the raw, preprocessed and results folders (sorted, once each)."""
    folders = folders_from_env() if folders is None else folders
    names = set()
    for parent in (folders.raw, folders.preprocessed, folders.results):
        if parent and os.path.isdir(parent):
            names.update(d for d in os.listdir(parent) if is_dataset_name(d) and os.path.isdir(os.path.join(parent, d)))
    return sorted(names)


# ----------------------------------------------------------------------------------------------------------------
# plans, dataset.json and configurations
# ----------------------------------------------------------------------------------------------------------------

def preprocessed_dataset_folder(dataset: str, preprocessed: Optional[str] = None) -> str:
    """``$nnUNet_preprocessed/<dataset name>`` (``preprocessed`` overrides the environment)."""
    return os.path.join(preprocessed or require_folder(PREPROCESSED_VARIABLE), dataset)


def plans_file_name(plans_identifier: str = DEFAULT_PLANS_IDENTIFIER) -> str:
    """'nnUNetPlans.json'."""
    return plans_identifier + ".json"


def plans_file(dataset_dir: str, plans_identifier: str = DEFAULT_PLANS_IDENTIFIER) -> str:
    """The plans file in a preprocessed dataset folder."""
    return os.path.join(dataset_dir, plans_file_name(plans_identifier))


def dataset_json_file(dataset_dir: str) -> str:
    return os.path.join(dataset_dir, DATASET_JSON)


def fingerprint_file(dataset_dir: str) -> str:
    return os.path.join(dataset_dir, FINGERPRINT_JSON)


def load_json(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def plans_manager(plans):
    """nnunetv2's ``PlansManager`` for a plans dict or plans file."""
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    return PlansManager(plans)


def configuration_manager(plans, configuration: str = DEFAULT_CONFIGURATION):
    """nnunetv2's ``ConfigurationManager`` of ``configuration`` (inheritance resolved by ``PlansManager``);
    LayoutError naming the configurations the plans have when it is not one of them."""
    manager = plans if hasattr(plans, "get_configuration") else plans_manager(plans)
    if configuration not in manager.available_configurations:
        raise LayoutError("configuration %s is not in the plans %s; they have %s"
                          % (configuration, manager.plans_name, ", ".join(manager.available_configurations)))
    return manager.get_configuration(configuration)


def channel_names(dataset_json: Mapping) -> List[str]:
    """The channels' names in channel order ('channel_names', or v1-style 'modality')."""
    names = dataset_json.get("channel_names", dataset_json.get("modality", {}))
    return [str(names[k]) for k in sorted(names, key=int)]


def file_ending(dataset_json: Mapping) -> str:
    """'.nii.gz' for most datasets: the extension of the dataset's image files."""
    return dataset_json["file_ending"]


def configuration_folder_name(plans, configuration: str = DEFAULT_CONFIGURATION) -> str:
    """The configuration's ``data_identifier``, e.g. 'nnUNetPlans_3d_fullres'."""
    return configuration_manager(plans, configuration).data_identifier


def configuration_folder(dataset_dir: str, plans, configuration: str = DEFAULT_CONFIGURATION) -> str:
    """Where the preprocessed cases of ``configuration`` lie (and where the trainer reads them)."""
    return os.path.join(dataset_dir, configuration_folder_name(plans, configuration))


# ----------------------------------------------------------------------------------------------------------------
# results
# ----------------------------------------------------------------------------------------------------------------

def trainer_folder_name(trainer: str, plans_identifier: str = DEFAULT_PLANS_IDENTIFIER,
                        configuration: str = DEFAULT_CONFIGURATION) -> str:
    """'nnUNetTrainer__nnUNetPlans__3d_fullres'."""
    return "%s__%s__%s" % (trainer, plans_identifier, configuration)


def trainer_folder(dataset: str, trainer: str, plans_identifier: str = DEFAULT_PLANS_IDENTIFIER,
                   configuration: str = DEFAULT_CONFIGURATION, results: Optional[str] = None) -> str:
    """``nnUNet_results/<dataset>/<trainer>__<plans>__<configuration>`` (``results`` overrides the environment)."""
    return os.path.join(results or require_folder(RESULTS_VARIABLE), dataset,
                        trainer_folder_name(trainer, plans_identifier, configuration))


def fold_folder_name(fold) -> str:
    """'fold_0' for fold 0, 'fold_all' for the fold 'all'."""
    return "fold_all" if str(fold) == "all" else "fold_%d" % int(fold)


def fold_folder(dataset: str, trainer: str, fold, plans_identifier: str = DEFAULT_PLANS_IDENTIFIER,
                configuration: str = DEFAULT_CONFIGURATION, results: Optional[str] = None) -> str:
    return os.path.join(trainer_folder(dataset, trainer, plans_identifier, configuration, results),
                        fold_folder_name(fold))


def final_checkpoint(dataset: str, trainer: str, fold, plans_identifier: str = DEFAULT_PLANS_IDENTIFIER,
                     configuration: str = DEFAULT_CONFIGURATION, results: Optional[str] = None) -> str:
    """The checkpoint a finished training leaves: ``.../fold_<fold>/checkpoint_final.pth``."""
    return os.path.join(fold_folder(dataset, trainer, fold, plans_identifier, configuration, results),
                        FINAL_CHECKPOINT)
