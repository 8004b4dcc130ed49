"""What a pretraining trainer (v1 and v2 alike) sets, writes and scores while it trains: the hook bodies, once.

:class:`PretrainHooks` holds the settings a thin variant overrides and every hook body the two families share
(the recipe's learning rate per iteration, the validation R^2, the per-distortion diagnostics and their
history, the preview, early stopping, the final report). The v1 trainer
(``nnunet_genesis/nnunet_v1/trainers/pretrain.py``) and the v2 trainer (``nnunet_genesis/nnunet_v2/trainers/pretrain.py``)
only map nnU-Net's hooks, whose names differ per version, onto these, and answer a few accessors:

* ``genesis_epoch()``: the 0-based epoch being trained (v1 ``epoch``, v2 ``current_epoch``);
* ``genesis_num_epochs()``: the training's epochs (v1 ``max_num_epochs``, v2 ``num_epochs``);
* ``genesis_iterations_per_epoch()``: v1 ``num_batches_per_epoch``, v2 ``num_iterations_per_epoch``;
* ``genesis_patch_size()``: v1 ``patch_size``, v2 ``configuration_manager.patch_size``;
* ``genesis_validation_losses()``: the validation loss of every epoch so far (kept across a resume);
* ``_validation_volumes(n)``: up to ``n`` validation cases (sorted names), NaN outside the image;

plus what both nnU-Net trainers have under the same name: ``optimizer``, ``output_folder``,
``print_to_log_file``, ``plain_network`` (ours: the network inside DDP / compile wrappers).

The diagnostics and the final report score with :func:`nnunet_genesis.pretraining.validation.scoring_transform`
(the published distortions and mix, whatever the recipe trains with: that module says why); training and the
validation loss use the recipe's mix (:meth:`GenesisPretrainSettings.make_genesis_transform`).
"""
import os
from typing import Dict, Optional

import numpy as np

from nnunet_genesis.pretraining.recipes import DEFAULT_RECIPE, RECIPES, set_recipe_lr, transform_kwargs
from nnunet_genesis.pretraining.schedule import DEFAULT_SHARE, ScheduledDiagnostics
from nnunet_genesis.pretraining.scores import COLLAPSE_MIN_ITERATIONS

# The seed of the validation batches' distortions (v1 and v2): fixed, so that the validation loss compares
# between epochs. (nnU-Net's own 5-fold split seed, also 12345, is another fact: nnU-Net's, not ours.)
VALIDATION_SEED = 12345
HISTORY_FILE = "restoration_history.json"
PROGRESS_PLOT = "restoration_progress.png"
PREVIEW_FILE = "restoration_preview.png"
PREVIEW_SEED = 2024   # the preview's fixed distortion, so that previews of successive epochs compare


class GenesisPretrainSettings(ScheduledDiagnostics):
    """The settings a pretraining trainer (v1 and v2) shares, as class attributes a thin subclass overrides,
    and the training transforms they make."""
    genesis_recipe = DEFAULT_RECIPE   # a key of nnunet_genesis.pretraining.recipes.RECIPES (measured: see the README)
    genesis_transform_kwargs = {}     # GenesisTransform arguments, over the recipe's mix and the published values
    genesis_preview_every = 50        # epochs, like nnU-Net's checkpoint interval
    genesis_diagnostics_every = 1     # at most every this many epochs: per-distortion scores (log, history, plot)
    genesis_diagnostics_share = DEFAULT_SHARE  # ... and spaced to take at most this share of the wall time
    genesis_diagnostic_cases = 4      # validation cases whose central patches are scored every epoch
    genesis_validation_cases = 20     # validation cases scored when training ends
    genesis_validation_folder = "validation_restoration"
    genesis_collapse_min_iterations = COLLAPSE_MIN_ITERATIONS  # judge collapse only after this many iterations
    # None: train all epochs; N: stop once the validation loss has not improved for N epochs (the published
    # Models Genesis stops on its validation loss; _Published variants: 20)
    genesis_early_stopping_patience = None

    @property
    def recipe(self):
        return RECIPES[self.genesis_recipe]

    def make_genesis_transform(self, seed):
        """The training distortions (the recipe's mix, then ``genesis_transform_kwargs``); ``seed`` None:
        fresh entropy in every augmentation worker."""
        from nnunet_genesis.distortions.composite import GenesisTransform
        return GenesisTransform(seed=seed, **transform_kwargs(self.recipe, self.genesis_transform_kwargs))

    def make_validation_transform(self):
        """The validation batches' distortions: the training mix with the fixed :data:`VALIDATION_SEED`."""
        return self.make_genesis_transform(VALIDATION_SEED)


