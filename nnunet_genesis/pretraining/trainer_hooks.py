"""What a pretraining trainer (v1 and v2 alike) sets, writes and scores while it trains.
"""
import os
from typing import Dict, Optional
import numpy as np
from nnunet_genesis.pretraining.schedule import DEFAULT_SHARE, ScheduledDiagnostics
from nnunet_genesis.pretraining.recipes import DEFAULT_RECIPE, RECIPES, transform_kwargs
from nnunet_genesis.pretraining.scores import COLLAPSE_MIN_ITERATIONS
from nnunet_genesis.pretraining.validation import central_patch, restoration_report, restore_patch


# ------------------------------------------------------------------------------------------------
# What a pretraining trainer (v1 and v2 alike) writes while it trains
# ------------------------------------------------------------------------------------------------
class GenesisPretrainSettings(ScheduledDiagnostics):
    """The settings a pretraining trainer (v1 ``GenesisPretrainMixin``, v2 ``nnUNetTrainer_GenesisPretrain``)
    shares, as class attributes a thin subclass overrides, and the training transform they make."""
    genesis_recipe = DEFAULT_RECIPE   # a key of nnunet_genesis.pretraining.recipes.RECIPES (measured: see the README)
    genesis_transform_kwargs = {}     # GenesisTransform arguments, over the recipe's mix and the published values
    genesis_preview_every = 50        # epochs, like nnU-Net's checkpoint interval
    genesis_diagnostics_every = 1     # at most every this many epochs: per-distortion scores (log, history, plot)
    genesis_diagnostics_share = DEFAULT_SHARE  # ... and spaced to take at most this share of the wall time
    genesis_diagnostic_cases = 4      # validation cases whose central patches are scored every epoch
    genesis_validation_cases = 20     # validation cases scored when training ends
    genesis_validation_folder = "validation_restoration"
    genesis_collapse_min_iterations = COLLAPSE_MIN_ITERATIONS  # judge collapse only after this many iterations

    @property
    def recipe(self):
        return RECIPES[self.genesis_recipe]

    def make_genesis_transform(self, seed):
        from nnunet_genesis.distortions.composite import GenesisTransform
        return GenesisTransform(seed=seed, **transform_kwargs(self.recipe, self.genesis_transform_kwargs))


HISTORY_FILE = "restoration_history.json"
PROGRESS_PLOT = "restoration_progress.png"
PREVIEW_FILE = "restoration_preview.png"


def load_restoration_history(output_folder: str, before_epoch: int) -> list:
    """The entries of ``HISTORY_FILE`` in ``output_folder`` for epochs before ``before_epoch`` (a resumed
    training, ``-c``, keeps its history; epochs it redoes are scored again); [] without the file."""
    import json
    path = os.path.join(output_folder, HISTORY_FILE)
    if not os.path.isfile(path):
        return []
    with open(path) as f:
        return [h for h in json.load(f) if h["epoch"] < before_epoch]


def record_restoration(pairs, network, history: list, epoch: int, iterations_done: int, min_iterations: int,
                       output_folder: str, title: str, log) -> Dict:
    """Score ``network`` per distortion on the fixed ``pairs`` (:func:`validation_pairs`), append the entry
    ``{"epoch", "scores", "collapse"}`` to ``history``, ``log`` the table (and a collapse warning, judged from
    ``min_iterations`` training iterations on), and write ``HISTORY_FILE`` and ``PROGRESS_PLOT`` into
    ``output_folder``. Returns the entry."""
    from nnunet_genesis.io.atomic import write_json_atomic
    from nnunet_genesis.pretraining.scores import collapse_reasons, collapse_warning, format_scores, plot_history, score_pairs
    scores = score_pairs(pairs, restore=lambda d: restore_patch(network, d))
    reasons = collapse_reasons(scores, iterations_done, min_iterations)
    entry = {"epoch": int(epoch), "scores": scores, "collapse": reasons}
    history.append(entry)
    log("restoration per distortion (R^2 on %d validation patches):\n%s"
        % (len(next(iter(pairs.values()), [])), format_scores(scores)))
    if reasons:
        log(collapse_warning(reasons))
    write_json_atomic(history, os.path.join(output_folder, HISTORY_FILE))
    plot_history(history, os.path.join(output_folder, PROGRESS_PLOT), title=title)
    return entry


def final_restoration_report(network, cases: Dict[str, np.ndarray], patch_size, make_genesis_transform,
                             output_folder: str, iterations_done: int, min_iterations: int, recipe: str,
                             log) -> Dict:
    """What a pretraining trainer does when its training ends (v1 ``validate``, v2
    ``perform_actual_validation``): :func:`restoration_report` of ``cases`` into ``output_folder``, the table
    (and a collapse warning) in the ``log``. Returns the summary."""
    from nnunet_genesis.pretraining.scores import collapse_warning, format_scores
    summary = restoration_report(network, cases, patch_size, make_genesis_transform, output_folder,
                                 iterations=iterations_done, min_iterations=min_iterations)
    log("restoration of %d validation cases (central patches), recipe %s:\n%s"
        % (len(summary["cases"]), recipe, format_scores(summary["scores"])))
    if summary["collapse"]:
        log(collapse_warning(summary["collapse"]))
    return summary


def write_restoration_preview(cases: Dict[str, np.ndarray], patch_size, make_genesis_transform, network,
                              output_folder: str, epoch: int) -> Optional[str]:
    """``PREVIEW_FILE`` (original / distorted / restored) of the central patch of the first of ``cases``
    (a fixed distortion, seed 2024, so that previews of successive epochs compare); its path, or None
    without cases."""
    from nnunet_genesis.pretraining.previews import save_preview_grid
    if not cases:
        return None
    from nnunet_genesis.pretraining.scores import masked_batch
    name, volume = next(iter(cases.items()))
    transform = make_genesis_transform(2024)
    transform.inside_key = "seg"
    batch = transform(**masked_batch(central_patch(volume, patch_size, fill=np.nan)))
    restored = restore_patch(network, batch["data"][0])
    path = os.path.join(output_folder, PREVIEW_FILE)
    save_preview_grid({"original": batch["target"][0], "distorted": batch["data"][0], "restored": restored},
                      path, title="%s, epoch %d" % (name, epoch))
    return path