def epochs_without_improvement(losses) -> int:
    """Epochs since the lowest of ``losses`` (one per epoch, NaN ignored); 0 when the last is the lowest."""
    values = np.asarray([np.inf if not np.isfinite(v) else v for v in losses], dtype=np.float64)
    return int(len(values) - 1 - np.argmin(values)) if len(values) else 0


class PretrainHooks(GenesisPretrainSettings):
    """The hook bodies of both pretraining families (accessors: module doc)."""

    # --- the recipe's learning rate ----------------------------------------------------------
    def set_recipe_lr(self, epochs_done: float) -> float:
        """The recipe's rate at progress ``epochs_done / genesis_num_epochs()`` (fractional epochs)."""
        return set_recipe_lr(self.optimizer, self.recipe, epochs_done, self.genesis_num_epochs())

    def genesis_epoch_start(self) -> None:
        """An epoch starts: its iterations are counted from 0 again."""
        self._iteration_in_epoch = 0

    def genesis_lr_before_iteration(self) -> float:
        """Before every training iteration: the rate for ``epoch + iteration / iterations per epoch``, so a
        warm-up shorter than an epoch works and no variant falls back on nnU-Net's poly schedule."""
        iteration = getattr(self, "_iteration_in_epoch", 0)
        self._iteration_in_epoch = iteration + 1
        return self.set_recipe_lr(self.genesis_epoch() + iteration / max(self.genesis_iterations_per_epoch(), 1))

    # --- the validation batches' R^2 (nnU-Net's evaluation metric here) ---------------------
    def genesis_accumulate(self, output, target) -> None:
        from nnunet_genesis.pretraining.loss import RestorationAccumulator
        if getattr(self, "_restoration_accumulator", None) is None:
            self._restoration_accumulator = RestorationAccumulator()
        self._restoration_accumulator.add(output, target)

    def genesis_validation_r2(self) -> float:
        """The epoch's validation R^2 (logged with its MSE); the sums start again."""
        from nnunet_genesis.pretraining.loss import RestorationAccumulator
        acc = getattr(self, "_restoration_accumulator", None) or RestorationAccumulator()
        self._restoration_accumulator = None
        self.print_to_log_file("validation restoration: MSE %.5f, R^2 %.4f" % (acc.mse(), acc.r2()))
        return acc.r2()

    # --- per-distortion diagnostics (scheduled by ScheduledDiagnostics.run_epoch_diagnostics) --
    def genesis_iterations_done(self) -> int:
        """Training iterations behind the network at the end of the current epoch."""
        return (self.genesis_epoch() + 1) * self.genesis_iterations_per_epoch()

    def restoration_history(self) -> list:
        """Per-distortion scores so far: [{"epoch", "scores", "collapse"}], kept across a resumed training (epochs
        it redoes are scored again)."""
        if getattr(self, "_restoration_history", None) is None:
            import json
            path = os.path.join(self.output_folder, HISTORY_FILE)
            history = []
            if os.path.isfile(path):
                with open(path) as f:
                    history = [h for h in json.load(f) if h["epoch"] < self.genesis_epoch()]
            self._restoration_history = history
        return self._restoration_history

    def score_restoration_now(self) -> Dict:
        """Score the network per distortion on the fixed diagnostic patches, append the entry to the history,
        log the table (and a collapse warning), write ``HISTORY_FILE`` and ``PROGRESS_PLOT``. Returns the entry."""
        from nnunet_genesis.io.atomic import write_json_atomic
        from nnunet_genesis.pretraining.scores import (collapse_reasons, collapse_warning, format_scores,
                                                       plot_history, score_pairs)
        from nnunet_genesis.pretraining.validation import restore_patch, validation_pairs
        if getattr(self, "_diagnostic_pairs", None) is None:
            self._diagnostic_pairs = validation_pairs(self._validation_volumes(self.genesis_diagnostic_cases),
                                                      self.genesis_patch_size())
        pairs, network = self._diagnostic_pairs, self.plain_network
        scores = score_pairs(pairs, restore=lambda d: restore_patch(network, d))
        reasons = collapse_reasons(scores, self.genesis_iterations_done(), self.genesis_collapse_min_iterations)
        entry = {"epoch": int(self.genesis_epoch()), "scores": scores, "collapse": reasons}
        history = self.restoration_history()
        history.append(entry)
        self.print_to_log_file("restoration per distortion (R^2 on %d validation patches):\n%s"
                               % (len(next(iter(pairs.values()), [])), format_scores(scores)))
        if reasons:
            self.print_to_log_file(collapse_warning(reasons))
        write_json_atomic(history, os.path.join(self.output_folder, HISTORY_FILE))
        plot_history(history, os.path.join(self.output_folder, PROGRESS_PLOT),
                     title="%s: restoration R² per distortion" % self.genesis_recipe)
        return entry

    def write_restoration_preview(self) -> Optional[str]:
        """``PREVIEW_FILE`` (original / distorted / restored) of the first validation case's central patch under
        the scored composite with the fixed :data:`PREVIEW_SEED`; its path, or None without cases."""
        from nnunet_genesis.pretraining.previews import save_preview_grid
        from nnunet_genesis.pretraining.scores import masked_batch
        from nnunet_genesis.pretraining.validation import central_patch, restore_patch, scoring_transform
        cases = self._validation_volumes(1)
        if not cases:
            return None
        name, volume = next(iter(cases.items()))
        transform = scoring_transform(PREVIEW_SEED)
        transform.inside_key = "seg"
        batch = transform(**masked_batch(central_patch(volume, self.genesis_patch_size(), fill=np.nan)))
        restored = restore_patch(self.plain_network, batch["data"][0])
        path = os.path.join(self.output_folder, PREVIEW_FILE)
        save_preview_grid({"original": batch["target"][0], "distorted": batch["data"][0], "restored": restored},
                          path, title="%s, epoch %d" % (name, self.genesis_epoch()))
        return path

    def genesis_epoch_end(self, last: bool) -> None:
        """At an epoch's end, on the first process only: the scheduled diagnostics and preview."""
        if getattr(self, "local_rank", 0) == 0:
            self.run_epoch_diagnostics(self.genesis_epoch(), last)

    # --- early stopping -----------------------------------------------------------------------
    def genesis_patience_ended(self) -> bool:
        """True (and logged) when ``genesis_early_stopping_patience`` epochs have passed without a lower
        validation loss than the best so far; always False without a patience."""
        patience = self.genesis_early_stopping_patience
        losses = list(self.genesis_validation_losses())
        if patience is None or not losses or epochs_without_improvement(losses) < patience:
            return False
        waited = epochs_without_improvement(losses)
        self.print_to_log_file("early stopping: the validation loss has not improved for %d epochs (best %.5f at "
                               "epoch %d; genesis_early_stopping_patience = %d)"
                               % (waited, np.nanmin(losses), len(losses) - 1 - waited, patience))
        return True

    # --- when training ends ------------------------------------------------------------------
    def genesis_final_report(self, epochs_done: int) -> Optional[Dict]:
        """What replaces nnU-Net's segmentation export when training ends (first process only):
        ``genesis_validation_folder`` with the per-distortion scores of up to ``genesis_validation_cases``
        cases, previews per distortion and the verdict; the table (and any collapse warning, last) in the log.
        ``epochs_done``: the epochs behind the network. Returns the summary."""
        from nnunet_genesis.pretraining.scores import collapse_warning, format_scores
        from nnunet_genesis.pretraining.validation import restoration_report
        if getattr(self, "local_rank", 0) != 0:
            return None
        summary = restoration_report(self.plain_network, self._validation_volumes(self.genesis_validation_cases),
                                     self.genesis_patch_size(),
                                     os.path.join(self.output_folder, self.genesis_validation_folder),
                                     iterations=epochs_done * self.genesis_iterations_per_epoch(),
                                     min_iterations=self.genesis_collapse_min_iterations)
        self.print_to_log_file("restoration of %d validation cases (central patches), recipe %s:\n%s"
                               % (len(summary["cases"]), self.genesis_recipe, format_scores(summary["scores"])))
        if summary["collapse"]:
            self.print_to_log_file(collapse_warning(summary["collapse"]))
        return summary
